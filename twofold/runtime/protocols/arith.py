"""Local linear operations on additive shares (no communication): multiplication by a public
constant, addition of a public constant (by the server only), negation."""

from __future__ import annotations

import numpy as np

from ._util import as_ring, wrap


def _const(c, ell: int) -> np.ndarray:  # noqa: ANN001
    c = np.asarray(c)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"public constant must be an integer (fixed point), got dtype {c.dtype}")
    return wrap(c.astype(np.int64).astype(np.uint64), ell)


def mul_const(party, x: np.ndarray, c, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of c·x mod 2^ell for a public signed integer (array) c broadcastable to x."""
    del party
    return wrap(as_ring(x, ell) * _const(c, ell), ell)


def add_const(party, x: np.ndarray, c, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of x + c mod 2^ell; the server adds the public constant, the client nothing."""
    x = as_ring(x, ell)
    if not party.is_server:
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, np.shape(c))).copy()
    return wrap(x + _const(c, ell), ell)
