"""Channel: length-prefixed frames over TCP (optionally TLS), with byte/round counters per section.

Frame = 9-byte header (uint64 little-endian payload length, 1-byte kind: 0 raw bytes, else the
numpy dtype character) followed by the payload. Arrays go out as their raw C-contiguous memory
(``sendall`` of a memoryview) and come in through ``recv_into`` a preallocated array. Small frames
are buffered and flushed before any receive, so a batch of small sends costs one syscall.
A *round* is one flight of messages: counted at the first send after a receive.
A peer that closes, sends a frame of the wrong size/kind, or stalls past the timeout raises
:class:`PeerError` (DESIGN.md §5, §6).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PeerError, PeerTimeout, RuntimeProtocolError

FRAME_HEADER = struct.Struct("<QB")  # a frame: payload length, kind (0 = bytes)
_KIND_BYTES = 0
_SMALL = 1 << 16  # frames up to this size are coalesced in the send buffer
_SOCKBUF = 1 << 22
MAX_FRAME = 1 << 36  # refuse absurd lengths from a malformed header (64 GiB)
CONTROL_FRAME_MAX = 1 << 24  # handshake and JSON control frames: never allocate more (16 MiB)
_DISCARD_MAX = 1 << 20


@dataclass
class SectionStats:
    """Traffic attributed to one named section (a layer, a protocol step)."""

    bytes_sent: int = 0
    bytes_recv: int = 0
    rounds: int = 0
    seconds: float = 0.0


def _kind_name(kind: int) -> str:
    try:
        return repr(np.dtype(chr(kind)).name)
    except TypeError:
        return f"#{kind}"


def _kind_is(kind: int, dt: np.dtype) -> bool:
    try:
        return np.dtype(chr(kind)) == dt
    except TypeError:
        return False


class Channel:
    """One party's end of a framed connection. Not thread-safe: one thread per channel."""

    def __init__(self, sock: socket.socket, timeout: float | None = 30.0) -> None:
        self.sock = sock
        self.timeout = timeout
        sock.settimeout(timeout)
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError, AttributeError):  # room for a few OT chunks in flight
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKBUF)
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.rounds = 0
        self.stats: dict[str, SectionStats] = {}
        self._active: list[str] = []
        self._buf = bytearray()
        self._sent_since_recv = False
        self._closed = False
        self._hdr = bytearray(FRAME_HEADER.size)
        self.deadline: float | None = None
        self._deadline_what = ""

    # -- deadline ---------------------------------------------------------------------------
    def set_deadline(self, deadline: float | None, what: str = "deadline") -> None:
        """Bound every later send/receive by the monotonic time ``deadline`` (None: no bound).

        Unlike the per-operation ``timeout``, a deadline covers the whole handshake or session:
        a peer trickling one byte per period still runs into it.
        """
        self.deadline = deadline
        self._deadline_what = what
        if deadline is None:
            self.sock.settimeout(self.timeout)

    def _arm(self, what: str) -> None:
        """Set the socket timeout to what is left of timeout/deadline; PeerError if none is."""
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PeerTimeout(f"{self._deadline_what} passed ({what})")
        self.sock.settimeout(left if self.timeout is None else min(self.timeout, left))

    def _timed_out(self, what: str) -> str:
        if self.deadline is not None and time.monotonic() >= self.deadline - 0.01:
            return f"{self._deadline_what} passed ({what})"
        return f"timed out after {self.timeout} s waiting for the peer ({what})"

    # -- accounting -------------------------------------------------------------------------
    def _count(self, sent: int = 0, recv: int = 0, rounds: int = 0) -> None:
        self.bytes_sent += sent
        self.bytes_recv += recv
        self.rounds += rounds
        for name in set(self._active):
            st = self.stats[name]
            st.bytes_sent += sent
            st.bytes_recv += recv
            st.rounds += rounds

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[SectionStats]:
        """Attribute traffic and wall time inside the block to ``name`` (nesting adds to all)."""
        st = self.stats.setdefault(name, SectionStats())
        self._active.append(name)
        t0 = time.perf_counter()
        try:
            yield st
        finally:
            st.seconds += time.perf_counter() - t0
            self._active.remove(name)

    # -- sending ----------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Send one frame: raw bytes, or a numpy array's C-contiguous memory."""
        if self._closed:
            raise PeerError("channel is closed")
        if isinstance(data, np.ndarray):
            arr = np.ascontiguousarray(data)
            kind = ord(arr.dtype.char)
            payload = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
        elif isinstance(data, bytes | bytearray | memoryview):
            kind = _KIND_BYTES
            payload = memoryview(data).cast("B")
        else:
            raise TypeError(f"Channel.send takes bytes or a numpy array, not {type(data).__name__}")
        n = payload.nbytes
        self._buf += FRAME_HEADER.pack(n, kind)
        if n <= _SMALL:
            self._buf += payload
            if len(self._buf) > _SMALL:
                self.flush()
        else:
            self.flush()
            self._sendall(payload)
        self._count(sent=n + FRAME_HEADER.size, rounds=0 if self._sent_since_recv else 1)
        self._sent_since_recv = True

    def flush(self) -> None:
        """Push buffered small frames to the socket."""
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._sendall(memoryview(buf))

    def _sendall(self, mv: memoryview) -> None:
        try:
            self._arm("sending")
            self.sock.sendall(mv)
        except TimeoutError as e:
            raise PeerTimeout(self._timed_out("sending")) from e
        except OSError as e:
            raise PeerError(f"peer connection lost while sending: {e}") from e

    # -- receiving --------------------------------------------------------------------------
    def _recv_into(self, mv: memoryview, what: str) -> None:
        got, n = 0, mv.nbytes
        while got < n:
            try:
                self._arm(what)
                k = self.sock.recv_into(mv[got:], min(n - got, 1 << 24))
            except TimeoutError as e:
                raise PeerTimeout(self._timed_out(what)) from e
            except OSError as e:
                raise PeerError(f"peer connection lost while receiving {what}: {e}") from e
            if k == 0:
                raise PeerError(f"peer closed the connection ({what}: got {got} of {n} bytes)")
            got += k

    def _recv_header(self) -> tuple[int, int]:
        if self._closed:
            raise PeerError("channel is closed")
        self.flush()
        self._sent_since_recv = False
        self._recv_into(memoryview(self._hdr), "frame header")
        n, kind = FRAME_HEADER.unpack(self._hdr)
        if n > MAX_FRAME:
            raise PeerError(f"peer sent a frame of {n} bytes: a malformed frame header")
        return n, kind

    def recv_bytes(self, max_len: int = CONTROL_FRAME_MAX) -> bytes:
        """Receive one frame as bytes (any kind); PeerError if it is longer than ``max_len``.

        The bound is checked on the header, before anything is allocated: callers pass what the
        program expects at that point (DESIGN.md §5), never more than a control frame by default.
        """
        n, _ = self._recv_header()
        if n > max_len:
            raise PeerError(f"peer sent a frame of {n} bytes where at most {max_len} are expected")
        buf = bytearray(n)
        self._recv_into(memoryview(buf), "frame payload")
        self._count(recv=n + FRAME_HEADER.size)
        return bytes(buf)

    def recv_array(self, dtype: Any, shape: int | tuple[int, ...]) -> np.ndarray:
        """Receive one frame into a new array; PeerError unless it has exactly that size/dtype."""
        dt = np.dtype(dtype)
        out = np.empty(shape, dtype=dt)
        n, kind = self._recv_header()
        if kind != _KIND_BYTES and not _kind_is(kind, dt):
            self._discard(n)
            raise PeerError(
                f"peer sent a frame of kind {_kind_name(kind)}, expected {dt.name} of shape "
                f"{out.shape}"
            )
        if n != out.nbytes:
            self._discard(n)
            raise PeerError(
                f"peer sent a frame of {n} bytes, expected {out.nbytes} "
                f"({dt.name} of shape {out.shape})"
            )
        if n:
            self._recv_into(memoryview(out.reshape(-1).view(np.uint8)), "array payload")
        self._count(recv=n + FRAME_HEADER.size)
        return out

    def _discard(self, n: int) -> None:
        """Skip a small bad frame's payload (best effort) so the error names the frame, not the
        stream; a large one is not waited for (the session ends with the error anyway)."""
        if n > _DISCARD_MAX:
            return
        with contextlib.suppress(PeerError):
            buf = bytearray(min(n, 1 << 20))
            left = n
            while left:
                k = min(left, len(buf))
                self._recv_into(memoryview(buf)[:k], "discarded payload")
                left -= k

    def close(self) -> None:
        """Flush what is buffered (best effort) and close the socket; idempotent."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.flush()
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self) -> None:
        """Close without flushing (used to unblock a peer after an error)."""
        self._buf = bytearray()
        self.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cancelled(PeerError):
    """The session was ended on purpose from another thread (:class:`Cancel`), e.g. Ctrl-C in
    ``twofold eval``: not a fault of the peer and not a result."""


class Cancel:
    """Ends one session promptly from another thread: :meth:`cancel` shuts down (both ways)
    every connection the session watches (:meth:`watch`), so its thread, blocked in a receive or
    send, gets a :class:`PeerError` at once and closes its channel as after any lost peer
    (the peer sees the connection end, not a hang).

    Invariant: ``cancel`` only ever touches this object's own duplicates of the watched
    sockets (closed by :meth:`release`), never a descriptor the session closed and the system
    may have reused; once cancelled, ``watch`` refuses (:class:`Cancelled`), so a session
    that connects after the stop does not run. Thread-safe; one-shot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.cancelled = False

    def watch(self, sock: Any) -> None:  # noqa: ANN401 - a socket or a TLSStream over one
        """Called by the session's thread with each connection it opens."""
        raw = getattr(sock, "raw", sock)
        with self._lock:
            if self.cancelled:
                raise Cancelled("the session was cancelled")
            self._socks.append(raw.dup())

    def cancel(self) -> None:
        """End the session: every watched connection is shut down; later ``watch`` refuses."""
        with self._lock:
            self.cancelled = True
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """The session is over: close the duplicates (called by the session's thread)."""
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()
            self._socks.clear()


