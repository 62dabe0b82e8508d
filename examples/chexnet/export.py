"""Export the CheXNet DenseNet-121 to ONNX (opset 17): ``python examples/chexnet/export.py``.

    python examples/chexnet/export.py -o model.onnx [--size 224] [--weights chexnet.pth.tar]

Without ``--weights`` the network has random weights from a fixed seed with realistic
BatchNorm statistics (see ``model.realistic_init``); with them, CheXNet / torchvision /
torchxrayvision checkpoints are renamed onto torchvision's keys (``model.load_weights``).
The ONNX graph has input ``image`` [batch, 3, size, size] and output ``logits`` (14
probabilities after the final sigmoid, in ``CHEXNET_LABELS`` order).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import CHEXNET_LABELS, WeightsError, build, load_weights  # noqa: E402


def export(out: str | Path, size: int = 224, weights: str | Path | None = None) -> Path:
    """Write the ONNX file (legacy TorchScript exporter, symbolic batch) and return its path."""
    if size < 32:
        raise ValueError(f"--size must be at least 32 (five stride-2 stages), got {size}")
    out = Path(out)
    if weights is not None and not Path(weights).is_file():
        raise WeightsError(f"weights file {weights} does not exist")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster than a contended thread pool on a small box
    try:
        model = build(len(CHEXNET_LABELS))
        if weights is not None:
            load_weights(model, weights)
        with torch.no_grad():
            torch.onnx.export(
                model.eval(),
                (torch.zeros(1, 3, size, size),),
                str(out),
                input_names=["image"],
                output_names=["logits"],
                opset_version=17,
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                dynamo=False,
            )
    finally:
        torch.set_num_threads(threads)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="model.onnx", help="ONNX file to write")
    ap.add_argument("--size", type=int, default=224, help="input height = width")
    ap.add_argument("--weights", default=None, help="CheXNet/torchvision/xrv checkpoint")
    args = ap.parse_args(argv)
    try:
        path = export(args.output, args.size, args.weights)
    except (WeightsError, ValueError, OSError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} (DenseNet-121, {args.size}x{args.size}, 14 outputs, opset 17)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
