"""Benchmark: ONNX export, frontend load, float reference vs onnxruntime on the zoo.

    .venv/bin/python benchmarks/frontend.py [--json FILE] [--quick]

Per model: torch export time, ``load_onnx`` time, float reference (float32 and float64) and
onnxruntime (1 thread, optimisations off) inference time (best of ``repeat``), and the max
relative error of the float reference against onnxruntime. ``--quick``: DenseNet-121 at 64²
and the small models at 32²; otherwise DenseNet-121 at 224².
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import zoo  # noqa: E402
from _timing import best_of as _best  # noqa: E402

from twofold.backends.float_ref import run_float  # noqa: E402
from twofold.backends.onnxruntime_ref import run_onnxruntime  # noqa: E402
from twofold.frontends.onnx import load_onnx  # noqa: E402
from twofold.inspect import summarize  # noqa: E402


def bench(name: str, size: int, repeat: int, tmp: Path) -> dict:
    t = time.perf_counter()
    path = zoo.export(name, tmp / f"{name}_{size}.onnx", size)
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    g = load_onnx(path)
    load_s = time.perf_counter() - t
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    ref = run_onnxruntime(path, {"image": x})["logits"]
    ours = run_float(g, {"image": x})["logits"]
    s = summarize(g)
    return {
        "model": name,
        "size": size,
        "macs": s["macs"],
        "relu_count": s["relu_count"],
        "export_s": round(export_s, 3),
        "load_onnx_s": round(load_s, 3),
        "float32_s": round(_best(lambda: run_float(g, {"image": x}), repeat), 4),
        "float64_s": round(_best(lambda: run_float(g, {"image": x}, np.float64), repeat), 4),
        "onnxruntime_s": round(_best(lambda: run_onnxruntime(path, {"image": x}), repeat), 4),
        "max_rel_err_vs_ort": float(np.abs(ours - ref).max() / np.abs(ref).max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else 3
    cases = [("resnet", 32), ("mobilenet", 32), ("squeezenet", 32), ("vgg", 32)]
    cases.append(("densenet121", 64 if args.quick else 224))
    with tempfile.TemporaryDirectory() as d:
        rows = [bench(n, s, repeat, Path(d)) for n, s in cases]
    for r in rows:
        print(
            f"{r['model']:12s} {r['size']:4d}²  MACs {r['macs'] / 1e9:6.3f} G  "
            f"export {r['export_s']:6.2f} s  load {r['load_onnx_s']:5.2f} s  "
            f"float32 {r['float32_s']:7.4f} s  ort {r['onnxruntime_s']:7.4f} s  "
            f"rel.err {r['max_rel_err_vs_ort']:.1e}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "frontend", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
