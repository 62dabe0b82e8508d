"""Vendor endpoints of a 2PC evaluation: parsing, health, rotation, failure classification.

A run may talk to several ``twofold run server`` processes (one vendor serving several
hospitals, or several machines of one vendor). The driver owns one :class:`EndpointPool`
and is its only user (single thread), so the pool needs no locks. Invariants:

* at most ``per_endpoint`` sessions are in flight on an endpoint at once (the server's
  ``--max-sessions`` bound, so sessions do not queue behind each other on its side);
* an endpoint whose session failed for a *transient* cause (see :func:`is_transient`) is out
  of the rotation for ``base_backoff · 2^(failures-1)`` seconds (capped), then gets one probe
  session at a time until a session succeeds;
* :meth:`EndpointPool.acquire` raises :class:`NoEndpointError` only when every endpoint has
  failed ``max_failures`` times in a row: the run fails fast when none answers, never while
  one still does.

Transient = the connection, not the image or the program: refused, reset, aborted, broken
pipe, a timeout, the peer closing mid-session (its process died). Deterministic = everything
else (overflow, unreadable or out-of-range image, program-hash mismatch, malformed frame);
retrying those would give the same failure, so they are never retried.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TRANSIENT_ERRNO = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
}
_TRANSIENT_TYPES = (ConnectionError, TimeoutError)  # refused, reset, aborted, broken pipe
# The runtime's words for "the peer's process went away" (PeerError carries no cause then).
_TRANSIENT_WORDS = ("peer closed the connection", "connection lost", "timed out", "cannot connect")


class EndpointError(ValueError):
    """A ``--connect`` list that cannot be used (syntax, empty file, duplicates)."""


class NoEndpointError(RuntimeError):
    """Every endpoint failed ``max_failures`` times in a row: no vendor answers."""


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a connection-level failure.

    Walks ``__cause__``/``__context__``; a deterministic runtime error (program mismatch,
    malformed frame, bad input, overflow) is never transient, whatever it wraps.
    """
    from ..runtime.errors import PeerError, ProgramMismatchError

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (ProgramMismatchError, ArithmeticError)):
            return False
        if isinstance(e, _TRANSIENT_TYPES):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
            return True
        if (
            isinstance(e, PeerError)
            and e.__cause__ is None
            and any(w in str(e) for w in _TRANSIENT_WORDS)
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


Spec = str | list[str] | tuple[str, ...] | None


def parse_endpoints(spec: Spec) -> list[str]:
    """``HOST:PORT`` entries from ``--connect`` values: comma-separated, repeated, or ``@FILE``.

    A file holds one ``HOST:PORT [sha256:FINGERPRINT]`` a line (blank lines and ``#`` comments
    ignored; the fingerprint pins that server's certificate, see :func:`endpoint_pins`).
    Returns the list in the given order; raises :class:`EndpointError` naming the bad entry.
    """
    out = [e for e, _ in _entries(spec)]
    dup = sorted({e for e in out if out.count(e) > 1})
    if dup:
        raise EndpointError(f"--connect lists {', '.join(dup)} more than once")
    return out


def endpoint_pins(spec: Spec) -> dict[str, str]:
    """Per-endpoint certificate fingerprints from ``@FILE`` lines (each server has its own
    self-signed certificate unless the vendor deploys one on all; DESIGN decision 3)."""
    return {e: pin for e, pin in _entries(spec) if pin}


def _entries(spec: Spec) -> list[tuple[str, str | None]]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str | None]] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if part.startswith("@"):
                out += _read_file(Path(part[1:]))
            elif part:
                out.append((_check(part, "--connect"), None))
    return out


def _read_file(path: Path) -> list[tuple[str, str | None]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EndpointError(f"--connect @{path}: cannot read the endpoint file ({e})") from None
    out: list[tuple[str, str | None]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}:{i}"
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].startswith("sha256:")):
            raise EndpointError(f"{where}: expected HOST:PORT [sha256:FINGERPRINT], got {line!r}")
        out.append((_check(fields[0], where), fields[1] if len(fields) == 2 else None))
    if not out:
        raise EndpointError(f"--connect @{path}: the file lists no HOST:PORT")
    return out


