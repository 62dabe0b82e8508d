"""B2A: a boolean-shared bit to an additive share mod 2^ell by one correlated OT
(CrypTFlow2 §3.2 / SCI aux-protocols).

b = b0 ^ b1 = b0 + b1 - 2·b0·b1.  COT with the server as sender, correlation b0, client
choice b1: the server gets x, the client x + b0·b1.  Shares: server b0 + 2x, client b1 - 2y.
Cost: one COT with ell-bit messages.
"""

from __future__ import annotations

import numpy as np

from ._ot import cot
from ._util import as_bits, wrap


def b2a(party, bits: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Additive shares mod 2^ell (uint64, shape of ``bits``) of the boolean-shared bits."""
    b = as_bits(bits)
    shape = b.shape
    b = b.reshape(-1)
    bb = b.astype(np.uint64)
    if party.is_server:
        x = cot(party, "server", bb, ell)
        out = bb + np.uint64(2) * x
    else:
        y = cot(party, "server", b, ell)
        out = bb - np.uint64(2) * y
    return wrap(out, ell).reshape(shape)
