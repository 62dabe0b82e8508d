"""What a stranger can make the server write or read (the operator's review of the server):
handshake fields in error messages, a damaged weights file, timeouts that cannot work. Each
test failed on the code before its fix."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import threading

import pytest
from test_run_cli import TWOFOLD, bundles, one_line_error  # noqa: F401

from twofold.runtime.errors import PeerError, ProgramMismatchError, peer_repr
from twofold.runtime.gate import client_channel, plaintext_reply
from twofold.runtime.net import Channel
from twofold.runtime.session import PROTOCOL, PROTOCOL_VERSION, Party


def _frame(body: bytes) -> bytes:
    return struct.pack("<QB", len(body), 0) + body


def _server_hello_error(hello: dict) -> Exception:
    """What the server's Party raises for a client that sends ``hello`` (and a seed)."""
    a, b = socket.socketpair()
    try:
        b.sendall(_frame(json.dumps(hello).encode()) + _frame(b"\0" * 16))
        with pytest.raises((PeerError, ProgramMismatchError)) as e:
            Party("server", Channel(a, 5.0), "0" * 64, setup_ot=False)
        return e.value
    finally:
        a.close()
        b.close()


GOOD = {"protocol": PROTOCOL, "version": PROTOCOL_VERSION, "role": "client", "program": "0" * 64}


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("protocol", "A" * 3000, "(3000 chars)"),
        ("role", "B" * 3000, "(3000 chars)"),
        ("version", [0] * 1000, "<list of 1000 items>"),
        ("program", {"k" * 50: "v" * 2000}, "<dict of 1 item>"),
        ("version", "4", "v'4'"),  # the right number as a string is not version 4
    ],
)
def test_handshake_fields_reach_the_log_capped(field, value, shown):
    """The handshake's refusals put the peer's protocol/role/version/program in the message
    with !r, whole: a stranger wrote 4 MB lines into the server's log per connection."""
    err = _server_hello_error(GOOD | {field: value})
    assert isinstance(err, ProgramMismatchError), err
    assert shown in str(err) and len(str(err)) < 250, str(err)[:300]


def test_oversized_hello_is_refused_before_it_is_read():
    """A hello is ~150 bytes; one of megabytes (a million-element list) is refused on its
    header, never parsed (it took ~1 GB of Python objects in the connection's process)."""
    a, b = socket.socketpair()
    try:
        b.sendall(struct.pack("<QB", 6_000_000, 0))
        with pytest.raises(PeerError, match="at most 4096"):
            Party("server", Channel(a, 5.0), "0" * 64, setup_ot=False)
    finally:
        a.close()
        b.close()


def test_peer_repr_bounds():
    assert peer_repr("abc") == "'abc'"
    assert peer_repr("x" * 61) == repr("x" * 60) + "…(61 chars)"
    assert peer_repr(b"\0" * 100, 10) == repr(b"\0" * 10) + "…(100 bytes)"
    assert peer_repr(3) == "3" and peer_repr(None) == "None"
    assert len(peer_repr(1.5e300)) < 70


def _damage(raw: bytes, how: str) -> bytes:
    if how == "truncated":
        return raw[: len(raw) // 2]
    if how == "bit flip":  # inside the first array's data: the zip's CRC-32 no longer matches
        b = bytearray(raw)
        b[raw.index(b"\x93NUMPY") + 160] ^= 0xFF
        return bytes(b)
    return bytes(range(256)) * 8  # random bytes: np.load took them for a pickle


@pytest.mark.parametrize("how", ["truncated", "bit flip", "random bytes"])
def test_damaged_weights_file_is_one_line(bundles, tmp_path, how):  # noqa: F811
    """A truncated or corrupted weights.npz gave `run server` a 50-line traceback
    (zipfile.BadZipFile, Bad CRC-32), random bytes a message about allow_pickle."""
    srv = tmp_path / "b"
    shutil.copytree(bundles["a"], srv)
    w = srv / "server" / "weights.npz"
    w.write_bytes(_damage(w.read_bytes(), how))
    res = subprocess.run(
        [*TWOFOLD, "run", "server", str(srv), "--listen", "127.0.0.1:0", "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(res, str(w), "is damaged or not a weights file")
    assert "pickle" not in res.stderr


@pytest.mark.parametrize(
    "option, value",
    [
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--handshake-timeout", "nan"),
        ("--session-timeout", "inf"),
    ],
)
def test_server_refuses_a_timeout_that_cannot_work_at_start(bundles, option, value):  # noqa: F811
    """`run server --timeout 0` (or -1, nan, inf) started, printed its banner, then failed
    every client; nan/inf also passed --handshake-timeout and --session-timeout."""
    res = subprocess.run(
        [*TWOFOLD, "run", "server", str(bundles["a"]), "--listen", "127.0.0.1:0", "--once",
         option, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(res, option, "finite number of seconds above 0")
    assert "serving" not in res.stdout


def _closing_server(reset: bool) -> socket.socket:
    """A listener whose every connection is closed at once (as a busy server closes one it
    turns away before TLS), with a FIN or a RST."""
    lst = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        while True:
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return lst


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_busy_server_does_not_steer_the_client_to_plaintext(reset):
    """A client turned away while the server was busy was told that the server did not offer
    TLS and to pass --insecure-plaintext: a hospital steered off the authenticated channel."""
    lst = _closing_server(reset)
    try:
        with pytest.raises(PeerError) as e:
            client_channel(*lst.getsockname()[:2], server_fingerprint="sha256:" + "00" * 32,
                           timeout=5.0, connect_timeout=5.0)  # fmt: skip
    finally:
        lst.close()
    msg = str(e.value)
    assert "plaintext" not in msg, msg
    if "cannot connect" not in msg:  # a reset may even beat connect() to it (1 in ~150)
        assert "closed the connection during the TLS handshake" in msg and "busy" in msg, msg


def test_plaintext_hint_needs_a_plaintext_twofold_answer():
    reply = json.dumps({"error": "this server runs --insecure-plaintext (no TLS)"}).encode()
    assert plaintext_reply(_frame(reply)) == "this server runs --insecure-plaintext (no TLS)"
    assert plaintext_reply(_frame(reply)[:20]) is None  # cut short: no claim
    assert plaintext_reply(b"\x15\x03\x03\x00\x02\x02\x28") is None  # a TLS alert
    assert plaintext_reply(b"\x16\x03\x03\x00\x7a" + b"\0" * 200) is None  # a ServerHello
    assert plaintext_reply(b"HTTP/1.1 400 Bad Request\r\n\r\n") is None
    assert plaintext_reply(_frame(b'{"ok": true}')) is None


def test_a_busy_reply_is_a_transient_server_busy_error():
    """A server with no slot answers the settings frame with {"error": ...}: the client says
    so (capped) as ServerBusy, which eval's retries count as a connection failure; before,
    it read "server chose an unknown linear method None"."""
    from twofold.eval.endpoints import is_transient
    from twofold.runtime.errors import ServerBusy
    from twofold.runtime.runner import _session_settings

    a, b = socket.socketpair()
    try:
        why = "server busy: 2 session slots taken, 4 clients waiting already; try again later"
        b.sendall(_frame(json.dumps({"error": why + "!" * 3500}).encode()))
        with pytest.raises(ServerBusy, match="turned the session away: 'server busy") as e:
            _session_settings(Channel(a, 5.0))
    finally:
        a.close()
        b.close()
    assert len(str(e.value)) < 400 and is_transient(e.value)
