"""OT extension throughput, both OT sources: raw correlated OTs (random choices, unhashed),
random OT, correlated OT (k=32), 1-of-16 OT (k=4); two processes.

Usage: python benchmarks/ot.py [--json FILE] [--quick] [--rounds R] [--ot silent|iknp|both]
                               [--transport tls|plaintext|both]

The server is this process, the client a forked child per source and transport; one thread
each, over loopback TCP, the session opened as ``twofold run`` opens one (runtime.gate): TLS 1.3
with the server's self-signed certificate pinned (``twofold run``'s default), or
``--insecure-plaintext``. ``--transport both`` (the default) measures each source over both, so
the table shows what the channel's encryption adds to a source that puts 128 bits per COT on the
wire and to one that puts almost none. Each figure is the slower party's wall and CPU time for
one batch of n OTs, after a sync message (on a shared machine the wall time includes waiting for
a core). Printed beside the physical limits measured in the same run: AES-128 (CTR and
fixed-key ECB) GB/s and loopback GB/s through the same Channel class, per transport.

``rcot`` is the source itself, unhashed: R rounds of one batch of n = 3 * 2^23 per session, the
sessions in turn (all stay open: silent and IKNP over each transport), so the rates are compared
round by round as this shared machine's state drifts; the rcot row is each session's median
round, and the silent/IKNP ratio of every round is printed per transport. Silent rounds are
reported per COT the Ferret iterations they started produced (the pool carries leftovers between
batches; an iteration the client's worker is still computing is waited for inside the round;
untimed batches first map the trees' memory, which Ferret reuses, ot/recycle.py, and build the
code's index cache, ot/lpn.py). The bootstrap and first iteration are session setup, reported
apart; the whole session's Ferret traffic per COT handed out is printed too, and one main-set
LPN encoding's CPU time alone and with a second process encoding at the same time (what the two
parties of one loopback run do to each other's memory accesses). The silent source's flavour
rows are timed with the pool already holding their COTs and no iteration left to prepare: they
show the work and bytes on top of Ferret's (add the rcot row per COT used; 1-of-16 uses 4 COTs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from twofold.runtime.gate import GateConfig, client_channel, server_channel  # noqa: E402
from twofold.runtime.ot.crhash import mmo_into  # noqa: E402
from twofold.runtime.ot.ferret import MAIN  # noqa: E402
from twofold.runtime.ot.lpn import LocalCode  # noqa: E402
from twofold.runtime.prg import PRG  # noqa: E402
from twofold.runtime.session import Party  # noqa: E402
from twofold.runtime.tls import cert_fingerprint, ensure_self_signed, server_context  # noqa: E402

FLAVOURS = ("rcot", "rot", "cot32", "kkot16")
LOOP_BYTES = 1 << 29


def _run(p: Party, flavour: str, n: int, inputs: dict) -> None:
    o = p.ot
    if flavour == "rcot":
        if o.silent:  # handed out as the protocols take random COTs: chunk views of the pool
            (o._snd if p.is_server else o._rcv).extend_random(n, lambda q, tw, lo, hi: None)
        elif p.is_server:
            o._snd.extend(p.chan, n, lambda q, tw, lo, hi: None)
        else:
            o._rcv.extend(p.chan, n, lambda lo, hi: None, lambda t, tw, lo, hi: None)
    elif flavour == "rot":
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


def _wait_prepared(f) -> None:  # noqa: ANN001 - a Ferret side
    """Wait for the iterations ``f`` has in preparation (the client's run on its worker)."""
    for job in list(f.pending):
        job.result(timeout=600)


def _settle(p: Party) -> None:
    """Let the silent source's iterations in preparation finish, and start those the last take
    would start (``_prefetch``, at the same point on both sides), so that a timed job pays only
    for its own work: a main-set iteration prepared ahead is Ferret's, not the flavour's."""
    if not p.ot.silent:
        return
    o = p.ot  # the server's sender direction first, meeting the client's receiver
    for f in (o._snd.ferret, o._rcv.ferret) if p.is_server else (o._rcv.ferret, o._snd.ferret):
        f._prefetch()
        _wait_prepared(f)


def _timed(p: Party, fl: str, n: int, inputs: dict) -> dict:
    """One job after a sync message: the slower party's figures are formed by the caller."""
    ch = p.chan
    ch.send(b"sync")
    ch.recv_bytes()
    b0 = ch.bytes_sent + ch.bytes_recv
    f = (p.ot._snd if p.is_server else p.ot._rcv).ferret if p.ot.silent else None
    made0 = f.produced if f else 0
    t0, c0 = time.perf_counter(), time.process_time()
    _run(p, fl, n, inputs)
    ch.flush()
    if f:  # the iterations this job started are its work: wait for the client's worker
        _wait_prepared(f)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    out = {"seconds": dt, "cpu_seconds": dc, "bytes": ch.bytes_sent + ch.bytes_recv - b0}
    if f and fl == "rcot":  # per COT the iterations produced (the pool carries leftovers)
        out["produced"] = f.produced - made0
    return out


def _session(p: Party, sizes: list[int], big: int, rounds: int) -> Iterator[dict]:
    """Both parties run this: the loopback test and every flavour, then ``rounds`` raw-COT
    batches of ``big``; yields before each of those (the server alternates two sessions'
    rounds there) and last this party's timings and byte counts."""
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
    if p.ot.silent:  # nor the first main-set iterations: they map the memory Ferret then reuses,
        for _ in range(2):  # and the third encoding with the main code builds its index cache
            _run(p, "rcot", big, warm)
    for n in sizes:
        for fl in FLAVOURS:
            if p.ot.silent and fl == "rcot":
                continue  # Ferret's own rate: the rounds below
            inputs = _inputs(n) if fl != "rcot" else {}
            if p.ot.silent:  # the flavour's own work: Ferret's is the rcot row
                (p.ot._snd if p.is_server else p.ot._rcv).ferret.ensure(
                    n * (4 if fl == "kkot16" else 1)
                )
            _settle(p)
            out[f"{fl}/{n}"] = _timed(p, fl, n, inputs)
    _settle(p)
    out["rcot_rounds"] = []
    for _ in range(rounds):
        yield {}
        out["rcot_rounds"].append(_timed(p, "rcot", big, {}))
    if p.ot.silent:  # the whole session's Ferret traffic over every COT it handed out
        st = ch.stats.get("ot-silent")
        out["ferret"] = {
            "bytes": (st.bytes_sent + st.bytes_recv) if st else 0,
            "served": p.ot._snd.ferret.served + p.ot._rcv.ferret.served,
            "iterations": p.ot._snd.ferret.iterations + p.ot._rcv.ferret.iterations,
        }
    ch.send(b"end")
    ch.recv_bytes()
    yield out


def _client(
    port: int, pin: str | None, sizes: list[int], big: int, rounds: int, source: str, q: mp.Queue
) -> None:
    opts = {"server_fingerprint": pin} if pin else {"insecure_plaintext": True}
    chan = client_channel("127.0.0.1", port, timeout=600, **opts)
    p = Party("client", chan, "bench", ot_source=source)
    chan.set_deadline(None)
    *_, out = _session(p, sizes, big, rounds)
    q.put(out)
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


def _lpn_encode_cpu(barrier=None) -> float:  # noqa: ANN001 - a multiprocessing Barrier
    """CPU seconds of one main-set LPN encoding (the sender's: 10.5 M outputs, 10 random 16-byte
    reads each from a 7.2 MB table), after an untimed one that maps the memory; with
    ``barrier``, started together with the other process that waits on it."""
    code = LocalCode(MAIN.n, MAIN.k)
    v, out = PRG().block(MAIN.k), np.zeros((MAIN.n, 2), np.uint64)
    code.encode(v, out)
    if barrier is not None:
        barrier.wait(60)
    c0 = time.process_time()
    code.encode(v, out)
    return time.process_time() - c0


def _lpn_pair(barrier, q) -> None:  # noqa: ANN001
    q.put(_lpn_encode_cpu(barrier))


def _lpn_alone_and_paired() -> tuple[float, float]:
    """One main-set LPN encoding alone, and the slower of two run at once by two processes, as
    the two parties of a loopback run do (they share this machine's caches and memory bus)."""
    alone = _lpn_encode_cpu()
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    child = ctx.Process(target=_lpn_pair, args=(barrier, q))
    child.start()
    mine = _lpn_encode_cpu(barrier)
    paired = max(mine, q.get(timeout=120))
    child.join(60)
    return alone, paired


class _Source:
    """One OT source's session over one transport: this process is the server, a forked child
    the client; the session is opened as ``twofold run`` opens one (TLS with the certificate
    pinned, or plaintext)."""

    def __init__(
        self, source: str, tls_dir: str | None, sizes: list[int], big: int, rounds: int
    ) -> None:
        self.source, self.big = source, big
        ctx = mp.get_context("fork")
        gate, pin = GateConfig(None, handshake_timeout=60), None
        if tls_dir is not None:
            cert, key = ensure_self_signed(tls_dir)
            gate = GateConfig(server_context(cert, key), handshake_timeout=60)
            pin = cert_fingerprint(cert)
        with socket.create_server(("127.0.0.1", 0)) as lst:
            lst.settimeout(60)
            self.q: mp.Queue = ctx.Queue()
            args = (lst.getsockname()[1], pin, sizes, big, rounds, source, self.q)
            self.child = ctx.Process(target=_client, args=args)
            self.child.start()
            t0 = time.perf_counter()
            chan = server_channel(lst.accept()[0], gate, 600)
            self.party = Party("server", chan, "bench", ot_source=source)
            chan.set_deadline(None)
            self.setup = time.perf_counter() - t0
        self.steps = _session(self.party, sizes, big, rounds)

    def step(self) -> dict:
        """Run this session to its next pause (the flavours, or one raw-COT round)."""
        return next(self.steps)

    def figures(self, srv: dict) -> dict:
        """The session's figures from both parties' (the slower party's time per job)."""
        cli = self.q.get(timeout=1800)
        self.child.join(60)
        self.party.close()
        st = self.party.chan.stats["ot-setup"]
        res: dict = {
            "setup_seconds": self.setup,
            "setup_bytes": st.bytes_sent + st.bytes_recv,
            "loopback_s": max(srv["loopback_s"], cli["loopback_s"]),
        }
        if "ferret" in srv:
            f = srv["ferret"]
            res["ferret_session"] = {**f, "bits_per_cot": f["bytes"] * 8 / max(1, f["served"])}
        for key in srv:
            if "/" not in key:
                continue
            fl, n = key.split("/")
            res.setdefault(fl, {"n": {}})["n"][n] = _job(srv[key], cli[key], int(n))
        pairs = zip(srv["rcot_rounds"], cli["rcot_rounds"], strict=True)
        rounds = [_job(a, b, self.big) for a, b in pairs]
        res["rcot_rounds"] = rounds
        res.setdefault("rcot", {"n": {}})
        if rounds:  # the median round is the rcot row at n = big
            med = sorted(rounds, key=lambda r: r["cpu_ops_per_s"])[len(rounds) // 2]
            res["rcot"]["n"][str(med["n"])] = med
        for fl in FLAVOURS:
            biggest = max(res[fl]["n"], key=int)
            res[fl].update({k: res[fl]["n"][biggest][k] for k in ("ops_per_s", "bits_per_op")})
        return res


def _job(srv: dict, cli: dict, n: int) -> dict:
    """One timed job's figures: the slower party's wall and CPU time, per OT made."""
    dt = max(srv["seconds"], cli["seconds"])
    dc = max(srv["cpu_seconds"], cli["cpu_seconds"])
    m = srv.get("produced") or n
    return {
        "n": n,
        "seconds": dt,
        "ops_per_s": m / dt,
        "bytes_per_op": srv["bytes"] / m,
        "bits_per_op": srv["bytes"] * 8 / m,
        "cpu_seconds_slower_party": dc,
        "cpu_seconds_server_client": [srv["cpu_seconds"], cli["cpu_seconds"]],
        "cpu_ops_per_s": m / max(dc, 1e-9),
        "ops": m,
    }


def _run_sessions(
    sources: list[str], transports: list[str], sizes: list[int], big: int, rounds: int
) -> dict[str, dict]:
    """Every (transport, source) session, named "source/transport"; their raw-COT rounds
    alternate (silent, IKNP, silent, ... over each transport in turn), so the rates are taken
    side by side as the machine's state drifts (docs/PERFORMANCE.md)."""
    with tempfile.TemporaryDirectory() as d:
        runs = {
            f"{src}/{tr}": _Source(src, os.path.join(d, "tls") if tr == "tls" else None, sizes,
                                   big, rounds)
            for tr in transports
            for src in sources
        }  # fmt: skip
        last = {name: run.step() for name, run in runs.items()}  # flavours, one after the other
        for _ in range(rounds):
            for name, run in runs.items():
                last[name] = run.step()
        return {name: run.figures(last[name]) for name, run in runs.items()}


def _ratios(a: dict, b: dict) -> dict:
    """Session a's raw-COT rate over session b's, round by round (b's round right after a's)."""
    per = [
        x["cpu_ops_per_s"] / y["cpu_ops_per_s"]
        for x, y in zip(a["rcot_rounds"], b["rcot_rounds"], strict=True)
    ]
    return {"per_round": per, "median": float(np.median(per))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes (n = 2^16, 2^18)")
    ap.add_argument(
        "--rounds", type=int, default=0, help="raw-COT rounds per session (default 5, --quick 3)"
    )
    ap.add_argument(
        "--ot", default="both", choices=["silent", "iknp", "both"], help="OT source (default both)"
    )
    ap.add_argument(
        "--transport",
        default="both",
        choices=["tls", "plaintext", "both"],
        help="TLS 1.3 as `twofold run` (default), --insecure-plaintext, or both (default both)",
    )
    args = ap.parse_args()
    sizes = [1 << 16, 1 << 18] if args.quick else [1 << 20, 1 << 22]
    big = 1 << 24 if args.quick else 3 << 23  # raw-COT rounds: main-set iterations
    rounds = args.rounds or (3 if args.quick else 5)
    sources = ["silent", "iknp"] if args.ot == "both" else [args.ot]
    transports = ["tls", "plaintext"] if args.transport == "both" else [args.transport]
    ctr, ecb = _aes_gbps()
    res: dict = {"limits": {"aes_ctr_GBps": ctr, "aes_mmo_fixed_key_GBps": ecb}}
    res["sessions"] = sess = _run_sessions(sources, transports, sizes, big, rounds)
    if len(sources) == 2:  # each silent round against the IKNP round after it
        res["rcot_silent_over_iknp"] = {
            tr: _ratios(sess[f"silent/{tr}"], sess[f"iknp/{tr}"]) for tr in transports
        }
    if "silent" in sources:
        alone, paired = _lpn_alone_and_paired()
        res["lpn_encode_cpu_s"] = {"alone": alone, "two_at_once": paired}
    for tr in transports:  # the channel's own ceiling over this transport
        best = min(sess[f"{src}/{tr}"]["loopback_s"] for src in sources)
        res["limits"][f"loopback_GBps/{tr}"] = LOOP_BYTES / best / 1e9
    res["load_average_1min"] = os.getloadavg()[0]
    loops = "   ".join(f"loopback {tr} {res['limits'][f'loopback_GBps/{tr}']:.2f} GB/s"
                       for tr in transports)  # fmt: skip
    print(f"AES-128-CTR {ctr:.2f} GB/s   fixed-key AES MMO {ecb:.2f} GB/s   {loops}")
    for name, r in sess.items():
        src = name.split("/")[0]
        print(
            f"{name}: session setup (opening + base OTs + "
            f"{'Ferret bootstrap' if src == 'silent' else 'KK13 bases'}): "
            f"{r['setup_seconds']:.3f} s, {r['setup_bytes'] / 1e6:.2f} MB"
        )
        if "ferret_session" in r:
            f = r["ferret_session"]
            print(
                f"{name}: Ferret over the whole session (setup included): {f['served']:,} COTs "
                f"handed out, {f['iterations']} iterations, {f['bytes'] / 1e6:.2f} MB, "
                f"{f['bits_per_cot']:.3f} bits per COT"
            )
    if "lpn_encode_cpu_s" in res:
        e = res["lpn_encode_cpu_s"]
        print(
            f"silent: one main-set LPN encoding {e['alone']:.3f} CPU s alone, "
            f"{e['two_at_once']:.3f} when two processes encode at once "
            f"({e['two_at_once'] / e['alone']:.2f}x: both parties share the caches here)"
        )
    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("(cpu s: the slower party's CPU time; M OT/cpu s: n over it, robust to other load)")
    print(
        f"{'session':16} {'flavour':7} {'n':>9} {'seconds':>8} {'M OT/s':>8} {'bits/OT':>9} "
        f"{'cpu s':>6} {'M OT/cpu s':>10}"
    )
    for name, r in sess.items():
        for fl in FLAVOURS:
            for n, f in sorted(r[fl]["n"].items(), key=lambda kv: int(kv[0])):
                print(
                    f"{name:16} {fl:7} {int(n):>9} {f['seconds']:8.3f} "
                    f"{f['ops_per_s'] / 1e6:8.2f} {f['bits_per_op']:9.2f} "
                    f"{f['cpu_seconds_slower_party']:6.3f} {f['cpu_ops_per_s'] / 1e6:10.1f}"
                )
    print(
        f"raw COTs, {rounds} rounds of n = {big:,} per session, taken in turn "
        "(M OT per CPU s of the slower party; the rcot rows above are the median rounds):"
    )
    for name, r in sess.items():
        rates = " ".join(f"{x['cpu_ops_per_s'] / 1e6:6.1f}" for x in r["rcot_rounds"])
        print(f"  {name:16} {rates}")
    for name, r in sess.items():  # the sender is the server, the receiver the client
        cpu = " ".join(
            "{:.2f}/{:.2f}".format(*x["cpu_seconds_server_client"]) for x in r["rcot_rounds"]
        )
        print(f"  {name:16} CPU s sender/receiver: {cpu}")
    for tr, r in res.get("rcot_silent_over_iknp", {}).items():
        print(
            f"  silent / IKNP over {tr:9}: {' '.join(f'{x:6.2f}' for x in r['per_round'])}"
            f"   median {r['median']:.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
