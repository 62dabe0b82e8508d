"""Per-element cost of the secure math functions (issue 17; SIRNN-style): two OS processes over
loopback TCP, one thread each, ell = 32, scale 12; µs, bits and rounds per call.

    python benchmarks/math_protocols.py [--json FILE] [--quick] [--n N] [--only reciprocal,...]
                                        [--ot silent|iknp]

Functions: ``reciprocal`` and ``rsqrt`` (ir/newton.py: floor 1 ulp, so 28 exponent
comparisons at ell = 32; with a floor of 1.0 as in softmax 16), ``lut`` (one 2^12-entry table:
tanh, sigmoid, exp, erf cost the same), ``mul`` (product of two shared tensors). Each runs in a
fresh pair of processes; the server checks the reconstructed result against the cleartext
interpreter's integers after timing. The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _twoproc import connect, run_workers  # noqa: E402

ELL, SCALE = 32, 12
FUNCS = ["reciprocal", "rsqrt", "reciprocal_floor1", "lut", "mul"]


def _reference(fn: str, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """The interpreter's integers for signed inputs x (and y for mul)."""
    from twofold.ir import lut, newton

    if fn in ("reciprocal", "rsqrt"):
        return newton.evaluate(x, fn, ELL, SCALE, SCALE, 0.0)
    if fn == "reciprocal_floor1":
        return newton.evaluate(x, "reciprocal", ELL, SCALE, SCALE, 1.0)
    if fn == "lut":
        return lut.evaluate(x, "tanh", 1.0, SCALE)
    return x * y


def _run(party, fn: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # noqa: ANN001
    from twofold.ir import lut
    from twofold.runtime.protocols.lut import lut as lut_protocol
    from twofold.runtime.protocols.mul import mul
    from twofold.runtime.protocols.newton import newton_fn

    if fn in ("reciprocal", "rsqrt"):
        return newton_fn(party, x, ELL, fn, SCALE, SCALE, 0.0)
    if fn == "reciprocal_floor1":
        return newton_fn(party, x, ELL, "reciprocal", SCALE, SCALE, 1.0)
    if fn == "lut":
        lo, hi = lut.bounds("tanh", SCALE)
        table = lut.table("tanh", 1.0, SCALE)
        return lut_protocol(party, x, ELL, table, lo, hi, lut.shift("tanh", SCALE))
    return mul(party, x, y, ELL)


def worker(role: str, fn: str, n: int, port: int, source: str) -> None:
    """One party: shares of public-range test values from the session's shared PRG (so the
    server can check the result), the call timed between two barriers, JSON on stdout."""
    party = connect(role, port, "bench-math", timeout=600, ot_source=source)
    ch = party.chan
    m = np.uint64((1 << ELL) - 1)
    bits = ELL - 3 if fn != "mul" else 14  # reciprocal/rsqrt admit x < 2^(ell−3)
    vals = [party.shared_prg.ring(n, bits) for _ in range(2)]
    masks = [party.shared_prg.ring(n, ELL) for _ in range(2)]
    if fn == "mul":
        vals = [(v - np.uint64(1 << 13)) & m for v in vals]  # signed in [−2^13, 2^13)
    mine = [r if role == "server" else (v - r) & m for v, r in zip(vals, masks, strict=True)]
    ch.send(b"go")
    ch.recv_bytes()
    b0, r0 = ch.bytes_sent + ch.bytes_recv, ch.rounds
    t0, c0 = time.perf_counter(), time.process_time()
    out = _run(party, fn, mine[0], mine[1])
    ch.send(b"done")
    ch.recv_bytes()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    nbytes, rounds = ch.bytes_sent + ch.bytes_recv - b0, ch.rounds - r0
    ok = None
    if role == "client":
        ch.send(np.ascontiguousarray(out))
        ch.flush()
    else:
        from twofold.runtime.ring import to_signed

        got = to_signed((out + ch.recv_array(np.uint64, n)) & m, ELL)
        x, y = (to_signed(v, ELL) for v in vals)
        ok = bool(np.array_equal(got, to_signed(_reference(fn, x, y).astype(np.uint64), ELL)))
    party.close()
    rep = {"seconds": secs, "cpu_seconds": cpu, "bytes": nbytes, "rounds": rounds, "ok": ok}
    print(json.dumps(rep), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="2^12 elements instead of 2^15")
    ap.add_argument("--n", type=int, help="elements per function")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(FUNCS))
    ap.add_argument("--ot", default="silent", choices=["silent", "iknp"])
    ap.add_argument("--worker", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--fn", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.fn, a.n, a.port, a.ot)
        return
    n = a.n or (1 << 12 if a.quick else 1 << 15)
    funcs = FUNCS if not a.only else [f.strip() for f in a.only.split(",")]
    bad = [f for f in funcs if f not in FUNCS]
    if bad:
        raise SystemExit(f"unknown function(s) {bad}; choose from {FUNCS}")
    print(f"ell={ELL} scale={SCALE} n={n} ot={a.ot} (two processes, loopback TCP, one thread each)")
    print(f"{'function':18} {'us/elem':>8} {'bits/elem':>10} {'rounds':>6} {'cpu us':>7} ok")
    results = {}
    for fn in funcs:
        rep = run_workers(__file__, ["--fn", fn, "--n", str(n), "--ot", a.ot], what=fn)
        s, c = rep["server"], rep["client"]
        r = {
            "elements": n,
            "us_per_elem": s["seconds"] / n * 1e6,
            "bits_per_elem": s["bytes"] * 8 / n,
            "rounds": s["rounds"],
            "cpu_us_per_elem": max(s["cpu_seconds"], c["cpu_seconds"]) / n * 1e6,
            "verified": bool(s["ok"]),
        }
        results[fn] = r
        print(f"{fn:18} {r['us_per_elem']:8.1f} {r['bits_per_elem']:10.0f} {r['rounds']:6d} "
              f"{r['cpu_us_per_elem']:7.1f} {r['verified']}", flush=True)  # fmt: skip
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} cores")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            meta = {"ell": ELL, "scale": SCALE, "n": n, "ot": a.ot, "loadavg": load}
            json.dump({**results, "meta": meta}, f, indent=2)


if __name__ == "__main__":
    main()
