"""Multiplexer: shares of b·x for a boolean-shared bit b and an additively shared x
(CrypTFlow2 §3.2, the ReLU select; two correlated OTs, one in each direction).

(b0 ^ b1)·x0 = b0·x0 + b1·(1 - 2·b0)·x0: the server sends a COT with correlation
(1 - 2·b0)·x0 on the client's choice b1 and keeps b0·x0 - s; symmetrically for x1.
Cost: two COTs with ell-bit messages.
"""

from __future__ import annotations

import numpy as np

from ._ot import cot
from ._util import as_bits, as_ring, wrap


def mux(party, bits: np.ndarray, x: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Additive shares mod 2^ell of b·x (elementwise; ``bits`` and ``x`` of one shape)."""
    b = as_bits(bits, "mux select bits")
    x = as_ring(x, ell, "mux input")
    if b.shape != x.shape:
        raise ValueError(f"mux bits shape {b.shape} != value shape {x.shape}")
    shape = x.shape
    b = b.reshape(-1)
    x = x.reshape(-1)
    bb = b.astype(np.uint64)
    corr = wrap((np.uint64(1) - np.uint64(2) * bb) * x, ell)
    own = bb * x
    out = np.zeros_like(x)
    for sender in ("server", "client"):
        if sender == party.role:
            s = cot(party, sender, corr, ell)
            out += own - s
        else:
            out += cot(party, sender, b, ell)
    return wrap(out, ell).reshape(shape)
