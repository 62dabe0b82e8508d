"""Opening a session: TLS, the client's access token, all under one deadline (DESIGN.md §5).

Wire order, before the program handshake of :class:`~twofold.runtime.session.Party`:

1. TCP connect; TLS 1.3 unless both sides run ``--insecure-plaintext``. The server peeks at the
   first byte: a TLS ClientHello starts with 0x16, a twofold frame header (a length < 2^56)
   does not, so a mismatch is named on both sides instead of hanging.
2. client -> server: one frame ``{"token": T}`` (``T`` may be null), at most
   :data:`GATE_FRAME_MAX` bytes; inside TLS, so the token is never in the clear.
3. server -> client: ``{"ok": true}`` or ``{"error": "..."}``. Tokens are compared as SHA-256
   digests with :func:`hmac.compare_digest` against every accepted token (no early exit).

On the server the whole opening (TLS handshake included) runs against one monotonic deadline,
so a peer trickling one byte per period cannot hold it longer than the handshake timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import select
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PeerError, PeerTimeout, peer_repr
from .net import FRAME_HEADER, Cancel, Channel, connect_tcp
from .tls import TLSConfigError, check_pin, client_context, parse_fingerprint
from .tls_stream import TLSStream

GATE_FRAME_MAX = 4096
TOKEN_MIN_CHARS = 16
_TLS_RECORD_HANDSHAKE = 0x16


def _wait_readable(sock: socket.socket, deadline: float, what: str) -> None:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([sock], [], [], left)[0]:
        raise PeerTimeout(f"{what}: deadline passed")


def _peek_first_byte(sock: socket.socket, deadline: float) -> int | None:
    """The first byte the client sent (not consumed), None if it closed without sending."""
    _wait_readable(sock, deadline, "waiting for the client's first bytes")
    try:
        b = sock.recv(1, socket.MSG_PEEK)
    except OSError as e:
        raise PeerError(f"connection lost before the client spoke: {e}") from None
    return b[0] if b else None


# ------------------------------------------------------------------------------------- client


def client_channel(
    host: str,
    port: int,
    *,
    tls_ca: str | None = None,
    server_fingerprint: str | None = None,
    token: str | None = None,
    insecure_plaintext: bool = False,
    timeout: float = 600.0,
    connect_timeout: float = 10.0,
    deadline: float | None = None,
    cancel: Cancel | None = None,
) -> Channel:
    """Connect, authenticate the server (pin or CA), present the token; return the channel.

    The opening ends by the monotonic time ``deadline`` at the latest (the caller's session
    deadline), else within the connect timeout plus ``min(timeout, 60)`` s after connecting.
    ``cancel``: watches the connection from the moment it is made (see :class:`Cancel`).
    """
    where = f"{host}:{port}"
    if insecure_plaintext and (tls_ca or server_fingerprint):
        raise TLSConfigError(
            "--insecure-plaintext cannot be combined with --tls-ca or --server-fingerprint"
        )
    if not insecure_plaintext and not tls_ca and not server_fingerprint:
        raise TLSConfigError(
            "the server must be authenticated: pass --server-fingerprint sha256:... (printed by "
            "`twofold run server` at start) or --tls-ca CA.pem; --insecure-plaintext turns TLS "
            "off (trusted networks only)"
        )
    pin = parse_fingerprint(server_fingerprint) if server_fingerprint else None
    ctx = None if insecure_plaintext else client_context(tls_ca, server_fingerprint)
    sock = connect_tcp(host, port, connect_timeout)
    if cancel is not None:
        try:
            cancel.watch(sock)
        except BaseException:
            sock.close()
            raise
    opening = time.monotonic() + max(connect_timeout, 1.0) + min(timeout, 60.0)
    deadline = opening if deadline is None else min(opening, deadline)
    try:
        if ctx is not None:
            sock = TLSStream(sock, ctx, server_side=False, server_hostname=host)
            try:
                sock.handshake(deadline, f"TLS handshake with {where}")
            except ssl.SSLCertVerificationError as e:
                raise PeerError(
                    f"TLS: the server at {where} is not trusted by --tls-ca {tls_ca}: "
                    f"{e.verify_message}"
                ) from None
            except (ssl.SSLError, OSError) as e:
                raise PeerError(_tls_failure(where, e, sock.head)) from None
            if pin is not None:
                check_pin(sock, pin, where)
        chan = Channel(sock, timeout)
    except BaseException:
        sock.close()
        raise
    chan.set_deadline(deadline, f"handshake deadline with {where}")
    try:
        chan.send(json.dumps({"token": token}).encode())
        reply = _recv_reply(chan, where, insecure_plaintext)
        chan.set_deadline(None)
    except BaseException:
        chan.abort()
        raise
    if "error" in reply:
        chan.abort()
        raise PeerError(f"the server at {where} refused the session: {reply['error']}")
    return chan


def _tls_failure(where: str, e: OSError, head: bytes) -> str:
    """Why the TLS handshake with ``where`` failed, from what the server sent (``head``).

    Plaintext is suggested only when the server's bytes show a plaintext twofold server (its
    framed refusal of a TLS client): a server that closes or resets the connection during the
    handshake is busy (it turns connections away before TLS) or not a twofold server, and a
    client told to drop TLS there would be steered off the authenticated channel for nothing.
    """
    said = plaintext_reply(head)
    if said is not None:
        return (
            f"the server at {where} did not offer TLS: it answered in plaintext as a twofold "
            f"server run with --insecure-plaintext does ({peer_repr(said)}); pass "
            "--insecure-plaintext to talk to it in the clear, on a trusted network only"
        )
    if isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError):
        return (
            f"the server at {where} closed the connection during the TLS handshake (busy, or "
            "not a twofold server); try again later"
        )
    return f"TLS handshake with {where} failed: {e}"


def plaintext_reply(head: bytes) -> str | None:
    """The error message of a twofold frame at the start of ``head``, else None.

    ``head`` is what a server answered a TLS ClientHello with. A plaintext twofold server
    answers with one frame (kind 0, at most :data:`GATE_FRAME_MAX` bytes) holding
    ``{"error": "..."}``. No TLS record passes for one: its third byte (the version's minor
    number, 1-4) would make the frame's little-endian length at least 2^16.
    """
    if len(head) < FRAME_HEADER.size:
        return None
    n, kind = FRAME_HEADER.unpack_from(head)
    if kind != 0 or n > GATE_FRAME_MAX or len(head) < FRAME_HEADER.size + n:
        return None
    try:
        doc = json.loads(bytes(head[FRAME_HEADER.size : FRAME_HEADER.size + n]).decode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc["error"] if isinstance(doc, dict) and isinstance(doc.get("error"), str) else None


def _recv_reply(chan: Channel, where: str, plaintext: bool) -> dict:
    try:
        raw = chan.recv_bytes(max_len=GATE_FRAME_MAX)
    except PeerError as e:
        if plaintext and not isinstance(e, PeerTimeout):
            # A plaintext server closes a connection at once when it is busy (no token of the
            # address left, its handshake places full: before any process, so before any
            # reply), as a TLS server closes a plaintext frame: the hint names both.
            raise PeerError(
                f"the server at {where} closed the connection at once ({e}): it is busy (try "
                "again later), or it expects TLS (then pass --server-fingerprint or --tls-ca "
                "instead of --insecure-plaintext)"
            ) from None
        raise
    try:
        reply = json.loads(raw.decode())
        if not isinstance(reply, dict) or not ("ok" in reply or "error" in reply):
            raise ValueError("not a gate reply")
        return {"error": str(reply["error"])} if "error" in reply else reply
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise PeerError(f"the server at {where} sent a malformed reply ({e})") from None


# ------------------------------------------------------------------------------------- server


def read_token_file(path: str | Path) -> list[bytes]:
    """Accepted tokens (one a line, # comments) as SHA-256 digests; the file must be 0600."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise TLSConfigError(f"cannot read --token-file {p}: {e}") from None
    if mode & 0o077:
        raise TLSConfigError(f"--token-file {p} is readable by others; chmod 600 it")
    out = []
    for i, line in enumerate(lines, 1):
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if len(t) < TOKEN_MIN_CHARS:
            raise TLSConfigError(
                f"--token-file {p} line {i}: a token needs at least {TOKEN_MIN_CHARS} characters"
            )
        out.append(hashlib.sha256(t.encode()).digest())
    if not out:
        raise TLSConfigError(f"--token-file {p} lists no token")
    return out


def token_accepted(token: object, accepted: list[bytes]) -> bool:
    """Constant-time membership of ``token`` among the accepted digests."""
    d = hashlib.sha256(token.encode() if isinstance(token, str) else b"\0invalid").digest()
    ok = False
    for t in accepted:
        ok |= hmac.compare_digest(d, t)
    return ok and isinstance(token, str)


@dataclass
class GateConfig:
    """The server's side of the opening: TLS context (None = plaintext), accepted tokens."""

    ctx: ssl.SSLContext | None
    tokens: list[bytes] | None = None
    handshake_timeout: float = 10.0


def _refuse_plaintext(sock: socket.socket, msg: str) -> None:
    """Send ``msg`` as a plaintext twofold frame (``{"error": msg}``), outside TLS: a plaintext
    client is told that TLS is expected, a TLS client that this server runs without it."""
    body = json.dumps({"error": msg}).encode()
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(FRAME_HEADER.pack(len(body), 0) + body)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(GATE_FRAME_MAX)  # let the client's bytes in flight arrive (no RST on close)


def server_channel(
    conn: socket.socket, gate: GateConfig, timeout: float, deadline: float | None = None
) -> Channel:
    """Open the session on an accepted socket (TLS, token) by the monotonic ``deadline``
    (default: ``gate.handshake_timeout`` from now; the server passes the connection's accept
    time plus that, so the time it waited for a first byte counts too).

    Returns the channel with its deadline still set (the caller continues the handshake under
    it); PeerError naming what went wrong otherwise (the socket is closed).
    """
    if deadline is None:
        deadline = time.monotonic() + gate.handshake_timeout
    try:
        first = _peek_first_byte(conn, deadline)
        if first is None:
            raise PeerError("the client closed the connection without a word (a port probe?)")
        tls = first == _TLS_RECORD_HANDSHAKE
        if gate.ctx is not None and not tls:
            msg = (
                "this server requires TLS: pass --server-fingerprint (printed by the server) "
                "or --tls-ca to the client"
            )
            _refuse_plaintext(conn, msg)
            raise PeerError("a plaintext client connected; told it that TLS is required")
        if gate.ctx is None and tls:  # said in the frame the client recognises (plaintext_reply)
            _refuse_plaintext(conn, "this server runs --insecure-plaintext (no TLS)")
            raise PeerError("the client started TLS, but this server runs --insecure-plaintext")
        if gate.ctx is not None:
            conn = TLSStream(conn, gate.ctx, server_side=True)
            try:
                conn.handshake(deadline, "TLS handshake with the client")
            except (ssl.SSLError, OSError) as e:
                raise PeerError(f"TLS handshake with the client failed: {e}") from None
    except BaseException:
        conn.close()
        raise
    chan = Channel(conn, timeout)
    chan.set_deadline(deadline, f"handshake deadline of {gate.handshake_timeout:g} s")
    try:
        try:
            hello = json.loads(chan.recv_bytes(max_len=GATE_FRAME_MAX).decode())
            token = hello.get("token") if isinstance(hello, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise PeerError(f"the client sent a malformed opening frame ({e})") from None
        if gate.tokens is not None and not token_accepted(token, gate.tokens):
            chan.send(json.dumps({"error": "access token missing or not accepted"}).encode())
            chan.flush()
            raise PeerError("the client presented no accepted access token")
        chan.send(b'{"ok": true}')
    except BaseException:
        chan.abort()
        raise
    return chan


__all__ = [
    "GATE_FRAME_MAX",
    "GateConfig",
    "client_channel",
    "read_token_file",
    "server_channel",
    "token_accepted",
]