def _check(entry: str, where: str) -> str:
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"{where}: expected HOST:PORT, got {entry!r}")
    return entry


@dataclass
class _State:
    busy: int = 0
    failures: int = 0  # consecutive
    down_until: float = 0.0
    sessions: int = 0
    failed: int = 0
    last_error: str = ""
    busy_s: float = 0.0
    started: dict[int, float] = field(default_factory=dict)


class EndpointPool:
    """Spread sessions over endpoints; take failing ones out of the rotation for a while.

    ``acquire()`` returns an endpoint (and a ticket) or ``None`` when all usable slots are
    busy or backing off; ``release(ep, ticket, ok, error)`` reports how the session went.
    """

    def __init__(
        self,
        endpoints: list[str],
        per_endpoint: int = 2,
        *,
        max_failures: int = 3,
        base_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise EndpointError("no endpoint given (--connect HOST:PORT[,HOST:PORT...] or @FILE)")
        if per_endpoint < 1:
            raise EndpointError(f"--per-endpoint must be at least 1, got {per_endpoint}")
        self.endpoints = list(endpoints)
        self.per_endpoint = per_endpoint
        self.max_failures = max_failures
        self.base_backoff, self.max_backoff = base_backoff, max_backoff
        self.clock = clock
        self.state = {e: _State() for e in self.endpoints}
        self._ticket = 0

    @property
    def slots(self) -> int:
        """Sessions the pool allows at once when every endpoint is healthy."""
        return len(self.endpoints) * self.per_endpoint

    def _limit(self, s: _State) -> int:
        return 1 if s.failures else self.per_endpoint  # a recovering endpoint: one probe

    def acquire(self) -> tuple[str, int] | None:
        """A usable endpoint with a free slot (healthiest, least busy first), or ``None``."""
        if all(s.failures >= self.max_failures for s in self.state.values()):
            raise NoEndpointError(
                "no vendor endpoint answers: "
                + "; ".join(f"{e}: {s.last_error}" for e, s in self.state.items())
            )
        now = self.clock()
        free = [
            (s.failures, s.busy, s.sessions, i, e)
            for i, (e, s) in enumerate(self.state.items())
            if s.down_until <= now and s.busy < self._limit(s)
        ]
        if not free:
            return None
        e = min(free)[-1]
        s = self.state[e]
        s.busy += 1
        self._ticket += 1
        s.started[self._ticket] = now
        return e, self._ticket

    def release(self, endpoint: str, ticket: int, ok: bool, error: str = "") -> None:
        """Report a finished session; ``ok=False`` only for transient (endpoint) failures."""
        s = self.state[endpoint]
        now = self.clock()
        s.busy -= 1
        s.busy_s += now - s.started.pop(ticket, now)
        if ok:
            s.sessions += 1
            s.failures, s.down_until = 0, 0.0
            return
        s.failed += 1
        s.failures += 1
        s.last_error = error
        s.down_until = now + min(self.max_backoff, self.base_backoff * 2 ** (s.failures - 1))

    def release_unused(self, endpoint: str, ticket: int) -> None:
        """Give back a slot whose session never ran (the run was stopped)."""
        s = self.state[endpoint]
        s.busy -= 1
        s.started.pop(ticket, None)

    def wake_in(self) -> float:
        """Seconds until a backing-off endpoint may be tried again (``inf``: none is)."""
        now = self.clock()
        waits = [s.down_until - now for s in self.state.values() if s.down_until > now]
        return max(0.0, min(waits)) if waits else math.inf

    def down(self) -> list[str]:
        """Endpoints currently out of the rotation."""
        now = self.clock()
        return [e for e, s in self.state.items() if s.down_until > now]
