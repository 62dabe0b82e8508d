"""ReLU = x · DReLU(x) (CrypTFlow2 §3.2): a millionaires' protocol on ell-1 bits for the MSB,
then the COT multiplexer.  Processed in passes of ``chunk_of(party)`` elements (_util.CHUNK) so
that a 2^22-element tensor stays within a few hundred MiB per party.

relu(x) = x if signed(x) > 0 else 0 (x = 0 gives 0 either way).
"""

from __future__ import annotations

import numpy as np

from ._util import as_ring, chunk_of
from .drelu import drelu
from .mux import mux


def relu(party, x: np.ndarray, ell: int, *, return_drelu: bool = False):  # noqa: ANN001, ANN201
    """Additive shares of relu(x); with ``return_drelu`` also the boolean shares of DReLU."""
    x = as_ring(x, ell, "relu input")
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    d_out = np.empty(flat.size, dtype=np.uint8)
    step = chunk_of(party)
    for lo in range(0, flat.size, step):
        xs = flat[lo : lo + step]
        d = drelu(party, xs, ell)
        out[lo : lo + step] = mux(party, d, xs, ell)
        d_out[lo : lo + step] = d
    if return_drelu:
        return out.reshape(x.shape), d_out.reshape(x.shape)
    return out.reshape(x.shape)
