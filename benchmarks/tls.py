"""What TLS costs the channel: loopback throughput and session opening, TLS 1.3 against
``--insecure-plaintext``, through the same code ``twofold run`` uses (``runtime.gate``).

Two OS processes (the server forked per run); the client sends ``--mib`` MiB in 4 MiB array
frames and the server answers with one byte; runs alternate plaintext/TLS so a changing load
hits both alike. Prints a table (MiB/s, seconds to open a session, TCP bytes) and the ratio.

    python benchmarks/tls.py [--json FILE] [--quick] [--mib 1024] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twofold.runtime.gate import GateConfig, client_channel, server_channel  # noqa: E402
from twofold.runtime.net import tcp_wire_bytes  # noqa: E402
from twofold.runtime.tls import cert_fingerprint, ensure_self_signed, server_context  # noqa: E402

FRAME = 1 << 22


def _server(lst: socket.socket, gate: GateConfig, frames: int) -> None:
    conn, _ = lst.accept()
    chan = server_channel(conn, gate, 60)
    chan.set_deadline(None)
    for _ in range(frames):
        chan.recv_array(np.uint8, FRAME)
    chan.send(b"k")
    chan.close()


def one_run(tls: bool, mib: int, tls_dir: Path) -> dict:
    """One session: open it, stream ``mib`` MiB, close; the client's timings and TCP bytes."""
    frames = max(1, mib * (1 << 20) // FRAME)
    cert, key = ensure_self_signed(tls_dir)
    gate = GateConfig(server_context(cert, key) if tls else None)
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    p = multiprocessing.get_context("fork").Process(target=_server, args=(lst, gate, frames))
    p.start()
    lst.close()
    data = np.frombuffer(os.urandom(FRAME), np.uint8)
    t0 = time.perf_counter()
    opts = {"server_fingerprint": cert_fingerprint(cert)} if tls else {"insecure_plaintext": True}
    chan = client_channel("127.0.0.1", port, timeout=60, **opts)
    t_open = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(frames):
        chan.send(data)
    chan.recv_bytes(max_len=1)
    t_stream = time.perf_counter() - t1
    wire = tcp_wire_bytes(chan.sock) or (0, 0)
    app = chan.bytes_sent + chan.bytes_recv
    chan.close()
    p.join(30)
    return {
        "open_s": t_open,
        "stream_s": t_stream,
        "mib_s": frames * FRAME / 2**20 / t_stream,
        "app_bytes": app,
        "wire_bytes": wire[0] + wire[1],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="TLS against plaintext on the twofold channel")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--quick", action="store_true", help="256 MiB, 2 repetitions")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    mib, reps = (256, 2) if args.quick else (args.mib, args.reps)
    runs: dict[str, list[dict]] = {"plaintext": [], "tls": []}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(reps):
            for name in ("plaintext", "tls"):
                runs[name].append(one_run(name == "tls", mib, Path(d) / "tls"))
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    p, t = med["plaintext"], med["tls"]
    print(f"{mib} MiB client -> server over loopback, median of {reps}, load {os.getloadavg()}")
    print("| transport | MiB/s | open s | app bytes | TCP bytes |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, m in med.items():
        print(
            f"| {name} | {m['mib_s']:.0f} | {m['open_s']:.4f} | {m['app_bytes']:,.0f} "
            f"| {m['wire_bytes']:,.0f} |"
        )
    ratio = p["mib_s"] / t["mib_s"]
    extra = (t["wire_bytes"] - p["wire_bytes"]) / p["wire_bytes"]
    print(f"TLS: {ratio:.2f}x the streaming time, {extra:+.3%} TCP bytes, "
          f"+{t['open_s'] - p['open_s']:.4f} s to open")  # fmt: skip
    if args.json_path:
        doc = {"mib": mib, "reps": reps, "median": med, "runs": runs, "load": os.getloadavg()}
        Path(args.json_path).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
