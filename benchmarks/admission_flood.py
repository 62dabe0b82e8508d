"""What a connection flood from one address costs ``twofold run server``, and whether real
clients are still served (review of the server by the vendor's operator).

    python benchmarks/admission_flood.py [--json FILE] [--quick] [--seconds 15] [--clients 4]
                                         [--server-arg=--some-option ...]

A ``twofold run server`` (TLS, its self-signed certificate, a 16×16 test program) on loopback.
A flooder process keeps ``--width`` (4: the handshake places of one address) connections open
from one address, replacing each as soon as the server closes it; each sends the first 6 bytes
of a TLS ClientHello and hangs up its side, so each one *speaks* (the server cannot tell it
from a client before it forks a process for its handshake). Waiting for the server's close is
what an attacker does: connections opened in a burst are mostly turned away before the fork,
by the address's cap on handshake places. Meanwhile ``twofold run client`` runs
one after the other, from another loopback address (127.0.0.1; the flood is from 127.0.0.2)
and then from the flood's own address (the flood from 127.0.0.1: a client behind the same NAT).

Reported per phase (no flood; flood, client from another address; flood, client from the same
address): connections the flooder opened per second, handshake processes the server forked
per second (from its log: every forked connection that fails is counted there, in a line or a
count), the server's CPU (its process and its reaped children, % of one core), and the
clients: how many were served and their median wall time. The load average is printed before
and after. ``--quick``: 5 s of flood per phase, 2 clients.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TWOFOLD = [sys.executable, "-m", "twofold.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
#: the first bytes of a TLS 1.x ClientHello record: handshake type, version, length, hello
HELLO_FRAGMENT = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
TICK = os.sysconf("SC_CLK_TCK")
FAILED = re.compile(r"twofold server: connection \d+ from \S+ (refused|failed) at handshake")


def _compile(d: Path) -> tuple[Path, Path]:
    from test_python2pc import local_ops_graph

    from twofold.toolchain import compile_model

    compile_model(None, d / "b", graph=local_ops_graph(16), preprocess="none",
                  input_range=(-3, 3))  # fmt: skip
    np.save(d / "x.npy", np.random.default_rng(2).uniform(-3, 3, (1, 2, 16, 16)))
    return d / "b", d / "x.npy"


def _cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its reaped children (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def _flood(dest: tuple[str, int], source: str, seconds: float, width: int, opened: Any) -> None:
    """``width`` connections at a time from ``source``: each sends a ClientHello fragment,
    hangs up its sending side and waits for the server to close, then the next one opens (so
    none is turned away for the address's handshake places, as a burst of them would be)."""
    until = time.monotonic() + seconds
    counts = [0] * width

    def one(i: int) -> None:
        while time.monotonic() < until:
            try:
                with socket.create_connection(dest, 2, (source, 0)) as s:
                    s.sendall(HELLO_FRAGMENT)
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(max(until - time.monotonic(), 0.01))
                    while s.recv(4096):
                        pass
                counts[i] += 1
            except OSError:
                counts[i] += 1  # reset by the server: it was closed all the same
                time.sleep(0.001)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    opened.value = sum(counts)


class _Server:
    def __init__(self, bundle: Path, extra: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*TWOFOLD, "run", "server", str(bundle), "--listen", "127.0.0.1:0", "--quiet",
             "--max-sessions", "2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        assert "serving" in line, line + self.proc.stderr.read()
        self.port = int(line.split(" on 127.0.0.1:")[1].split(",")[0])
        self.fingerprint = line.split("fingerprint ")[1].split(",")[0].strip()
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def forked(self) -> int:
        """Connections that got a handshake process and failed there, from the log so far."""
        n = 0
        for ln in list(self.lines):
            n += bool(FAILED.match(ln))
            n += sum(int(k) for k in re.findall(r"(\d+) more connections refused at handshake", ln))
        return n

    def stop(self) -> str:
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.reader.join(5)
        return self.proc.stderr.read()


def _client(bundle: Path, x: Path, port: int, fp: str, out: Path) -> tuple[bool, float]:
    t = time.monotonic()
    res = subprocess.run(
        [*TWOFOLD, "run", "client", str(bundle), "--connect", f"127.0.0.1:{port}",
         "--input", str(x), "-o", str(out), "--server-fingerprint", fp, "--quiet"],
        capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    return res.returncode == 0, time.monotonic() - t


def phase(srv: _Server, bundle: Path, x: Path, d: Path, flood_from: str | None, seconds: float,
          clients: int, width: int) -> dict:  # fmt: skip
    """Clients one after the other (from 127.0.0.1) while ``flood_from`` floods (or nothing);
    stops ``srv`` at the end."""
    opened = multiprocessing.Value("q", 0)
    fl = None
    if flood_from:
        fl = multiprocessing.get_context("fork").Process(
            target=_flood, args=(("127.0.0.1", srv.port), flood_from, seconds, width, opened)
        )
    c0, t0 = _cpu_s(srv.proc.pid), time.monotonic()
    if fl:
        fl.start()
        time.sleep(min(1.0, seconds / 4))  # the flood is on before the first client
    runs = []
    while len(runs) < clients or (fl and fl.is_alive()):
        if len(runs) >= clients:
            time.sleep(0.1)
            continue
        runs.append(_client(bundle, x, srv.port, srv.fingerprint, d / "out.json"))
    if fl:
        fl.join()
    wall = time.monotonic() - t0
    time.sleep(1.0)  # the last failed handshakes reaped
    cpu = _cpu_s(srv.proc.pid) - c0
    err = srv.stop()  # which logs the counts of lines left out (flushed every 10 s otherwise)
    if err:
        print(err, file=sys.stderr)
    served = [t for ok, t in runs if ok]
    return {
        "flood_from": flood_from,
        "width": width,
        "seconds": wall,
        "flood_conns_per_s": opened.value / wall,
        "forks_per_s": srv.forked() / wall,
        "server_cpu_pct": 100 * cpu / wall,
        "clients_served": len(served),
        "clients": len(runs),
        "client_median_s": statistics.median(served) if served else None,
        "client_max_s": max(served) if served else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a one-address connection flood against run server")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--quick", action="store_true", help="5 s of flood per phase, 2 clients")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--width",
        type=int,
        default=4,
        help="flood connections at once (the default handshake places of an address)",
    )
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="one more `run server` argument (repeat; --server-arg=--opt for dashes)",
    )
    args = ap.parse_args(argv)
    seconds, clients = (5.0, 2) if args.quick else (args.seconds, args.clients)
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        bundle, x = _compile(d)
        for flood_from in (None, "127.0.0.2", "127.0.0.1"):
            srv = _Server(bundle, args.server_arg)  # a fresh server: no state from the last
            try:
                rows.append(phase(srv, bundle, x, d, flood_from, seconds, clients, args.width))
            finally:
                if srv.proc.poll() is None:
                    srv.stop()
    load1 = os.getloadavg()
    print(f"one-address flood of ClientHello fragments, {args.width} at a time, {seconds:g} s per "
          "phase; server args "
          f"{' '.join(args.server_arg) or '(defaults)'}; load {load0} -> {load1}")  # fmt: skip
    print("| flood | flood conn/s | forks/s | server CPU % | clients served | client median s "
          "| max s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    names = {None: "none", "127.0.0.2": "other address", "127.0.0.1": "client's address"}
    for r in rows:
        med = "-" if r["client_median_s"] is None else f"{r['client_median_s']:.2f}"
        mx = "-" if r["client_max_s"] is None else f"{r['client_max_s']:.2f}"
        print(f"| {names[r['flood_from']]} | {r['flood_conns_per_s']:.0f} | {r['forks_per_s']:.1f} "
              f"| {r['server_cpu_pct']:.0f} | {r['clients_served']}/{r['clients']} | {med} "
              f"| {mx} |")  # fmt: skip
    if args.json_path:
        doc = {"seconds": seconds, "server_args": args.server_arg, "rows": rows,
               "load": {"before": load0, "after": load1}}  # fmt: skip
        Path(args.json_path).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
