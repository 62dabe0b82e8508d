"""Attacks on the hardened server and client (issue 12 audit), each replayed over real
loopback TCP against the code that stops it; every test here failed on the code before its fix."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

from twofold.runtime.errors import PeerError
from twofold.runtime.gate import GateConfig, server_channel
from twofold.runtime.net import Channel
from twofold.runtime.session import Party
from twofold.runtime.tls import ensure_self_signed, server_context


def _tls_client(raw: socket.socket) -> tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """A TLS 1.3 client over memory BIOs (so the attacker controls every byte on the wire)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(1 << 16))
    raw.sendall(out.read())
    return obj, out


def test_trickled_tls_record_cannot_outlast_the_handshake_deadline(tmp_path: Path) -> None:
    """TLS up, then the opening frame's record one byte every 0.4 s: the record is never
    complete, so the old TLSStream.recv_into looped on the socket forever (each byte within the
    per-read timeout), holding a pending place for hours; the deadline now ends it."""
    cert, key = ensure_self_signed(tmp_path / "tls")
    hs = 1.5
    gate = GateConfig(server_context(cert, key), None, hs)
    lst = socket.create_server(("127.0.0.1", 0))
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = lst.accept()
        t0 = time.monotonic()
        try:
            server_channel(conn, gate, timeout=600.0)
            result["outcome"] = "admitted"
        except PeerError as e:
            result["outcome"] = str(e)
        result["held"] = time.monotonic() - t0

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    raw = socket.create_connection(lst.getsockname())
    try:
        obj, out = _tls_client(raw)
        body = b" " * 2000 + json.dumps({"token": None}).encode()
        obj.write(len(body).to_bytes(8, "little") + b"\0" + body)
        record = out.read()
        t0 = time.monotonic()
        for b in record[:-1]:  # never the last byte
            if not th.is_alive() or time.monotonic() - t0 > hs + 4:
                break
            try:
                raw.sendall(bytes([b]))
            except OSError:
                break
            th.join(0.4)
        th.join(2)
    finally:
        raw.close()
        lst.close()
    assert not th.is_alive() and result["outcome"] != "admitted", result
    assert "deadline" in str(result["outcome"]), result
    assert result["held"] < hs + 1.0, result


def _frame(body: bytes) -> bytes:
    return struct.pack("<QB", len(body), 0) + body


@pytest.mark.parametrize("stage", ["gate", "program handshake"])
def test_deeply_nested_json_is_a_malformed_frame(stage: str) -> None:
    """A 4 KiB opening frame of '[' made json.loads raise RecursionError, which no handler
    caught: a traceback in the server's log from anyone who can connect (before TLS in
    plaintext mode). Now it is a malformed frame, refused with a PeerError."""
    a, b = socket.socketpair()
    chan = None
    try:
        if stage == "gate":
            b.sendall(_frame(b"[" * 4000))
            with pytest.raises(PeerError, match="malformed opening frame"):
                server_channel(a, GateConfig(None, None, 5.0), timeout=5.0)
        else:
            chan = Channel(a, 5.0)
            b.sendall(_frame(b"[" * 100_000) + _frame(b"\0" * 16))
            with pytest.raises(PeerError, match="malformed hello"):
                Party("server", chan, "0" * 64, setup_ot=False)
    finally:
        for s in (a, b):
            s.close()
