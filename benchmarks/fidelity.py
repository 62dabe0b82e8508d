"""Fixed-point fidelity table: simulate vs float reference on the zoo models and DenseNet-121.

    .venv/bin/python benchmarks/fidelity.py [--json FILE] [--quick] [--fidelity EPS]

For each model and setting (s=12 with ``--bitlength auto`` from intervals alone, s=12
auto calibrated, l=32 s=11 calibrated with margin 2 and 1): the ring l, max |d| of the
output probabilities (the model's output function; softmax of plain logits) and
top-label agreement. Small models run at 32x32 on a random normalised image (calibrated
on another); DenseNet-121 at 224x224 (64 with --quick) on the real radiograph RG1 of
pydicom-data, calibrated on RG3. ``--fidelity EPS`` adds, per model, the (l, s) that
``twofold compile --fidelity EPS`` picks (twofold/scale_choice.py), the max |d| it reached on
the calibration and held-out inputs, and its estimated bytes per inference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import zoo  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from twofold.backends.cleartext import (  # noqa: E402
    FixedPointOverflow,
    apply_output_function,
    simulate,
)
from twofold.backends.float_ref import run_float  # noqa: E402
from twofold.compiler import CompileError  # noqa: E402
from twofold.frontends.onnx import load_onnx  # noqa: E402
from twofold.toolchain import compile_model, load_input  # noqa: E402

SETTINGS = {
    "s12-auto-intervals": ({"scale": 12, "bitlength": "auto"}, False),
    "s12-auto-calibrated": ({"scale": 12, "bitlength": "auto"}, True),
    "l32-s11-calibrated": ({"scale": 11, "bitlength": 32}, True),
    "l32-s11-cal-margin1": ({"scale": 11, "bitlength": 32, "margin": 1.0}, True),
}


def _probs(fn, v):  # noqa: ANN001, ANN202
    v = np.asarray(v, np.float64).ravel()
    return apply_output_function("softmax", v) if fn in (None, "identity") else v


def model_rows(name: str, size: int, tmp: Path) -> list[dict]:
    path = zoo.export(name, tmp / f"{name}.onnx", size)
    g = load_onnx(str(path))
    meta = {"shape": [1, 3, size, size], "preprocess": "chexnet"}
    if name == "densenet121":
        x = load_input(get_testdata_file("RG1_UNCR.dcm"), meta)
        cal = get_testdata_file("RG3_UNCR.dcm")
    else:
        rng = np.random.default_rng(1)
        x = np.clip(rng.normal(0, 1, meta["shape"]), -2.1, 2.6)
        cal = tmp / "cal.npy"
        np.save(cal, np.clip(rng.normal(0, 1, meta["shape"]), -2.1, 2.6))
    ((oname, ref),) = run_float(g, {"image": x}, np.float64).items()
    want = _probs(g.meta["output_function"][oname], ref)
    rows = []
    for label, (kw, calibrated) in SETTINGS.items():
        row = {"model": name, "size": size, "setting": label}
        try:
            sg, rep = compile_model(path, None, calibrate=[cal] if calibrated else [], **kw)
        except CompileError as e:
            rows.append(row | {"refused": str(e)})
            continue
        try:
            doc = simulate(sg, x)
        except FixedPointOverflow as e:
            rows.append(row | {"ell": sg.meta["ell"], "refused": f"simulate: {e}"})
            continue
        if doc.get("valid") is False:  # checked range model: the result is flagged
            rows.append(row | {"ell": sg.meta["ell"], "refused": f"flagged: {doc['error']}"})
            continue
        (out,) = doc["outputs"].values()
        got = _probs(sg.meta["output_function"][sg.outputs[0]], out["values"])
        rows.append(
            row
            | {
                "ell": sg.meta["ell"],
                "scale": sg.meta["scale"],
                "max_abs_diff": float(np.abs(got - want).max()),
                "top_agrees": bool(got.argmax() == want.argmax()),
                "relu_elements": rep["totals"]["relu_elements"],
                "truncations": rep["totals"]["truncations"],
            }
        )
    return rows


def fidelity_row(name: str, size: int, tmp: Path, eps: float) -> dict:
    """``compile --fidelity eps``: the (l, s) chosen, max |d| reached, bytes per inference.

    Calibration: 4 inputs (one of them held out by the choice): random normalised images for
    the small models, stress-set variants of RG1_UNCR.dcm for DenseNet-121."""
    path = zoo.export(name, tmp / f"{name}_{size}.onnx", size)
    if name == "densenet121":
        sys.path.insert(0, str(ROOT / "examples" / "chexnet"))
        import stress_set

        cal = stress_set.generate(tmp / "stress", 4, seed=1)
    else:
        rng = np.random.default_rng(5)
        cal = []
        for i in range(4):
            cal.append(tmp / f"{name}_cal{i}.npy")
            np.save(cal[-1], np.clip(rng.normal(0, 1, (1, 3, size, size)), -2.1, 2.6))
    row = {"model": name, "size": size, "setting": f"fidelity {eps:g}"}
    try:
        _, rep = compile_model(path, None, calibrate=cal, fidelity=eps)
    except CompileError as e:
        return row | {"refused": str(e)}
    c = rep["fidelity"]["chosen"]
    return row | {
        "ell": c["ell"],
        "scale": c["scale"],
        "max_abs_diff": max(c["max_dprob_calibration"], c["max_dprob_holdout"] or 0.0),
        "max_abs_diff_holdout": c["max_dprob_holdout"],
        "bytes_per_inference_est": c["bytes_est"],
        "candidates": len(rep["fidelity"]["tried"]),
        "top_agrees": True,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results to this file")
    ap.add_argument("--quick", action="store_true", help="DenseNet-121 at 64x64")
    ap.add_argument(
        "--fidelity", type=float, default=None, help="also the --fidelity choice for this target"
    )
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows = []
    dn = 64 if a.quick else 224
    for name in ("resnet", "mobilenet", "squeezenet", "vgg"):
        rows += model_rows(name, 32, tmp)
        if a.fidelity is not None:
            rows.append(fidelity_row(name, 32, tmp, a.fidelity))
    rows += model_rows("densenet121", dn, tmp)
    if a.fidelity is not None:
        rows.append(fidelity_row("densenet121", dn, tmp, a.fidelity))
    for r in rows:
        top = "ok" if r.get("top_agrees") else "NO"
        res = r.get("refused") or f"l={r['ell']:2d} max|d|={r['max_abs_diff']:.2e} top={top}"
        if "bytes_per_inference_est" in r and "refused" not in r:
            res = (f"s={r['scale']} l={r['ell']:2d} max|d|={r['max_abs_diff']:.2e} "
                   f"est. {r['bytes_per_inference_est'] / 2**20:,.0f} MiB/inference")  # fmt: skip
        print(f"{r['model']:<12} {r['size']:4d} {r['setting']:<20} {res}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
