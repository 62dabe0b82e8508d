"""The WAN stand-in of benchmarks/e2e.py (benchmarks/_relay.py): a loopback TCP relay that holds
a rate and a one-way delay per direction, and stops by itself at its time or traffic bound."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _relay_module():  # noqa: ANN202 - benchmarks/ is not a package
    spec = importlib.util.spec_from_file_location(
        "twofold_bench_relay", ROOT / "benchmarks/_relay.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


Relay = _relay_module().Relay


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """Upstream: answers b"ping" with b"pong" and each bulk block with an 8-byte ack."""
    lst = socket.create_server(("127.0.0.1", 0))

    def body() -> None:
        conn, _ = lst.accept()
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                if head == b"ping":
                    conn.sendall(b"pong")
                    continue
                n = int.from_bytes(head, "little")
                got = 0
                while got < n:
                    k = len(conn.recv(min(1 << 16, n - got)))
                    if not k:
                        return
                    got += k
                conn.sendall(b"ack!")

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return lst, t


def test_relay_holds_rate_and_delay():
    rate, one_way = 40e6, 0.015  # 40 Mbit/s, 30 ms round trip
    lst, t = _echo_server()
    with Relay(lst.getsockname()[1], rate, one_way, max_seconds=20) as relay:
        c = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(6):  # the first includes the relay's connection to upstream
            t0 = time.perf_counter()
            c.sendall(b"ping")
            assert c.recv(4, socket.MSG_WAITALL) == b"pong"
            rtts.append(time.perf_counter() - t0)
        n = 1_500_000  # 0.3 s of link time at 40 Mbit/s
        t0 = time.perf_counter()
        c.sendall(n.to_bytes(4, "little") + bytes(n))
        assert c.recv(4, socket.MSG_WAITALL) == b"ack!"
        bulk = time.perf_counter() - t0
        c.close()
    relay.join(5)
    lst.close()
    want_rtt = 2 * one_way
    rtts = sorted(rtts[1:])
    assert want_rtt <= rtts[0] and rtts[2] < want_rtt * 1.2 + 0.003, rtts  # median of 5
    want_bulk = (n + 8) * 8 / rate + 2 * one_way
    assert want_bulk * 0.97 <= bulk <= want_bulk * 1.15 + 0.01, (bulk, want_bulk)
    assert relay.forwarded["up"] == 6 * 4 + 4 + n and relay.forwarded["down"] == 7 * 4


@pytest.mark.parametrize("bound", ["time", "traffic"])
def test_relay_stops_by_itself(bound):
    lst, _ = _echo_server()
    kw = {"max_seconds": 0.5} if bound == "time" else {"max_seconds": 20, "max_bytes": 100_000}
    relay = Relay(lst.getsockname()[1], 1e9, 0.0, **kw)
    c = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    t0 = time.perf_counter()
    if bound == "traffic":
        with pytest.raises(OSError):
            for _ in range(100):
                c.sendall((1 << 20).to_bytes(4, "little") + bytes(1 << 20))
                time.sleep(0.01)
    c.settimeout(5)
    assert c.recv(4) == b""  # the relay closed the connection
    relay.join(5)
    assert time.perf_counter() - t0 < 5
    assert relay.stopped_by == f"{bound} limit"
    c.close()
    lst.close()
