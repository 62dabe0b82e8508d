"""OT extension throughput: random OT, correlated OT (k=32), 1-of-16 OT (k=4), two processes.

Usage: python benchmarks/ot.py [--json FILE] [--quick]

The server is this process, the client a forked child; one thread each, over loopback TCP. Each
figure is the slower party's wall time for one batch of n OTs, after a sync message (its CPU
time is printed too: on a shared machine the wall time includes waiting for a core). Printed beside
the physical limits measured in the same run: AES-128 (CTR and fixed-key ECB) GB/s and loopback
TCP GB/s through the same Channel class.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from twofold.runtime.net import connect, listen  # noqa: E402
from twofold.runtime.ot.crhash import mmo_into  # noqa: E402
from twofold.runtime.prg import PRG  # noqa: E402
from twofold.runtime.session import Party  # noqa: E402

FLAVOURS = ("rot", "cot32", "kkot16")
LOOP_BYTES = 1 << 29


def _run(p: Party, flavour: str, n: int, inputs: dict) -> None:
    o = p.ot
    if flavour == "rot":
        o.rot_send(n) if p.is_server else o.rot_recv(inputs["c"])
    elif flavour == "cot32":
        o.cot_send(inputs["corr"], 32) if p.is_server else o.cot_recv(inputs["c"], 32)
    else:
        o.kkot_send(inputs["tab"], 4) if p.is_server else o.kkot_recv(inputs["c16"], 16, 4)


def _inputs(n: int) -> dict:
    g = PRG()
    return {
        "c": g.bits(n),
        "corr": g.ring(n, 32),
        "tab": g.ring((n, 16), 4),
        "c16": (g.bytes(n) & 15).astype(np.uint8),
    }


def _session(p: Party, sizes: list[int]) -> dict:
    """Both parties run this; returns this party's timings and byte counts."""
    out: dict = {}
    ch = p.chan
    # loopback through the same Channel: server sends, client receives
    chunk = 1 << 26
    ch.send(b"sync")
    ch.recv_bytes()
    t0 = time.perf_counter()
    if p.is_server:
        buf = np.zeros(chunk, np.uint8)
        for _ in range(LOOP_BYTES // chunk):
            ch.send(buf)
        ch.recv_bytes()
    else:
        for _ in range(LOOP_BYTES // chunk):
            ch.recv_array(np.uint8, chunk)
        ch.send(b"done")
    out["loopback_s"] = time.perf_counter() - t0
    warm = _inputs(1 << 16)
    for fl in FLAVOURS:  # first use of each code path (allocator, caches) is not timed
        _run(p, fl, 1 << 16, warm)
    for n in sizes:
        inputs = _inputs(n)
        for fl in FLAVOURS:
            ch.send(b"sync")
            ch.recv_bytes()
            b0 = ch.bytes_sent + ch.bytes_recv
            t0, c0 = time.perf_counter(), time.process_time()
            _run(p, fl, n, inputs)
            ch.flush()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            out[f"{fl}/{n}"] = {
                "seconds": dt,
                "cpu_seconds": dc,
                "bytes": ch.bytes_sent + ch.bytes_recv - b0,
            }
    ch.send(b"end")
    ch.recv_bytes()
    return out


def _client(port: int, sizes: list[int], q: mp.Queue) -> None:
    p = Party("client", connect("127.0.0.1", port, timeout=300), "bench")
    q.put(_session(p, sizes))
    p.close()


def _aes_gbps() -> tuple[float, float]:
    """AES-128 throughput of one core through `cryptography` (CTR keystream, fixed-key ECB),
    1 MiB per call into touched, reused buffers (as the OT loops use it)."""
    n, reps = 1 << 20, 256
    src = np.zeros(n, np.uint8)
    dst = np.zeros(n + 16, np.uint8)
    g = PRG()
    g.fill(dst[:n])
    t0 = time.perf_counter()
    for _ in range(reps):
        g.fill_raw(memoryview(dst), n)
    ctr = n * reps / (time.perf_counter() - t0) / 1e9
    z = src.view(np.uint64).reshape(-1, 2)
    out = dst.view(np.uint64).reshape(-1, 2)
    t0 = time.perf_counter()
    for _ in range(reps):
        mmo_into(z, out)
    ecb = n * reps / (time.perf_counter() - t0) / 1e9
    return ctr, ecb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes (n = 2^16, 2^18)")
    args = ap.parse_args()
    sizes = [1 << 16, 1 << 18] if args.quick else [1 << 20, 1 << 22]
    ctr, ecb = _aes_gbps()
    with listen("127.0.0.1", 0, timeout=300) as lst:
        q: mp.Queue = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(target=_client, args=(lst.port, sizes, q))
        child.start()
        t0 = time.perf_counter()
        p = Party("server", lst.accept(60), "bench")
        setup = time.perf_counter() - t0
    srv = _session(p, sizes)
    cli = q.get(timeout=600)
    child.join(60)
    p.close()
    loop = LOOP_BYTES / max(srv["loopback_s"], cli["loopback_s"]) / 1e9
    res: dict = {
        "limits": {"aes_ctr_GBps": ctr, "aes_mmo_fixed_key_GBps": ecb, "loopback_GBps": loop},
        "setup_seconds": setup,
        "load_average_1min": os.getloadavg()[0],
        "setup_bytes": p.chan.stats["ot-setup"].bytes_sent + p.chan.stats["ot-setup"].bytes_recv,
    }
    print(
        f"AES-128-CTR {ctr:.2f} GB/s   fixed-key AES MMO {ecb:.2f} GB/s   loopback {loop:.2f} GB/s"
    )
    print(f"session setup (handshake + base OTs + KK13 bases): {setup:.3f} s")
    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'flavour':8} {'n':>9} {'seconds':>8} {'M OT/s':>8} {'bytes/OT':>9} {'cpu s':>6}")
    for fl in FLAVOURS:
        per_n = {}
        for n in sizes:
            key = f"{fl}/{n}"
            dt = max(srv[key]["seconds"], cli[key]["seconds"])
            dc = max(srv[key]["cpu_seconds"], cli[key]["cpu_seconds"])
            bpo = srv[key]["bytes"] / n
            per_n[str(n)] = {
                "seconds": dt,
                "ops_per_s": n / dt,
                "bytes_per_op": bpo,
                "cpu_seconds_slower_party": dc,
            }
            print(f"{fl:8} {n:>9} {dt:8.3f} {n / dt / 1e6:8.2f} {bpo:9.2f} {dc:6.3f}")
        big = per_n[str(sizes[-1])]
        res[fl] = {"ops_per_s": big["ops_per_s"], "bytes_per_op": big["bytes_per_op"], "n": per_n}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
