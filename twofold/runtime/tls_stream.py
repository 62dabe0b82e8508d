"""TLS over a TCP socket through OpenSSL memory BIOs, for the channel's large frames.

``ssl.SSLSocket`` reads one TLS record (<= 16 KiB) per ``SSL_read``, and each is one or two
``recv`` system calls, often a sleep and a wake-up: on a loaded machine that cost ~0.1 ms per
record, i.e. ~100 s for the ~1 M records of a DenseNet-121 224^2 session (benchmarks/tls.py).
Here the socket is read in chunks of up to 4 MiB into the incoming BIO and the records are
decrypted from memory; writes are encrypted 1 MiB at a time and sent with one ``sendall``.
The object offers what :class:`~twofold.runtime.net.Channel` uses of a socket (``recv_into``,
``recv``, ``sendall``, ``settimeout``, ``setsockopt``, ``getsockopt``, ``shutdown``, ``close``) plus
``getpeercert`` for the pinned fingerprint.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from typing import Any

from .errors import PeerTimeout

_READ = 1 << 22
_WRITE = 1 << 20
HEAD_MAX = 4105  # bytes of the peer's first flight kept in ``head`` (a 4 KiB twofold frame)


class TLSStream:
    """One TLS connection over ``raw`` (a connected TCP socket), server or client side."""

    def __init__(
        self,
        raw: socket.socket,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.raw = raw
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._buf = bytearray(_READ)
        self._timeout: float | None = raw.gettimeout()
        #: The first bytes the peer sent, as they came (at most HEAD_MAX): what a failed
        #: handshake was answered with, e.g. a plaintext twofold frame (gate.client_channel).
        self.head = bytearray()

    # -- handshake --------------------------------------------------------------------------
    def handshake(self, deadline: float, what: str) -> None:
        """Run the TLS handshake; the monotonic ``deadline`` bounds all of it (PeerTimeout)."""
        while True:
            try:
                self.obj.do_handshake()
                self._flush(deadline)
                return
            except ssl.SSLWantReadError:
                self._flush(deadline)
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.raw], [], [], left)[0]:
                    raise PeerTimeout(f"{what}: deadline passed") from None
                self._fill()

    def _fill(self, until: float | None = None) -> None:
        """Move what the socket has (blocking per its timeout, at most until the monotonic time
        ``until``) into the incoming BIO."""
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            self.raw.settimeout(left)
        k = self.raw.recv_into(self._buf)
        if k == 0:
            self._in.write_eof()
        else:
            self._in.write(memoryview(self._buf)[:k])
            if len(self.head) < HEAD_MAX:
                self.head += memoryview(self._buf)[: min(k, HEAD_MAX - len(self.head))]

    def _flush(self, deadline: float | None = None) -> None:
        data = self._out.read()
        if data:
            if deadline is not None:
                self.raw.settimeout(max(deadline - time.monotonic(), 0.001))
            self.raw.sendall(data)

    # -- the socket interface the channel uses -----------------------------------------------
    def recv_into(self, buf: memoryview, nbytes: int = 0) -> int:
        """Up to ``nbytes`` decrypted bytes into ``buf``; 0 when the peer closed.

        The timeout bounds the whole call, as for a plain socket's ``recv_into``: a peer that
        trickles a TLS record one byte per period cannot keep it waiting past the timeout the
        channel armed (its handshake or session deadline) by never completing the record.
        """
        n = nbytes or len(buf)
        until = None if self._timeout is None else time.monotonic() + self._timeout
        filled = False
        try:
            while True:
                try:
                    return self.obj.read(n, buf)
                except ssl.SSLWantReadError:
                    self._flush()  # e.g. a key update the peer asked for
                    self._fill(until)
                    filled = True
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return 0
        finally:
            if filled and until is not None:
                self.raw.settimeout(self._timeout)

    def recv(self, n: int) -> bytes:
        buf = bytearray(n)
        k = self.recv_into(memoryview(buf), n)
        return bytes(buf[:k])

    def sendall(self, data: memoryview | bytes) -> None:
        """Encrypt and send all of ``data``; the timeout bounds the whole call (as for a plain
        socket), so a peer draining slowly cannot stretch it chunk after chunk."""
        mv = memoryview(data).cast("B")
        until = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            for off in range(0, mv.nbytes, _WRITE):
                self.obj.write(mv[off : off + _WRITE])
                self._flush(until)
        finally:
            self.raw.settimeout(self._timeout)

    def getpeercert(self, binary_form: bool = False) -> Any:  # noqa: ANN401
        return self.obj.getpeercert(binary_form)

    def settimeout(self, t: float | None) -> None:
        self._timeout = t
        self.raw.settimeout(t)

    def setsockopt(self, *args: Any) -> None:  # noqa: ANN401
        self.raw.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:  # noqa: ANN401
        return self.raw.getsockopt(*args)

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()


__all__ = ["TLSStream"]
