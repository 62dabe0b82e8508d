"""Two-party DenseNet-121 (CheXNet) on a real chest radiograph, end to end (``make demo``).

1. export DenseNet-121 (14 sigmoid outputs, realistic random weights) to ONNX at SIZE²;
2. ``twofold compile`` it (fixed point, ring and truncations chosen by the compiler);
3. start ``twofold run server`` and ``twofold run client`` as two OS processes on loopback:
   the server holds the weights, the client the radiograph (pydicom-data's RG1_UNCR.dcm);
4. print the 14 probabilities of the secure run beside onnxruntime's float ones, and the cost.

    python examples/chexnet/demo.py [--size 64] [--workdir build/demo] [--linear auto]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TWOFOLD = [sys.executable, "-m", "twofold.cli"]


def _module(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"chexnet_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(mod)
    return mod


def export(path: Path, size: int) -> Path:
    """DenseNet-121 with the CheXNet head to ONNX via examples/chexnet/export.py."""
    return _module("export").export(path, size)


def calibration_images(work: Path) -> list[Path]:
    """Server-side calibration inputs that are *not* the client's image: the radiograph
    mirrored, and mirrored with lower contrast (the compiler sizes the ring from them)."""
    from PIL import Image

    img, _ = _module("make_eval_set").radiograph()
    out = []
    for name, a in [("mirror", img[:, ::-1]), ("mirror_lowc", 32 + (img[:, ::-1] * 0.75))]:
        f = work / f"calibration_{name}.png"
        Image.fromarray(np.ascontiguousarray(a).astype(np.uint8)).save(f)
        out.append(f)
    return out


def step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.perf_counter()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    res = subprocess.run(cmd, text=True, **kw)
    if res.returncode != 0:
        sys.exit(f"demo: command failed ({res.returncode}): {' '.join(cmd)}")
    return res


def plaintext(onnx_path: Path, image: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"image": image.astype(np.float32)})
    return np.asarray(out, np.float64).ravel()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input side (224 = full CheXNet)")
    ap.add_argument("--workdir", default=str(ROOT / "build" / "demo"))
    ap.add_argument("--linear", choices=["he", "ot", "auto"], default="auto")
    ap.add_argument(
        "--scale", type=int, default=None,
        help="fractional bits (default: 12 up to 64x64, else 11 so that the checked range "
        "model's ring stays within the 40 bits of the HE linear layers)",
    )  # fmt: skip
    ap.add_argument("--port", type=int, default=0, help="loopback port (0: any free one)")
    args = ap.parse_args(argv)
    import pydicom.data

    work = Path(args.workdir) / f"densenet121_{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    dcm = pydicom.data.get_testdata_file("RG1_UNCR.dcm")
    onnx_path = work / "densenet121.onnx"
    bundle = work / "bundle"

    t = step(f"export DenseNet-121 ({args.size}x{args.size}) -> {onnx_path}")
    if not onnx_path.exists():
        export(onnx_path, args.size)
    print(f"   {time.perf_counter() - t:.1f} s")

    t = step(f"twofold compile -> {bundle}")
    cal = [a for f in calibration_images(work) for a in ("--calibrate", str(f))]
    scale = args.scale if args.scale is not None else (12 if args.size <= 64 else 11)
    run([*TWOFOLD, "compile", str(onnx_path), "-o", str(bundle), *cal, "--scale", str(scale)])
    print(f"   {time.perf_counter() - t:.1f} s")
    print(f"   vendor keeps {bundle / 'server'} (weights); the hospital gets {bundle / 'client'}")

    t = step("twofold run server | twofold run client (two processes, loopback TCP)")
    server = subprocess.Popen(
        [*TWOFOLD, "run", "server", str(bundle / "server"), "--listen", f"127.0.0.1:{args.port}",
         "--once", "--linear", args.linear, "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = server.stdout.readline()
    if "serving" not in line:
        server.kill()
        sys.exit("demo: the server did not start")
    sys.path.insert(0, str(ROOT))
    from twofold.twoparty import parse_banner

    addr, fingerprint = parse_banner(line)  # TLS by default: pin the certificate it printed
    out_json = work / "out.json"
    out_json.unlink(missing_ok=True)
    try:
        run([*TWOFOLD, "run", "client", str(bundle / "client"), "--connect", addr, "--input", dcm,
             "-o", str(out_json), "--server-fingerprint", fingerprint])  # fmt: skip
    finally:
        server_out, _ = server.communicate(timeout=600)
    wall = time.perf_counter() - t
    print(server_out.rstrip())

    sys.path.insert(0, str(ROOT))
    from twofold.compiler.bundle import read_bundle
    from twofold.toolchain import input_meta, load_input

    image = load_input(dcm, input_meta(read_bundle(bundle / "client", weights=False)))
    ref = plaintext(onnx_path, image)
    doc = json.loads(out_json.read_text())
    (name,) = doc["outputs"]
    secure = np.asarray(doc["outputs"][name]["values"])
    labels = doc.get("labels") or _module("model").CHEXNET_LABELS

    print(f"\n== {Path(dcm).name}: 14 findings, secure 2PC vs plaintext (onnxruntime float32)")
    print(f"{'finding':<20} {'secure':>9} {'plaintext':>10} {'|diff|':>9}")
    for lab, s, p in zip(labels, secure, ref, strict=True):
        print(f"{lab:<20} {s:9.5f} {p:10.5f} {abs(s - p):9.2e}")
    c = doc["cost"]
    sv = c["server"]
    print(
        f"\nwall {wall:.1f} s (client view {c['s']:.1f} s); client->server "
        f"{c['bytes_sent'] / 2**20:.1f} MiB, server->client {c['bytes_recv'] / 2**20:.1f} MiB, "
        f"{c['rounds']} rounds; peak RSS client {c['peak_rss_mb']:.0f} MiB, "
        f"server {sv['peak_rss_mb']:.0f} MiB"
    )
    print(f"max |secure - plaintext| = {np.max(np.abs(secure - ref)):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
