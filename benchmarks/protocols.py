"""Per-primitive benchmark of the non-linear protocols: two OS processes over loopback TCP,
one thread each, ell = 32, shift 12; µs and bits per element beside EzPC SCI (DESIGN.md §7).

    python benchmarks/protocols.py [--json FILE] [--quick] [--n N] [--only relu,trunc]
                                   [--ot silent|iknp|both]

``--ot`` picks the correlated-OT source of the sessions (default: both, one table each); the
bytes include everything the primitive's session moves after setup, so the silent source's
lazy IKNP bootstrap and Ferret iterations are counted (amortised over the n elements).

``relu_check`` / ``relu_check_apart``: the ReLU-truncation with the overflow check of the
checked range model, in one millionaire (protocols/relu_check.py) / as before, the check's own
DReLU after ``relu_trunc`` (protocols/overflow.py); their difference to ``relu_trunc`` is what
the check costs.

Each primitive runs in a fresh pair of processes (so peak RSS is per primitive); the server
checks the reconstructed output against the cleartext semantics after timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _twoproc import connect, run_workers  # noqa: E402

ELL, SHIFT = 32, 12
#: the checked ReLU's grain (compiler/headroom.py: scale 2·SHIFT − CHECK_FRACTION_BITS)
GRAIN = 2 * SHIFT - 4
PRIMS = ["millionaire", "drelu", "relu", "relu_trunc", "relu_check_apart", "relu_check",
         "trunc", "trunc_msb0", "trunc_reduce", "maxpool"]  # fmt: skip
#: ReLU-truncation with the overflow check of the checked range model: ``relu_check_apart``
#: runs relu_trunc and then the standalone check (protocols/overflow.py, the former path);
#: ``relu_check`` both with one millionaire (protocols/relu_check.py). Inputs |x| ≤ 2^(ℓ−2),
#: server-private limits in (0, 2^(ℓ−2)], multiples of 2^GRAIN, as the compiler makes them.
CHECKED = ("relu_check_apart", "relu_check")
# EzPC SCI, ell = 32, 2^20 elements, this kind of machine (DESIGN.md §7): (µs, bits) per element.
SCI = {
    "millionaire": (7.1, 3932),
    "relu": (6.2, 4316),
    "trunc": (5.6, 4196),
    "trunc_msb0": (2.4, 1720),
    "trunc_reduce": (2.0, 1308),
    "relu_trunc": (6.2 + 2.4, 4316 + 1720),  # SCI runs ReLU then known-MSB truncation
}


def _pool_shape(n: int) -> tuple[int, int, int, int]:
    side = 1 << max(3, (int(np.log2(n)) - 4) // 2)
    return (1, max(1, n // (side * side)), side, side)


def _inputs(prim: str, n: int, prg) -> np.ndarray:  # noqa: ANN001
    """This party's input: a private value (millionaire) or a share of the test tensor."""
    if prim == "maxpool":
        return prg.ring(_pool_shape(n), ELL)
    return prg.ring(n, ELL)


def _limits(n: int) -> np.ndarray:
    """The server's limits (signed int64), multiples of 2^GRAIN in (0, 2^(ELL−2)]."""
    from twofold.runtime.prg import PRG

    units = PRG().ring(n, ELL - 2 - GRAIN).astype(np.int64) + 1
    return units << GRAIN


def _run(party, prim: str, x: np.ndarray, lim: np.ndarray | None = None):  # noqa: ANN001, ANN201
    from twofold.runtime import protocols as P
    from twofold.runtime.protocols.overflow import exceeds

    if prim == "relu_check":
        return P.checked_relu(party, x, ELL, lim, GRAIN, SHIFT)
    if prim == "relu_check_apart":
        return P.relu_trunc(party, x, ELL, SHIFT), exceeds(party, x, lim, ELL)

    if prim == "millionaire":
        return P.millionaire(party, x, ELL)
    if prim == "drelu":
        return P.drelu(party, x, ELL)
    if prim == "relu":
        return P.relu(party, x, ELL)
    if prim == "relu_trunc":
        return P.relu_trunc(party, x, ELL, SHIFT)
    if prim == "trunc":
        return P.trunc(party, x, ELL, SHIFT)
    if prim == "trunc_msb0":
        return P.trunc(party, x, ELL, SHIFT, kind="msb0")
    if prim == "trunc_reduce":
        return P.trunc(party, x, ELL, SHIFT, kind="reduce")
    return P.maxpool(party, x, ELL, (3, 3), (2, 2), (1, 1, 1, 1))


def _signed(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) - ((x >> np.uint64(ELL - 1)).astype(np.int64) << ELL)


