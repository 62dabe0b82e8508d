"""Secret sharing: additive shares over Z_{2^ell} and XOR shares of bits (DESIGN.md §5).

x = s0 + s1 mod 2^ell with s0 uniform; bits b = b0 ^ b1, sent packed 8 per byte. ``reveal*``
helpers open a shared value to one party or both over ``party.chan`` (any object with ``.chan``
and ``.role``, e.g. :class:`twofold.runtime.session.Party`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .prg import PRG
from .ring import mask, wrap

ROLES = ("server", "client")


def share(x: np.ndarray, ell: int, prg: PRG) -> tuple[np.ndarray, np.ndarray]:
    """Additive shares (s0, s1) of x mod 2^ell; s0 is uniform from ``prg``."""
    xw = wrap(x, ell)
    s0 = prg.ring(np.shape(xw), ell)
    return s0, (xw - s0) & mask(ell)


def reconstruct(s0: np.ndarray, s1: np.ndarray, ell: int) -> np.ndarray:
    """s0 + s1 mod 2^ell."""
    return (np.asarray(s0, np.uint64) + np.asarray(s1, np.uint64)) & mask(ell)


def share_bits(b: np.ndarray, prg: PRG) -> tuple[np.ndarray, np.ndarray]:
    """XOR shares of a 0/1 uint8 array."""
    b = np.asarray(b, np.uint8) & 1
    b0 = prg.bits(b.size).reshape(b.shape)
    return b0, b0 ^ b


def pack_bits(b: np.ndarray) -> np.ndarray:
    """0/1 array -> bytes, 8 bits per byte (little bit order), for the wire."""
    return np.packbits(np.asarray(b, np.uint8).reshape(-1), bitorder="little")


def unpack_bits(p: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for n bits."""
    return np.unpackbits(p, count=n, bitorder="little")


def _check_to(to: str) -> None:
    if to not in (*ROLES, "both"):
        raise ValueError(f"reveal target must be 'server', 'client' or 'both', got {to!r}")


def reveal(party: Any, s: np.ndarray, ell: int, to: str = "both") -> np.ndarray | None:
    """Open the additively shared ``s`` to ``to``; returns the value there, None elsewhere."""
    _check_to(to)
    s = wrap(s, ell)
    me = party.role
    other = "client" if me == "server" else "server"
    if to in (other, "both"):
        party.chan.send(s)
    if to in (me, "both"):
        theirs = party.chan.recv_array(np.uint64, s.shape)
        return reconstruct(s, theirs, ell)
    return None


def reveal_bits(party: Any, b: np.ndarray, to: str = "both") -> np.ndarray | None:
    """Open the XOR-shared bits ``b`` (0/1 uint8) to ``to``; returns them there, None elsewhere."""
    _check_to(to)
    b = np.asarray(b, np.uint8) & 1
    me = party.role
    other = "client" if me == "server" else "server"
    if to in (other, "both"):
        party.chan.send(pack_bits(b))
    if to in (me, "both"):
        theirs = party.chan.recv_array(np.uint8, ((b.size + 7) // 8,))
        return (unpack_bits(theirs, b.size).reshape(b.shape) ^ b).astype(np.uint8)
    return None
