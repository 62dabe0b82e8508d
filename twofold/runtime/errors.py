"""Errors raised by the 2PC runtime (DESIGN.md §6: a bad peer gives a clear error, never a hang)."""

from __future__ import annotations


class RuntimeProtocolError(Exception):
    """Base class of every error the runtime raises about the protocol or the peer."""


class PeerError(RuntimeProtocolError):
    """The peer closed, sent a malformed/truncated/wrong frame, or stalled past the timeout."""


class ProgramMismatchError(RuntimeProtocolError):
    """The handshake found a different program hash or protocol version on the two sides."""
