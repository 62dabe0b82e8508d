"""Helpers shared by the non-linear protocols: ring masks, bit exchange, per-party randomness.

Shares are ``uint64`` arrays mod 2^ell (additive) or ``uint8`` 0/1 arrays (boolean, XOR).
Both parties exchange masked values in a fixed order (server sends first) so that large
frames never deadlock two blocking sockets.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Elements processed per pass of the non-linear protocols (relu.py, relu_trunc.py,
#: millionaire.py): each pass costs the protocol's full rounds, so a tensor of n elements
#: takes ceil(n / CHUNK) times them; a pass holds ~1.3 KiB per element on the server (the
#: 1-of-16 OT tables). 2^18 keeps DenseNet-121 224^2 at <= 4 passes per layer for ~330 MiB
#: per party at the peak; a Party may set ``chunk`` (e.g. the former 2^16) for itself.
CHUNK = 1 << 18
SMALL_CHUNK = 1 << 16


def chunk_of(party) -> int:  # noqa: ANN001
    """Elements per pass for this party (``party.chunk``, else :data:`CHUNK`)."""
    return int(getattr(party, "chunk", CHUNK))


_PRGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def mask(ell: int) -> np.uint64:
    """The ring mask 2^ell - 1 as uint64 (1 <= ell <= 64)."""
    if not 1 <= ell <= 64:
        raise ValueError(f"ring bit length ell={ell} outside 1..64")
    return np.uint64((1 << ell) - 1)


def wrap(x: np.ndarray, ell: int) -> np.ndarray:
    """Reduce a uint64 array mod 2^ell (in place when possible)."""
    if ell == 64:
        return x
    return np.bitwise_and(x, mask(ell), out=x)


def as_ring(x: np.ndarray, ell: int, what: str = "share") -> np.ndarray:
    """Check that ``x`` is a uint64 array of residues mod 2^ell; returns it C-contiguous."""
    x = np.asarray(x)
    if x.dtype != np.uint64:
        raise TypeError(f"{what} must be a uint64 array of ring elements, got dtype {x.dtype}")
    if ell < 64 and x.size and int(x.max()) >> ell:
        raise ValueError(f"{what} has elements >= 2^{ell}; not reduced mod 2^{ell}")
    return np.asarray(x, order="C")  # keeps 0-d arrays 0-d


def as_bits(b: np.ndarray, what: str = "boolean share") -> np.ndarray:
    """Check that ``b`` holds 0/1 values; returns a C-contiguous uint8 array."""
    b = np.asarray(b)
    if b.dtype == np.bool_:
        return np.asarray(b, dtype=np.uint8, order="C")
    if not np.issubdtype(b.dtype, np.integer):
        raise TypeError(f"{what} must be an integer/bool array of 0/1, got dtype {b.dtype}")
    if b.size and int(b.max()) > 1:
        raise ValueError(f"{what} must hold only 0/1 bits")
    return np.asarray(b, dtype=np.uint8, order="C")


def prg(party):  # noqa: ANN001, ANN201 - Party from twofold.runtime.session
    """The party's private PRG (AES-128-CTR, seed from ``secrets``), created on first use."""
    g = getattr(party, "prg", None)
    if g is not None:
        return g
    g = _PRGS.get(party)
    if g is None:
        from ..prg import PRG

        g = PRG()
        _PRGS[party] = g
    return g


def exchange_bits(party, bits: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Send our bit array packed 8 per byte and return the peer's array of the same shape."""
    packed = np.packbits(bits.reshape(-1))
    chan = party.chan
    if party.is_server:
        chan.send(packed)
        other = chan.recv_array(np.uint8, packed.shape)
    else:
        other = chan.recv_array(np.uint8, packed.shape)
        chan.send(packed)
    return np.unpackbits(other, count=bits.size).reshape(bits.shape)