def _check(prim: str, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> bool:
    """Reconstruct and compare with the cleartext semantics (on a sample for speed)."""
    m = np.uint64((1 << ELL) - 1)
    if prim == "millionaire":
        return bool(((y0 ^ y1) == (x0 < x1)).all())
    x = (x0 + x1) & m
    sx = x.astype(np.int64) - ((x >> np.uint64(ELL - 1)).astype(np.int64) << ELL)
    if prim == "drelu":
        return bool(((y0 ^ y1) == (sx >= 0)).all())
    if prim == "trunc_reduce":
        o = np.uint64((1 << (ELL - SHIFT)) - 1)
        return bool((((y0 + y1) & o) == ((sx >> SHIFT).astype(np.uint64) & o)).all())
    y = (y0 + y1) & m
    if prim == "relu":
        return bool((y == np.where(sx > 0, x, 0).astype(np.uint64)).all())
    if prim in ("trunc", "trunc_msb0"):
        return bool((y == ((sx >> SHIFT).astype(np.uint64) & m)).all())
    if prim in ("relu_trunc", *CHECKED):
        return bool((y == ((np.maximum(sx, 0) >> SHIFT).astype(np.uint64) & m)).all())
    # maxpool: 3x3/2 pad 1 reference with padding = -inf, on the signed values
    sx = sx.reshape(x0.shape)
    pad = np.pad(sx, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=np.iinfo(np.int64).min)
    oh, ow = y.shape[2:]
    ref = np.full(y.shape, np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(3):
        for j in range(3):
            ref = np.maximum(ref, pad[:, :, i : i + 2 * oh : 2, j : j + 2 * ow : 2])
    return bool((y == (ref.astype(np.uint64) & m)).all())


def worker(role: str, prim: str, n: int, port: int, source: str) -> None:
    """One party: set up, time the primitive between two barriers, report JSON on stdout."""
    from twofold.runtime.prg import PRG

    party = connect(role, port, "bench", timeout=600, ot_source=source)
    ch = party.chan
    x = _inputs(prim, n, PRG())
    if prim == "maxpool":
        # keep one bit of margin as the compiler guarantees: |value| < 2^(ell-2)
        x &= np.uint64((1 << (ELL - 2)) - 1)
    lim = _limits(n) if prim in CHECKED and role == "server" else None
    if prim in CHECKED:  # |x| <= 2^(ell-2), as the compiler's spare bit guarantees
        v = (party.shared_prg.ring(n, ELL - 1) - np.uint64(1 << (ELL - 2))) & np.uint64(
            (1 << ELL) - 1
        )
        r = party.shared_prg.ring(n, ELL)
        x = r if role == "server" else (v - r) & np.uint64((1 << ELL) - 1)
    if prim == "trunc_msb0":
        # shares of a value known to be >= 0 (as after a ReLU): v - r and r from a shared seed
        v = party.shared_prg.ring(n, ELL - 1)
        r = party.shared_prg.ring(n, ELL)
        x = r if role == "server" else (v - r) & np.uint64((1 << ELL) - 1)
    ch.send(b"go")
    ch.recv_bytes()
    b0 = ch.bytes_sent + ch.bytes_recv
    r0 = ch.rounds
    t0 = time.perf_counter()
    c0 = time.process_time()
    y = _run(party, prim, x, lim)
    ch.send(b"done")
    ch.recv_bytes()
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    nbytes = ch.bytes_sent + ch.bytes_recv - b0
    rounds = ch.rounds - r0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # verification (not timed): the client sends its input and output shares to the server
    k = min(x.size, 1 << 16) if prim != "maxpool" else x.size
    ok = None
    flags = None
    if prim in CHECKED:
        y, flags = y
    if role == "client":
        ch.send(np.ascontiguousarray(x.reshape(-1)[:k]))
        ch.send(np.ascontiguousarray(y.reshape(-1)[: (k if prim != "maxpool" else y.size)]))
        if flags is not None:
            ch.send(np.ascontiguousarray(flags[:k]))
        ch.flush()
        peer_rss = None
    else:
        x1 = ch.recv_array(np.uint64, k)
        y1 = ch.recv_array(y.dtype, k if prim != "maxpool" else y.size)
        if prim == "maxpool":
            ok = _check(prim, x, x1.reshape(x.shape), y, y1.reshape(y.shape))
        else:
            ok = _check(prim, x[:k], x1, y.reshape(-1)[:k], y1)
        if flags is not None:  # the check: 1{signed(x) >= limit}
            f1 = ch.recv_array(np.uint8, k)
            sx = _signed((x[:k] + x1) & np.uint64((1 << ELL) - 1))
            ok = ok and bool(((flags[:k] ^ f1) == (sx >= lim[:k])).all())
        peer_rss = None
    out = {"role": role, "seconds": secs, "cpu_seconds": cpu, "bytes": nbytes, "rounds": rounds}
    out["rss_mb"] = rss
    out.update({"verified": ok, "out_elems": int(y.size), "peer_rss": peer_rss})
    party.close()
    print(json.dumps(out), flush=True)


def run_prim(prim: str, n: int, source: str) -> dict:
    """Run one primitive in two fresh processes; combine their reports."""
    args = ["--prim", prim, "--n", str(n), "--ot", source]
    rep = run_workers(__file__, args, what=f"{prim} ({source})")
    s, c = rep["server"], rep["client"]
    elems = s["out_elems"] if prim == "maxpool" else n
    res = {
        "elements": elems,
        "us_per_elem": s["seconds"] / elems * 1e6,
        "bits_per_elem": s["bytes"] * 8 / elems,
        "seconds": s["seconds"],
        # CPU time of the busier party: what the wall clock would be on an idle machine if
        # neither party waited on the other (a lower bound; robust to other load)
        "cpu_us_per_elem": max(s["cpu_seconds"], c["cpu_seconds"]) / elems * 1e6,
        "cpu_us_per_elem_server": s["cpu_seconds"] / elems * 1e6,
        "cpu_us_per_elem_client": c["cpu_seconds"] / elems * 1e6,
        "rounds": s["rounds"],
        "peak_rss_mb": max(s["rss_mb"], c["rss_mb"]),
        "peak_rss_mb_server": s["rss_mb"],
        "peak_rss_mb_client": c["rss_mb"],
        "verified": bool(s["verified"]),
    }
    if prim == "maxpool":
        res["input_elements"] = n
        res["comparisons_per_elem"] = 8
        res["unit"] = "per output element of a 3x3/2 window (8 max ops)"
    sci = SCI.get(prim)
    if prim == "maxpool":
        sci = (8 * SCI["relu"][0], 8 * SCI["relu"][1])  # derived: 8 max ops ~ 8 ReLUs
    if sci:
        res["sci_us_per_elem"], res["sci_bits_per_elem"] = sci
        res["time_ratio"] = res["us_per_elem"] / sci[0]
        res["bits_ratio"] = res["bits_per_elem"] / sci[1]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="2^16 elements instead of 2^20")
    ap.add_argument("--n", type=int, help="elements per primitive (default 2^20, quick 2^16)")
    ap.add_argument("--only", help="comma-separated subset of " + ",".join(PRIMS))
    ap.add_argument(
        "--ot", default="both", choices=["silent", "iknp", "both"], help="OT source (default both)"
    )
    ap.add_argument("--worker", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--prim", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.prim, a.n, a.port, a.ot)
        return
    n = a.n or (1 << 16 if a.quick else 1 << 20)
    prims = PRIMS if not a.only else [p.strip() for p in a.only.split(",")]
    bad = [p for p in prims if p not in PRIMS]
    if bad:
        raise SystemExit(f"unknown primitive(s) {bad}; choose from {PRIMS}")
    sources = ["silent", "iknp"] if a.ot == "both" else [a.ot]
    print(f"ell={ELL} shift={SHIFT} n={n} (two processes, loopback TCP, one thread each)")
    hdr = f"{'ot':6} {'primitive':16} {'us/elem':>8} {'SCI':>5} {'ratio':>6} {'bits/elem':>10} "
    print(hdr + f"{'SCI':>6} {'ratio':>6} {'rounds':>6} {'RSS MB':>7} {'cpu us':>7} ok")
    results: dict = {src: {} for src in sources}
    for src in sources:
        for prim in prims:
            r = run_prim(prim, n, src)
            results[src][prim] = r
            sci_t = f"{r['sci_us_per_elem']:5.1f}" if "sci_us_per_elem" in r else "    -"
            sci_b = f"{r['sci_bits_per_elem']:6.0f}" if "sci_bits_per_elem" in r else "     -"
            tr = f"{r['time_ratio']:6.2f}" if "time_ratio" in r else "     -"
            br = f"{r['bits_ratio']:6.3f}" if "bits_ratio" in r else "     -"
            print(
                f"{src:6} {prim:16} {r['us_per_elem']:8.2f} {sci_t} {tr} "
                f"{r['bits_per_elem']:10.1f} {sci_b} {br} {r['rounds']:6d} "
                f"{r['peak_rss_mb']:7.0f} {r['cpu_us_per_elem']:7.2f} {r['verified']}",
                flush=True,
            )
    if "maxpool" in prims:
        print("maxpool: per output element (3x3/2, pad 1); SCI column derived as 8 x ReLU")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores; 'cpu us' is the")
    print(
        "busier party's CPU time per element (wall clock inflates when other jobs share the cores)"
    )
    if a.json:
        with open(a.json, "w") as f:
            meta = {"ell": ELL, "shift": SHIFT, "n": n, "loadavg_1min": load, "ot": sources}
            json.dump({**results, "meta": meta}, f, indent=2)


if __name__ == "__main__":
    main()
