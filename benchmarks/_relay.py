"""A rate-limiting, delaying TCP relay on loopback: a stand-in for a WAN link (no tc/netem here).

``Relay(upstream_port, rate_bps, one_way_s)`` listens on 127.0.0.1 and forwards one connection
to 127.0.0.1:upstream_port. Each direction models a link of ``rate_bps`` bits per second with a
fixed propagation delay: a chunk read at time a starts transmission at s = max(a, link free),
occupies the link for len·8/rate seconds (a token bucket with no burst), and is delivered
``one_way_s`` after its transmission ends. A reader thread stamps the chunks and a writer
thread delivers them at their times, so throughput and latency hold together (a round trip of
small messages costs 2·one_way_s, a bulk transfer runs at the rate).

Bounded: at most ``max_seconds`` of life and ``max_bytes`` forwarded in total (then both
connections are closed, the peers see a closed socket); a queue of at most ``max_queue`` bytes
per direction (the reader blocks beyond, which back-pressures the sender as a full link
buffer would). It stops by itself when both directions have closed.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time

CHUNK = 1 << 16


class Relay:
    """One-connection loopback relay; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        upstream_port: int,
        rate_bps: float,
        one_way_s: float,
        *,
        max_seconds: float = 1800.0,
        max_bytes: int = 64 << 30,
        max_queue: int = 64 << 20,
    ) -> None:
        if rate_bps <= 0 or one_way_s < 0:
            raise ValueError("relay: the rate must be positive and the delay non-negative")
        self.upstream_port = upstream_port
        self.rate = float(rate_bps)
        self.delay = float(one_way_s)
        self.max_seconds = max_seconds
        self.max_bytes = max_bytes
        self.max_queue = max_queue
        self.forwarded = {"up": 0, "down": 0}  # up: client -> server
        self.stopped_by: str | None = None
        self._lst = socket.create_server(("127.0.0.1", 0))
        self._lst.settimeout(max_seconds)
        self.port = self._lst.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._main = threading.Thread(target=self._serve, name="relay", daemon=True)
        self._main.start()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, why: str | None = None) -> None:
        """Stop forwarding and close every socket (idempotent)."""
        with self._lock:
            if self.stopped_by is None and why is not None:
                self.stopped_by = why
        self._stop.set()
        for s in [self._lst, *self._socks]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def join(self, timeout: float | None = None) -> None:
        self._main.join(timeout)
        for t in self._threads:
            t.join(timeout)

    # -- forwarding -----------------------------------------------------------------------
    def _serve(self) -> None:
        deadline = threading.Timer(self.max_seconds, self.close, args=("time limit",))
        deadline.daemon = True
        deadline.start()
        try:
            try:
                down, _ = self._lst.accept()
            except OSError:
                return
            self._lst.close()
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            self._socks = [down, up]
            done = [threading.Event(), threading.Event()]
            for i, (src, dst, key) in enumerate([(down, up, "up"), (up, down, "down")]):
                q: collections.deque = collections.deque()
                cv = threading.Condition()
                state = {"queued": 0, "eof": False}
                for fn in (self._reader, self._writer):
                    t = threading.Thread(
                        target=fn, args=(src, dst, key, q, cv, state, done[i]), daemon=True
                    )
                    t.start()
                    self._threads.append(t)
            for ev in done:
                while not ev.wait(0.1) and not self._stop.is_set():
                    pass
        finally:
            deadline.cancel()
            self.close()

    def _reader(self, src, dst, key, q, cv, state, done) -> None:  # noqa: ANN001
        """Read chunks as they arrive; stamp each with its delivery time on the modelled link."""
        link_free = 0.0
        try:
            while not self._stop.is_set():
                with cv:
                    while state["queued"] >= self.max_queue and not self._stop.is_set():
                        cv.wait(0.1)
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    data = b""
                if not data:
                    break
                with self._lock:
                    total = self.forwarded["up"] + self.forwarded["down"] + len(data)
                    self.forwarded[key] += len(data)
                if total > self.max_bytes:
                    self.close("traffic limit")
                    break
                now = time.perf_counter()
                start = max(now, link_free)
                link_free = start + len(data) * 8 / self.rate
                with cv:
                    q.append((link_free + self.delay, data))
                    state["queued"] += len(data)
                    cv.notify_all()
        finally:
            with cv:
                state["eof"] = True
                cv.notify_all()

    def _writer(self, src, dst, key, q, cv, state, done) -> None:  # noqa: ANN001
        """Deliver each chunk at its time, in order; half-close dst after the last one."""
        try:
            while not self._stop.is_set():
                with cv:
                    while not q and not state["eof"] and not self._stop.is_set():
                        cv.wait(0.1)
                    if not q:
                        break
                    at, data = q.popleft()
                    state["queued"] -= len(data)
                    cv.notify_all()
                wait = at - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        finally:
            done.set()


__all__ = ["Relay"]
