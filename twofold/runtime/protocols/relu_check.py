"""ReLU (or ReLU fused with its truncation) together with its overflow check, one millionaire.

A checked ReLU (compiler/headroom.py) needs d = DReLU(x) for the ReLU and f = DReLU(x − L) =
1{x ≥ L} for the check, L the server's per-channel limit. With shares x = x0 + x1 mod 2^ell
(the server's share of x − L is x0 − L, the client's is x1) and a' = a mod 2^(ell−1), M =
2^(ell−1) − 1 (CrypTFlow2 §3.2, Algorithm 2):

    MSB(x)     = msb(x0)     ^ msb(x1) ^ 1{M − x0'       < x1'},
    MSB(x − L) = msb(x0 − L) ^ msb(x1) ^ 1{M − (x0 − L)' < x1'}.

Both comparisons have the client's x1' as the OT receiver's input and a server value as the
sender's: one run of :func:`~.twin.twin_millionaire` serves both. Where L is a multiple of
2^g (``grain`` g, a public attribute of the ReLU; the compiler rounds the limits up to it),
x0 − L ≡ x0 mod 2^g, and the low g bits of M − v are the complement of v's, so both server
values agree in their low g bits: those digits are compared once, and only the bits above g
pay a second leaf (payload only) and a second tree. For the fused ReLU-truncation (SiRNN §4.1,
``relu_trunc.py``) with shift s ≤ g, the carry of the low s bits comes from the same tree.

Exactness: f = 1{x ≥ L} exactly as long as x − L does not wrap, i.e. −2^(ell−1) ≤ x − L <
2^(ell−1); the compiler sizes ℓ so that |x| ≤ 2^(ell−2) and 0 < L ≤ 2^(ell−2) (bitwidth's
spare bit, the clamped limit), hence it holds for every x. No special case for x1' = 0 (the
comparison is then 0, as the carry) or for the MSBs (they enter by XOR, locally).
"""

from __future__ import annotations

import numpy as np

from ._util import as_ring, chunk_of, mask, wrap
from .mux import mux
from .relu_trunc import fusable, select
from .twin import twin_millionaire


def mergeable(ell: int, grain: int, shift: int | None = None) -> bool:
    """Whether :func:`checked_relu` applies: 0 ≤ grain < ell−1, and a fused shift ≤ grain."""
    if not 0 <= grain < ell - 1:
        return False
    return shift is None or (fusable(ell, shift) and shift <= grain)


def checked_relu(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    limit: np.ndarray | None,
    grain: int,
    shift: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive shares of relu(x) (``shift``: of relu(x) >> shift) and boolean shares (uint8,
    x's shape) of 1{signed(x) ≥ limit}. The server passes the signed integer ``limit``
    (broadcastable to x, every entry a multiple of 2^grain), the client None."""
    x = as_ring(x, ell, "checked relu input")
    if not mergeable(ell, grain, shift):
        raise ValueError(f"checked_relu: grain {grain}, shift {shift} do not fit ell={ell}")
    lim = None
    if party.is_server:
        lim = np.broadcast_to(np.asarray(limit, np.int64), x.shape)
        if grain and np.any(lim & ((1 << grain) - 1)):
            raise ValueError(f"checked_relu: a limit is not a multiple of 2^{grain}")
        lim = np.ascontiguousarray(lim).view(np.uint64).reshape(-1)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    flags = np.empty(flat.size, np.uint8)
    step = chunk_of(party)
    for lo in range(0, flat.size, step):
        sl = slice(lo, lo + step)
        out[sl], flags[sl] = _chunk(party, flat[sl], ell, None if lim is None else lim[sl],
                                    grain, shift)  # fmt: skip
    return out.reshape(x.shape), flags.reshape(x.shape)


def _chunk(party, x, ell: int, lim, grain: int, shift: int | None):  # noqa: ANN001, ANN202
    m = mask(ell - 1)
    top = np.uint64(ell - 1)
    t = (x >> top).astype(np.uint8)
    if party.is_server:
        xl = wrap(x - lim, ell)  # the server's share of x − L
        t2 = (xl >> top).astype(np.uint8)
        c, k, k2 = twin_millionaire(party, m - (x & m), ell - 1, grain, x2=m - (xl & m),
                                    split=shift)  # fmt: skip
    else:
        t2 = t  # the client's share of x − L is its share of x
        c, k, k2 = twin_millionaire(party, x & m, ell - 1, grain, split=shift)
    flags = t2 ^ k2  # MSB(x − L)
    if party.is_server:
        flags ^= 1  # DReLU(x − L) = 1{x ≥ L}
    if shift is not None:
        return select(party, x, ell, shift, c, k), flags
    d = t ^ k
    if party.is_server:
        d ^= 1
    return mux(party, d, x, ell), flags
