"""The ring Z_{2^ell}, 1 <= ell <= 64, on numpy uint64 with two's-complement meaning (DESIGN.md §5).

Invariant: every function returns residues already reduced mod 2^ell.
"""

from __future__ import annotations

import numpy as np

U64 = np.uint64


def _check(ell: int) -> int:
    if not isinstance(ell, int | np.integer) or not 1 <= int(ell) <= 64:
        raise ValueError(f"ring bit length ell must be an int in [1, 64], got {ell!r}")
    return int(ell)


def mask(ell: int) -> np.uint64:
    """2^ell - 1 as a numpy uint64."""
    ell = _check(ell)
    return U64((1 << ell) - 1)


def wrap(x: np.ndarray | int, ell: int) -> np.ndarray:
    """x mod 2^ell as uint64 (x may be any integer array; signed values wrap two's-complement)."""
    m = mask(ell)
    a = np.asarray(x)
    if a.dtype != np.uint64:
        a = a.astype(np.int64).view(np.uint64) if a.dtype.kind in "iub" else a.astype(np.uint64)
    return a & m


def to_signed(x: np.ndarray, ell: int) -> np.ndarray:
    """Residues mod 2^ell -> int64 in [-2^(ell-1), 2^(ell-1)) (sign-extend bit ell-1)."""
    ell = _check(ell)
    sh = U64(64 - ell)
    return (wrap(x, ell) << sh).view(np.int64) >> np.int64(64 - ell)


def from_signed(x: np.ndarray | int, ell: int) -> np.ndarray:
    """int64 (two's complement) -> uint64 residues mod 2^ell."""
    a = np.asarray(x, dtype=np.int64)
    return a.view(np.uint64) & mask(ell)


def add(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """(a + b) mod 2^ell."""
    return (np.asarray(a, np.uint64) + np.asarray(b, np.uint64)) & mask(ell)


def sub(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """(a - b) mod 2^ell."""
    return (np.asarray(a, np.uint64) - np.asarray(b, np.uint64)) & mask(ell)


def neg(a: np.ndarray, ell: int) -> np.ndarray:
    """-a mod 2^ell."""
    return (U64(0) - np.asarray(a, np.uint64)) & mask(ell)


def mul(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """(a * b) mod 2^ell (uint64 products wrap mod 2^64, which 2^ell divides)."""
    return (np.asarray(a, np.uint64) * np.asarray(b, np.uint64)) & mask(ell)
