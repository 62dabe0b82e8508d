"""Cost of one 2PC table lookup (runtime/protocols/lut.py) per element: bytes both ways and
CPU of both parties (two threads over a socketpair, real silent OT), for each math function
of ir/lut.py at ring ℓ and scale s. The tree measured is the one on PYTHONPATH, so the same
script compares two trees, one after the other.

    python benchmarks/lut_cost.py [--n 10000] [--ell 30] [--scale 11] [--fns sigmoid tanh]
                                  [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from twofold.ir import lut
from twofold.runtime.net import run_pair
from twofold.runtime.ot.otpack import OTPack
from twofold.runtime.protocols.lut import lut as lut_protocol
from twofold.runtime.session import Party


def _party(role: str, chan):  # noqa: ANN001, ANN202
    p = Party(role, chan, setup_ot=False)
    p.ot = OTPack(chan, role)
    return p


def measure(fn: str, n: int, ell: int, scale: int) -> dict:
    """One lookup of n random in-domain inputs (public test data, not secrets)."""
    lo, hi = lut.bounds(fn, scale)
    m = np.uint64((1 << ell) - 1)
    x = np.random.default_rng(0).integers(lo, hi, n).view(np.uint64) & m
    r = np.random.default_rng(1).integers(0, 1 << ell, n, dtype=np.uint64)
    tables = lut.table(fn, 1.0, scale)
    args = (ell, tables, lo, hi, lut.shift(fn, scale))
    sent: dict[str, int] = {}

    def side(xs: np.ndarray, who: str):  # noqa: ANN202
        def f(p):  # noqa: ANN001, ANN202
            out = lut_protocol(p, xs, *args)
            sent[who] = p.chan.bytes_sent
            return out

        return f

    w, c = time.perf_counter(), time.process_time()
    run_pair(side((x - r) & m, "server"), side(r, "client"), make=_party, timeout=1800)
    return {
        "fn": fn,
        "pieces": int(tables[0].size),
        "bytes_per_element": round((sent["server"] + sent["client"]) / n, 1),
        "cpu_us_per_element": round((time.process_time() - c) / n * 1e6, 1),
        "wall_s": round(time.perf_counter() - w, 2),
        "load_avg": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--ell", type=int, default=30)
    ap.add_argument("--scale", type=int, default=11)
    ap.add_argument("--fns", nargs="+", default=["sigmoid"])
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--quick", action="store_true", help="2,000 elements")
    a = ap.parse_args()
    n = 2000 if a.quick else a.n
    rows = [measure(fn, n, a.ell, a.scale) for fn in a.fns]
    print(f"n = {n}, ell = {a.ell}, s = {a.scale}, tree {lut.__file__}")
    print("| fn | pieces | bytes / element | CPU µs / element | load |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['fn']} | {r['pieces']} | {r['bytes_per_element']:,} "
              f"| {r['cpu_us_per_element']} | {r['load_avg']} |")  # fmt: skip
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
