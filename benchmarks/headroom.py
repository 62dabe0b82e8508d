"""Fixed-point headroom on a stress set of real radiograph variants: old vs new range model.

    .venv/bin/python benchmarks/headroom.py [--quick] [--size 224] [--n 240] [--calibrate 8]
        [--json FILE] [--workdir DIR] [--models checked,calibrated] [--twopc]
        [--check-paths merged,apart] [--scale S]

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
images (under a minute on a quiet machine). ``--twopc``: instead, real two-process runs
(``run server``/``run client``, loopback, TLS, silent OT) per range model on the first test
image: time, bytes both ways, rounds, the ReLU and check layers, equality with simulate; for the
checked model once per ``--check-paths`` (``merged``: the check inside the ReLU's millionaire,
``apart``: the former standalone check, both in one run to compare).
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


#: The CLI with the checks run apart from the ReLUs (protocols/overflow.py, the former path):
#: the same program, for both parties, with the module switch turned off before the command.
_APART_CLI = [
    sys.executable,
    "-c",
    "from twofold.runtime.protocols import overflow; overflow.MERGED = False; "
    "from twofold.cli import cli; cli(prog_name='twofold')",
]
CHECK_PATHS = ("merged", "apart")


def _kind(by_kind: dict, k: str) -> dict:
    """Bytes both ways, rounds and seconds of one layer kind of a run's cost document."""
    v = by_kind.get(k, {})
    return {"bytes": v.get("bytes_sent", 0) + v.get("bytes_recv", 0),
            "rounds": v.get("rounds", 0), "s": v.get("s", 0.0)}  # fmt: skip


def twopc_cost(onnx: Path, model: str, cal: list[Path], image: Path, work: Path,
               paths: tuple[str, ...] = CHECK_PATHS, scale: int = 12) -> list[dict]:  # fmt: skip
    """Real two-process runs (``run server``/``run client``, loopback, TLS, silent OT,
    ``--linear auto``) of the model compiled with ``model``, one per check path (``merged``:
    the check inside the ReLU's millionaire, protocols/relu_check.py; ``apart``: the former
    standalone check): wall seconds, bytes both ways, rounds, the ReLU and check layer kinds,
    and whether the document equals simulate's bit for bit (flags included)."""
    import subprocess

    import e2e

    d = work / f"twopc_{model}"
    bundle = d / "bundle"
    _, rep = compile_model(onnx, bundle, calibrate=cal, range_model=model, scale=scale)
    cmd = [*e2e.TWOFOLD, "simulate", str(bundle), "--input", str(image)]
    sim = subprocess.run([*cmd, "-o", str(d / "simulate.json")], capture_output=True, text=True)
    if sim.returncode not in (0, 3):  # 3: a flagged (invalid) result, still a document
        sys.exit(f"headroom: simulate failed: {sim.stderr.strip()[-500:]}")
    want = json.loads((d / "simulate.json").read_text())
    runs = []
    for path in paths if rep["totals"].get("checked_elements") else paths[:1]:
        cli = e2e.TWOFOLD
        e2e.TWOFOLD = _APART_CLI if path == "apart" else cli
        try:
            r = e2e.run_once(bundle, "auto", str(image), ot="silent", transport="tls")
        finally:
            e2e.TWOFOLD = cli
        got = json.loads((d / "out_silent-tls.json").read_text())
        kinds = got.pop("cost")["by_kind"]
        got.pop("overflow_checked", None)  # the 2PC run's own field (simulate checks itself)
        runs.append({"range_model": model, "check_path": path, "ell": rep["ell"], "s": r["s"],
                     "bytes": r["bytes_client_to_server"] + r["bytes_server_to_client"],
                     "rounds": r["rounds"], "relu": _kind(kinds, "relu"),
                     "check": _kind(kinds, "check"),
                     "equals_simulate": got == want, "valid": got.get("valid"),
                     "est_bytes": rep["totals"]["comm_bytes"], "by_kind": r["by_kind"],
                     "load_avg": r["load_avg"]})  # fmt: skip
    return runs


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
    ap.add_argument("--scale", type=int, default=12,
                    help="with --twopc: the scale (11 keeps 224² on HE)")  # fmt: skip
    ap.add_argument("--check-paths", default=",".join(CHECK_PATHS),
                    help="with --twopc: merged (check in the ReLU's millionaire) and/or apart "
                    "(the former standalone check)")  # fmt: skip
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
        paths = tuple(a.check_paths.split(","))
        runs = [r for m in a.models.split(",")
                for r in twopc_cost(onnx, m, cal, test[0], work, paths, a.scale)]  # fmt: skip
        print(f"DenseNet-121 {a.size}x{a.size}, one 2PC inference ({test[0].name}), loopback, "
              "TLS, silent OT; 'relu+check' = the ReLU layers and the check together")  # fmt: skip
        for r in runs:
            c, u = r["check"], r["relu"]
            print(f"{r['range_model']:<11}{r['check_path']:<7} l={r['ell']:2d} {r['s']:7.1f} s "
                  f"{r['bytes'] / 2**20:9,.1f} MiB {r['rounds']:5d} rounds; relu+check "
                  f"{(u['bytes'] + c['bytes']) / 2**20:8,.1f} MiB {u['rounds'] + c['rounds']:5d} "
                  f"rounds (check apart {c['bytes'] / 2**20:,.1f} MiB {c['rounds']} rounds); "
                  f"equals simulate: {r['equals_simulate']}")  # fmt: skip
        by = {r["check_path"]: r for r in runs if r["range_model"] == "checked"}
        if {"merged", "apart"} <= by.keys():
            o, n = by["apart"], by["merged"]
            rc = lambda r: r["relu"]["bytes"] + r["check"]["bytes"]  # noqa: E731
            print(f"merged / apart: total bytes {n['bytes'] / o['bytes']:.3f}, relu+check "
                  f"bytes {rc(n) / rc(o):.3f}, rounds {n['rounds'] / o['rounds']:.3f}")  # fmt: skip
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
