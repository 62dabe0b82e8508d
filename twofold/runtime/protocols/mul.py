"""Product of two shared tensors mod 2^ell by correlated OT (the cross terms of
x·y = x0·y0 + x1·y1 + x0·y1 + x1·y0; CrypTFlow2 §2.2 / SIRNN §3's COT-based multiplication).

For the cross term x0·y1 (server holds x0, client y1): for every bit j of y1 one COT with the
server as sender and correlation x0·2^j; the client, choosing y1_j, receives t_j + y1_j·x0·2^j
and the server keeps t_j, so Σ (t_j + y1_j·x0·2^j) − Σ t_j = x0·y1. The term x1·y0 is the same
with the roles swapped. The local terms x0·y0, x1·y1 need nothing. Cost per element: 2·ell
COTs of ell bits each way (no dealer, no HE); exact mod 2^ell.
"""

from __future__ import annotations

import numpy as np

from ._ot import cot
from ._util import CHUNK, as_ring, wrap


def _cross(party, mine: np.ndarray, ell: int, sender: str) -> np.ndarray:  # noqa: ANN001
    """Shares of x_s·y_r where the ``sender`` holds x_s (``mine`` there) and the other party
    y_r (``mine`` there)."""
    n = mine.size
    j = np.arange(ell, dtype=np.uint64)
    if party.role == sender:
        corr = wrap((mine[:, None] << j[None, :]).reshape(-1), ell)
        t = cot(party, sender, corr, ell).reshape(n, ell)
        return wrap(np.uint64(0) - t.sum(axis=1, dtype=np.uint64), ell)
    bits = ((mine[:, None] >> j[None, :]) & np.uint64(1)).astype(np.uint8).reshape(-1)
    got = cot(party, sender, bits, ell).reshape(n, ell)
    return wrap(got.sum(axis=1, dtype=np.uint64), ell)


def mul(party, x: np.ndarray, y: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Additive shares of x·y mod 2^ell (shapes broadcast)."""
    shape = np.broadcast_shapes(np.shape(x), np.shape(y))
    xs = np.ascontiguousarray(np.broadcast_to(as_ring(x, ell, "mul operand"), shape)).reshape(-1)
    ys = np.ascontiguousarray(np.broadcast_to(as_ring(y, ell, "mul operand"), shape)).reshape(-1)
    out = np.empty(xs.size, np.uint64)
    step = max(1, CHUNK // ell)
    for lo in range(0, xs.size, step):
        a, b = xs[lo : lo + step], ys[lo : lo + step]
        # x0·y1: the server sends (holds x0); x1·y0: the client sends (holds x1)
        c1 = _cross(party, a if party.is_server else b, ell, "server")
        c2 = _cross(party, b if party.is_server else a, ell, "client")
        out[lo : lo + step] = wrap(a * b + c1 + c2, ell)
    return out.reshape(shape)