_TCP_INFO_BYTES = struct.Struct("<QQ")  # tcpi_bytes_acked, tcpi_bytes_received (Linux >= 4.1)
_TCP_INFO_OFFSET = 120


def tcp_wire_bytes(sock: socket.socket) -> tuple[int, int] | None:
    """TCP payload bytes (sent and acknowledged, received) on this connection, as the kernel
    counts them, i.e. including TLS records; None where TCP_INFO does not report them."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCP_INFO_OFFSET + _TCP_INFO_BYTES.size:
        return None
    sent, recv = _TCP_INFO_BYTES.unpack_from(info, _TCP_INFO_OFFSET)
    return sent, recv


def socketpair_channels(timeout: float = 30.0) -> tuple[Channel, Channel]:
    """Two connected channels over a real OS socketpair (for tests and in-process runs)."""
    a, b = socket.socketpair()
    return Channel(a, timeout), Channel(b, timeout)


def connect_tcp(host: str, port: int, connect_timeout: float = 10.0) -> socket.socket:
    """A TCP connection to host:port, retrying refused connections for ``connect_timeout`` s."""
    deadline = time.monotonic() + connect_timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=connect_timeout)
        except (ConnectionRefusedError, FileNotFoundError) as e:
            if time.monotonic() >= deadline:
                raise PeerError(f"cannot connect to {host}:{port}: {e}") from e
            time.sleep(0.05)
        except OSError as e:
            raise PeerError(f"cannot connect to {host}:{port}: {e}") from e


def connect(
    host: str,
    port: int,
    timeout: float = 30.0,
    tls_ca: str | None = None,
    connect_timeout: float = 10.0,
) -> Channel:
    """Connect to a listening peer (tests, benchmarks; the 2PC client uses :mod:`.gate`).

    With ``tls_ca`` the connection is TLS and the server's certificate must chain to that CA file
    and match ``host``.
    """
    sock = connect_tcp(host, port, connect_timeout)
    if tls_ca is not None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls_ca)
        try:
            sock = ctx.wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as e:
            sock.close()
            raise PeerError(f"TLS handshake with {host}:{port} failed: {e}") from e
    return Channel(sock, timeout)


class Listener:
    """A listening TCP socket whose ``accept()`` returns a :class:`Channel`."""

    def __init__(
        self,
        host: str,
        port: int,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self.sock.getsockname()[:2]
        self._ctx: ssl.SSLContext | None = None
        if tls_cert is not None:
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ctx.load_cert_chain(tls_cert, tls_key)

    def accept(self, accept_timeout: float | None = None) -> Channel:
        """Wait for one peer (``accept_timeout`` seconds, None = forever) and return its channel."""
        self.sock.settimeout(accept_timeout)
        try:
            conn, _ = self.sock.accept()
        except TimeoutError as e:
            raise PeerError(f"no peer connected within {accept_timeout} s") from e
        if self._ctx is not None:
            conn.settimeout(self.timeout)
            try:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as e:
                conn.close()
                raise PeerError(f"TLS handshake with the client failed: {e}") from e
        return Channel(conn, self.timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(
    host: str,
    port: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    timeout: float = 30.0,
) -> Listener:
    """Listen on host:port (port 0: any free port, see ``.port``); TLS if cert/key are given."""
    return Listener(host, port, tls_cert, tls_key, timeout)


def run_pair(
    server_fn: Callable[[Any], Any],
    client_fn: Callable[[Any], Any],
    timeout: float = 60.0,
    make: Callable[[str, Channel], Any] | None = None,
    chan_timeout: float | None = None,
) -> tuple[Any, Any]:
    """Run ``server_fn`` and ``client_fn`` in two threads over a socketpair; return both results.

    Each function gets its Channel, or ``make(role, channel)`` when given (e.g. a session Party).
    If either side raises, its socket is closed so the other side fails fast instead of
    hanging, and the original exception is re-raised here; past ``timeout`` both sockets are
    closed and :class:`PeerError` is raised.
    """
    cs, cc = socketpair_channels(timeout if chan_timeout is None else chan_timeout)
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def body(role: str, fn: Callable[[Any], Any], chan: Channel) -> None:
        try:
            arg = make(role, chan) if make is not None else chan
            results[role] = fn(arg)
            chan.flush()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors[role] = e
            chan.abort()

    threads = [
        threading.Thread(target=body, args=("server", server_fn, cs), daemon=True),
        threading.Thread(target=body, args=("client", client_fn, cc), daemon=True),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = any(t.is_alive() for t in threads)
    if hung:
        cs.abort()
        cc.abort()
        for t in threads:
            t.join(5.0)
    cs.close()
    cc.close()
    if errors:
        # Prefer the root cause over the PeerError it provoked on the other side.
        primary = [e for e in errors.values() if not isinstance(e, PeerError)]
        raise (primary or list(errors.values()))[0]
    if hung:
        raise PeerError(f"run_pair: parties did not finish within {timeout} s")
    return results["server"], results["client"]


__all__ = [
    "Cancel",
    "Cancelled",
    "Channel",
    "Listener",
    "PeerError",
    "RuntimeProtocolError",
    "SectionStats",
    "connect",
    "connect_tcp",
    "listen",
    "run_pair",
    "socketpair_channels",
    "tcp_wire_bytes",
]
