"""Errors raised by the 2PC runtime (DESIGN.md §6: a bad peer gives a clear error, never a hang)."""

from __future__ import annotations


class RuntimeProtocolError(Exception):
    """Base class of every error the runtime raises about the protocol or the peer."""


class PeerError(RuntimeProtocolError):
    """The peer closed, sent a malformed/truncated/wrong frame, or stalled past the timeout."""


class PeerTimeout(PeerError):
    """Our own per-read timeout or whole-exchange deadline ran out (the peer said nothing wrong,
    it was too slow): callers tell it from a closed or malformed connection by its type."""


class ServerBusy(PeerError, ConnectionError):
    """The server turned the session away for lack of room (its slots taken, its queue full,
    or it is stopping): a connection-level failure, worth another try later or elsewhere,
    hence also a :class:`ConnectionError` (what ``eval``'s retries count as transient)."""


class ProgramMismatchError(RuntimeProtocolError):
    """The handshake found a different program hash or protocol version on the two sides."""


#: How much of a peer-supplied value an error message or log line shows.
PEER_TEXT_MAX = 60


def peer_repr(value: object, limit: int = PEER_TEXT_MAX) -> str:
    """``value`` (from the peer) as an error message shows it, never much more than ``limit``
    characters: a string or bytes value is cut there with its full length appended
    (``'AAAA'…(4000000 chars)``), a list or object is named by its size, not printed, and any
    other value's repr is cut the same way (JSON numbers are short anyway: Python refuses to
    parse an integer of more than 4300 digits).

    Invariant: the result is a few times ``limit`` characters at most (escapes included)
    whatever the peer sent, and a string is never rendered whole, so a stranger cannot write
    megabytes into the server's log through a handshake field.
    """
    if isinstance(value, str | bytes | bytearray):
        if len(value) <= limit:
            return repr(value)
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}…({len(value)} {unit})"
    if isinstance(value, list | tuple | dict):
        n = len(value)
        return f"<{type(value).__name__} of {n} item{'' if n == 1 else 's'}>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"
