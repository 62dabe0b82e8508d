"""A server that can face the internet (issue 12, deliverable 4), replaying what worked
against the old code: a huge declared frame after a valid handshake, idle and trickling
connections holding the session slots, a port probe ending a ``--once`` server."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from test_run_cli import Server, bundles, client  # noqa: F401

from twofold.runtime.gate import client_channel


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the server's connection processes)."""
    out = []
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(st.parent.name))
    return out


def _attacker_after_handshake(addr: str, fingerprint: str) -> socket.socket:
    """What anyone can do: TLS to the server, then echo the program hash it announces."""
    host, port = addr.rsplit(":", 1)
    chan = client_channel(host, int(port), server_fingerprint=fingerprint, timeout=30)
    hello = json.loads(chan.recv_bytes())
    chan.recv_bytes(max_len=16)
    chan.send(json.dumps(hello | {"role": "client"}, sort_keys=True).encode())
    chan.send(b"\0" * 16)
    chan.flush()
    return chan.sock


def test_huge_declared_frames_after_handshake_stay_bounded(bundles):  # noqa: F811
    srv = Server(bundles["a"])
    socks = []
    try:
        for n in (1 << 31, 1 << 40):
            s = _attacker_after_handshake(srv.addr, srv.fingerprint)
            s.sendall(struct.pack("<QB", n, 0))  # a header, and no payload
            socks.append(s)
        for s in socks:  # each session ends at once: no payload is awaited, nothing allocated
            s.settimeout(60)
            while s.recv(1 << 16):
                pass
    finally:
        for s in socks:
            s.close()
        out, err = srv.stop()
    fails = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(fails) == 2, err
    for n, line in zip((1 << 31, 1 << 40), fails, strict=True):
        assert f"frame of {n} bytes" in line, line
        rss = float(re.search(r"peak RSS (\d+) MiB", line).group(1))
        assert rss < 300, line
    assert "session 1 failed (exit 1)" in out and "session 2 failed (exit 1)" in out


def test_idle_and_trickling_connections_do_not_starve_a_client(bundles):  # noqa: F811
    d, hs = bundles["dir"], 3.0
    srv = Server(bundles["a"], "--max-sessions", "1", "--handshake-timeout", str(hs))
    host, port = srv.addr.rsplit(":", 1)
    stop = threading.Event()
    try:
        t = time.monotonic()
        res = client(bundles["a"], srv.addr, bundles["x"], d / "base.json", "--quiet")
        base = time.monotonic() - t
        assert res.returncode == 0, res.stderr
        idle = [socket.create_connection((host, int(port))) for _ in range(2)]
        trickler = socket.create_connection((host, int(port)))

        def trickle() -> None:  # a TLS record header, then one byte a second, forever
            for b in b"\x16\x03\x01\x02\x00" + b"\x01" * 600:
                if stop.wait(1.0):
                    return
                try:
                    trickler.sendall(bytes([b]))
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        t = time.monotonic()
        res = client(bundles["a"], srv.addr, bundles["x"], d / "busy.json", "--quiet")
        busy = time.monotonic() - t
        assert res.returncode == 0, res.stderr
        assert busy < base + hs + 5.0, (base, busy)
        # and the server dropped each of them at the handshake deadline
        for s in [*idle, trickler]:
            s.settimeout(hs + 10)
            t = time.monotonic()
            try:
                assert s.recv(1 << 16) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - t < hs + 10
        deadline = time.monotonic() + 30  # let the refused connections' processes finish
        while _children(srv.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        out, err = srv.stop()
    assert err.count("refused at handshake") >= 3, out + err
    assert "deadline" in err


def test_port_probe_does_not_end_a_once_server(bundles):  # noqa: F811
    d = bundles["dir"]
    srv = Server(bundles["a"], "--once")
    host, port = srv.addr.rsplit(":", 1)
    socket.create_connection((host, int(port))).close()  # connect + close
    with socket.create_connection((host, int(port))) as s:  # garbage
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(15)
        try:
            s.recv(4096)
        except OSError:
            pass
    res = client(bundles["a"], srv.addr, bundles["x"], d / "once.json", "--quiet")
    assert res.returncode == 0, res.stderr
    assert srv.proc.wait(timeout=30) == 0
    out, err = srv.stop()
    assert "session 3 done" in out, out + err


@contextlib.contextmanager
def _trickling_server(first: bytes) -> Iterator[int]:
    """A loopback server (its port) that sends ``first`` to the one client it accepts, then a
    byte every 0.2 s: never slow enough for a per-read timeout, never done."""
    lst = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = lst.accept()
        with conn:
            conn.sendall(first)
            while not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    try:
        yield lst.getsockname()[1]
    finally:
        stop.set()
        lst.close()


def _frame(payload_len: int, payload: bytes = b"") -> bytes:
    from twofold.runtime import net

    return net._HDR.pack(payload_len, net._KIND_BYTES) + payload


def test_client_gives_up_on_a_trickling_server_at_its_session_deadline(bundles):  # noqa: F811
    """Every wait of the client has a deadline: a server that sends one byte every 0.2 s
    never trips the per-read timeout, but the whole-session deadline ends the run: the
    --session-timeout given, with no slack added."""
    import numpy as np
    import pytest

    from twofold.runtime import runner
    from twofold.runtime.errors import RuntimeProtocolError

    ok = json.dumps({"ok": True}).encode()  # past the gate, then a hello that never ends
    x = np.load(bundles["x"])
    t0 = time.monotonic()
    with (
        _trickling_server(_frame(len(ok), ok) + _frame(64)) as port,
        pytest.raises(RuntimeProtocolError, match="session deadline of 2 s"),
    ):
        runner.run_client(
            bundles["a"], "127.0.0.1", port, {"image": x}, insecure_plaintext=True,
            timeout=5.0, session_timeout=2.0, progress=False,
        )  # fmt: skip
    assert time.monotonic() - t0 < 10


def test_client_gives_up_on_a_server_trickling_its_gate_reply(bundles):  # noqa: F811
    """The token exchange after TLS is under the handshake deadline too (connect + 1 s here)."""
    import pytest

    from twofold.runtime.errors import RuntimeProtocolError
    from twofold.runtime.gate import client_channel as connect

    t0 = time.monotonic()
    with (
        _trickling_server(_frame(64)) as port,  # a gate reply that never ends
        pytest.raises(RuntimeProtocolError, match=r"^handshake deadline with .* passed"),
    ):
        connect("127.0.0.1", port, insecure_plaintext=True, timeout=1.0, connect_timeout=1.0)
    assert time.monotonic() - t0 < 6
