"""Benchmark: cleartext fixed-point simulate of DenseNet-121, exact conv kernel vs float conv.

    .venv/bin/python benchmarks/simulate.py [--json FILE] [--quick]

DenseNet-121 comes from the ONNX zoo of the tests (torch export). The kernel rows time one
DenseNet convolution as float64 im2col+BLAS,
as the exact Z_2^ℓ kernel on typical fixed-point values (one float64 product), on the
full 64-bit ring (limbs), and numpy's uint64 matmul that the limbs replace.
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

from _timing import best_of as _best  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from zoo import export  # noqa: E402

from twofold.backends.cleartext import observe_ranges, simulate  # noqa: E402
from twofold.backends.exact_linalg import conv2d_exact, conv2d_float, im2col  # noqa: E402
from twofold.backends.float_ref import run_float  # noqa: E402
from twofold.compiler import CompileOptions, run_pipeline  # noqa: E402
from twofold.frontends.onnx import load_onnx  # noqa: E402
from twofold.toolchain import load_input  # noqa: E402


def densenet_graph(size: int):  # noqa: ANN201
    """DenseNet-121 of the tests' ONNX zoo (torch export), through the frontend."""
    path = Path(tempfile.mkdtemp()) / "densenet121.onnx"
    export("densenet121", str(path), size)
    return load_onnx(str(path)), "onnx zoo export"


def bench_densenet(size: int, repeat: int) -> dict:
    g, source = densenet_graph(size)
    g.meta["input"] = {"name": g.inputs()[0].attrs["name"], "range": [-2.1179, 2.64]}
    meta = {"shape": list(g.inputs()[0].type.shape), "preprocess": "chexnet"}
    # the real radiographs of pydicom-data: calibrate on RG3, run RG1
    cal = load_input(get_testdata_file("RG3_UNCR.dcm"), meta)
    x = load_input(get_testdata_file("RG1_UNCR.dcm"), meta)
    t = time.perf_counter()
    sg = run_pipeline(g, CompileOptions(observe=lambda q: observe_ranges(q, [cal])))
    compile_s = time.perf_counter() - t
    sim = _best(lambda: simulate(sg, x), repeat)
    got = np.array(next(iter(simulate(sg, x)["outputs"].values()))["values"])
    want = next(iter(run_float(g, {sg.meta["input"]["name"]: x}, np.float64).values())).ravel()
    return {
        "model": "densenet121",
        "source": source,
        "size": size,
        "ell": sg.meta["ell"],
        "scale": sg.meta["scale"],
        "compile_s": round(compile_s, 3),
        "simulate_s_per_image": round(sim, 3),
        "max_abs_diff_vs_float": float(np.abs(got - want).max()),
        "top_label_agrees": bool(got.argmax() == want.argmax()),
    }


def bench_conv(hw: int, cin: int, cout: int, k: int, repeat: int) -> dict:
    rng = np.random.default_rng(1)
    pad = k // 2
    attrs = {"strides": [1, 1], "pads": [pad] * 4, "dilations": [1, 1], "group": 1}
    x = rng.integers(-(2**16), 2**16, (1, cin, hw, hw), dtype=np.int64)
    w = rng.integers(-(2**12), 2**12, (cout, cin, k, k), dtype=np.int64)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    xb = rng.integers(-(2**63), 2**63 - 1, (1, cin, hw, hw), dtype=np.int64)
    wb = rng.integers(-(2**63), 2**63 - 1, (cout, cin, k, k), dtype=np.int64)
    out = (hw, hw)
    row = {
        "conv": f"{cin}->{cout} {k}x{k} at {hw}x{hw}",
        "float64_s": _best(lambda: conv2d_float(xf, wf, attrs, out), repeat),
        "float32_s": _best(
            lambda: conv2d_float(xf.astype(np.float32), wf.astype(np.float32), attrs, out), repeat
        ),
        "exact_typical_s": _best(lambda: conv2d_exact(x, w, attrs, out, 32), repeat),
        "exact_full_ring64_s": _best(lambda: conv2d_exact(xb, wb, attrs, out, 64), repeat),
    }
    cols = im2col(x.view(np.uint64), (k, k), [1, 1], [pad] * 4, [1, 1], out).reshape(-1, hw * hw)
    wm = w.view(np.uint64).reshape(cout, -1)
    row["numpy_uint64_matmul_s"] = _best(lambda: wm @ cols, 1)
    row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    row["exact_vs_float64"] = round(row["exact_typical_s"] / row["float64_s"], 2)
    row["uint64_vs_exact"] = round(row["numpy_uint64_matmul_s"] / row["exact_typical_s"], 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results to this file")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    a = ap.parse_args()
    size, rep, hw = (64, 1, 28) if a.quick else (224, 3, 56)
    res = {
        "densenet121": bench_densenet(size, rep),
        "conv": [bench_conv(hw, 128, 32, 3, rep), bench_conv(hw, 256, 128, 1, rep)],
    }
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
