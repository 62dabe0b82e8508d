"""Errors raised by the 2PC runtime (DESIGN.md §6: a bad peer gives a clear error, never a hang)."""

from __future__ import annotations


class RuntimeProtocolError(Exception):
    """Base class of every error the runtime raises about the protocol or the peer."""


class PeerError(RuntimeProtocolError):
    """The peer closed, sent a malformed/truncated/wrong frame, or stalled past the timeout."""


class PeerTimeout(PeerError):
    """Our own per-read timeout or whole-exchange deadline ran out (the peer said nothing wrong,
    it was too slow): callers tell it from a closed or malformed connection by its type."""


class ProgramMismatchError(RuntimeProtocolError):
    """The handshake found a different program hash or protocol version on the two sides."""
