"""Fixed-point headroom on a stress set of real radiograph variants: old vs new range model.

    .venv/bin/python benchmarks/headroom.py [--quick] [--size 224] [--n 240] [--calibrate 8]
        [--json FILE] [--workdir DIR] [--models checked,calibrated] [--twopc]

DenseNet-121 (CheXNet head, realistically initialised random weights; tests/zoo.py) at SIZE²,
compiled with the defaults and calibrated on the first ``--calibrate`` images of the stress set
(examples/chexnet/stress_set.py: ``--n`` variants of pydicom-data's RG1_UNCR.dcm), then every
other image run in ``simulate`` under two range models:

* ``calibrated`` (the old model): products cut to observed range × margin 2, no checks. An
  overflow is the cleartext interpreter's FixedPointOverflow: in 2PC a silently wrong result.
* ``checked`` (the new default, compiler/headroom.py): sound ranges given in-protocol ReLU
  checks. ``flagged`` = results reported invalid (never printed as probabilities); a silent
  overflow here would break the stated guarantee (expected: 0).

Printed per model: ring ℓ, estimated bytes per inference (report.json's estimate), overflow /
flagged / unflagged counts and rates, max |Δ probability| against the float model (onnxruntime
on the ONNX file) over the valid results, and simulate seconds per image. ``--quick``: 32², 20
images (under a minute on a quiet machine). ``--twopc``: instead, one real two-process run
(``run server``/``run client``, loopback, TLS) per range model on the first test image: time,
bytes both ways, rounds, and the share of the overflow check (what headroom and detection
cost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "chexnet"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import stress_set  # noqa: E402
import zoo  # noqa: E402

from twofold.backends.cleartext import FixedPointOverflow, simulate  # noqa: E402
from twofold.backends.onnxruntime_ref import run_onnxruntime  # noqa: E402
from twofold.toolchain import compile_model, load_input  # noqa: E402

MODELS = ("calibrated", "checked")


def run_model(onnx: Path, model: str, cal: list[Path], test: list[Path], plain: list) -> dict:
    t0 = time.perf_counter()
    g, rep = compile_model(onnx, None, calibrate=cal, range_model=model)
    compile_s = time.perf_counter() - t0
    meta = g.meta["input"]
    overflow = flagged = 0
    diffs = []
    t0 = time.perf_counter()
    for i, (f, p) in enumerate(zip(test, plain, strict=True), 1):
        x = load_input(f, meta)
        try:
            doc = simulate(g, x)
            status = "flagged" if doc.get("valid") is False else "valid"
        except FixedPointOverflow:
            status = "OVERFLOW"
        if status == "OVERFLOW":
            overflow += 1
        elif status == "flagged":
            flagged += 1
        else:
            (out,) = doc["outputs"].values()
            diffs.append(float(np.abs(np.asarray(out["values"]) - p).max()))
        print(f"  [{model}] {i}/{len(test)} {Path(f).name}: {status}"
              + (f" at {doc['overflow_at']}" if status == "flagged" else ""),
              file=sys.stderr, flush=True)  # fmt: skip
    n = len(test)
    return {
        "range_model": model,
        "ell": rep["ell"],
        "scale": rep["scale"],
        "bytes_per_inference_est": rep["totals"]["comm_bytes"],
        "checked_elements": rep["totals"].get("checked_elements", 0),
        "images": n,
        "overflow": overflow,  # unflagged: a silently wrong result in 2PC
        "flagged": flagged,
        "overflow_rate": overflow / n,
        "flagged_rate": flagged / n,
        "max_abs_dprob_valid": max(diffs, default=None),
        "simulate_s_per_image": (time.perf_counter() - t0) / n,
        "compile_s": compile_s,
    }


def twopc_cost(onnx: Path, model: str, cal: list[Path], image: Path, work: Path) -> dict:
    """One real two-process run (loopback, TLS, ``--linear auto``) of the model compiled with
    ``model``: wall seconds, bytes both ways, rounds, and the check's share (kind "check")."""
    import e2e

    bundle = work / f"bundle_{model}"
    _, rep = compile_model(onnx, bundle, calibrate=cal, range_model=model)
    r = e2e.run_2pc(bundle, work, "auto", str(image), "tls", rep["input"]["shape"][-1])
    total = r["bytes_client_to_server"] + r["bytes_server_to_client"]
    chk = r["by_kind"].get("check", {"s": 0.0, "bytes": 0, "rounds": 0})
    return {"range_model": model, "ell": rep["ell"], "s": r["s"], "bytes": total,
            "rounds": r["rounds"], "check": chk, "est_bytes": rep["totals"]["comm_bytes"],
            "by_kind": r["by_kind"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32x32, 20 images")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=240, help="stress images (calibration included)")
    ap.add_argument("--calibrate", type=int, default=8, help="calibration images (first ones)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--models", default=",".join(MODELS), help="range models to run")
    ap.add_argument("--twopc", action="store_true",
                    help="instead: one two-process run per range model (bytes, time)")  # fmt: skip
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.n = 32, 20
    work = a.workdir or Path(tempfile.mkdtemp(prefix="headroom_"))
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    files = stress_set.generate(work / "stress", a.n)
    cal, test = files[: a.calibrate], files[a.calibrate :]
    onnx = work / f"densenet121_{a.size}.onnx"
    if not onnx.exists():
        zoo.export("densenet121", onnx, size=a.size)
    if a.twopc:
        runs = [twopc_cost(onnx, m, cal, test[0], work) for m in a.models.split(",")]
        print(f"DenseNet-121 {a.size}x{a.size}, one 2PC inference ({test[0].name}), loopback")
        for r in runs:
            c = r["check"]
            print(f"{r['range_model']:<12} l={r['ell']:2d} {r['s']:8.1f} s "
                  f"{r['bytes'] / 2**20:10,.1f} MiB {r['rounds']:6d} rounds; check "
                  f"{c['s']:.1f} s {c['bytes'] / 2**20:,.1f} MiB {c['rounds']} rounds")  # fmt: skip
        load1 = os.getloadavg()
        print(f"load average at start {load0[0]:.2f}, at end {load1[0]:.2f}")
        if a.json:
            doc = {"size": a.size, "twopc": runs, "loadavg_start": load0, "loadavg_end": load1}
            a.json.write_text(json.dumps(doc, indent=2))
        return 0
    meta = {"shape": [1, 3, a.size, a.size], "preprocess": "chexnet"}
    plain = [
        next(iter(run_onnxruntime(str(onnx), {"image": load_input(f, meta)}).values())).ravel()
        for f in test
    ]
    rows = [run_model(onnx, m, cal, test, plain) for m in a.models.split(",")]
    print(f"DenseNet-121 {a.size}x{a.size}, calibrated on {len(cal)} of {len(files)} stress "
          f"images (RG1_UNCR variants), {len(test)} tested in simulate")  # fmt: skip
    hdr = (f"{'range model':<12}{'l':>4}{'est. MiB/inf':>14}{'silent overflow':>17}"
           f"{'flagged':>13}{'max|dp| valid':>15}{'s/image':>9}")  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        dp = r["max_abs_dprob_valid"]
        print(
            f"{r['range_model']:<12}{r['ell']:>4}{r['bytes_per_inference_est'] / 2**20:>14,.0f}"
            f"{r['overflow']:>10} ({r['overflow_rate']:4.0%})"
            f"{r['flagged']:>6} ({r['flagged_rate']:4.0%})"
            f"{(f'{dp:.2e}' if dp is not None else '-'):>15}"
            f"{r['simulate_s_per_image']:>9.2f}"
        )
    load1 = os.getloadavg()
    print(f"load average at start {load0[0]:.2f}, at end {load1[0]:.2f}")
    if a.json:
        doc = {"size": a.size, "stress_images": len(files), "calibration_images": len(cal),
               "rows": rows, "loadavg_start": load0, "loadavg_end": load1}  # fmt: skip
        a.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
