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

from .errors import PeerError

_READ = 1 << 22
_WRITE = 1 << 20


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

    # -- handshake --------------------------------------------------------------------------
    def handshake(self, deadline: float, what: str) -> None:
        """Run the TLS handshake; the monotonic ``deadline`` bounds all of it (PeerError)."""
        while True:
            try:
                self.obj.do_handshake()
                self._flush(deadline)
                return
            except ssl.SSLWantReadError:
                self._flush(deadline)
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.raw], [], [], left)[0]:
                    raise PeerError(f"{what}: deadline passed") from None
                self._fill()

    def _fill(self) -> None:
        """Move what the socket has (blocking per its timeout) into the incoming BIO."""
        k = self.raw.recv_into(self._buf)
        if k == 0:
            self._in.write_eof()
        else:
            self._in.write(memoryview(self._buf)[:k])

    def _flush(self, deadline: float | None = None) -> None:
        data = self._out.read()
        if data:
            if deadline is not None:
                self.raw.settimeout(max(deadline - time.monotonic(), 0.001))
            self.raw.sendall(data)

    # -- the socket interface the channel uses -----------------------------------------------
    def recv_into(self, buf: memoryview, nbytes: int = 0) -> int:
        """Up to ``nbytes`` decrypted bytes into ``buf``; 0 when the peer closed."""
        n = nbytes or len(buf)
        while True:
            try:
                return self.obj.read(n, buf)
            except ssl.SSLWantReadError:
                self._flush()  # e.g. a key update the peer asked for
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0

    def recv(self, n: int) -> bytes:
        buf = bytearray(n)
        k = self.recv_into(memoryview(buf), n)
        return bytes(buf[:k])

    def sendall(self, data: memoryview | bytes) -> None:
        mv = memoryview(data).cast("B")
        for off in range(0, mv.nbytes, _WRITE):
            self.obj.write(mv[off : off + _WRITE])
            self._flush()

    def getpeercert(self, binary_form: bool = False) -> Any:  # noqa: ANN401
        return self.obj.getpeercert(binary_form)

    def settimeout(self, t: float | None) -> None:
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
