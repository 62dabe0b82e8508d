"""Truncation by s bits, exactly the arithmetic shift floor(signed(x) / 2^s) (CrypTFlow2 §4,
SiRNN §4: faithful truncation, truncation with known MSB, truncate-and-reduce).

Write x_i = hi_i·2^s + lo_i for the shares.  Over the integers
x >> s = hi_0 + hi_1 + c - w·2^(ell-s), with the carry c = 1{lo_0 + lo_1 >= 2^s} and the wrap
w = 1{x_0 + x_1 >= 2^ell}.  Both are comparisons of (2^ell - 1 - x_0) with x_1: c on the low s
bits, w on all bits -- one millionaires' tree split at bit s gives both.
* faithful: the server first adds 2^(ell-1) (signed -> unsigned), computes c and w, B2A,
  and subtracts 2^(ell-1-s) afterwards.
* msb0 (caller guarantees signed(x) >= 0): w = msb(x_0) OR msb(x_1) (one COT), c by a
  millionaires' protocol on s bits only.
* reduce (output mod 2^out_ell, out_ell <= ell - s): w·2^(ell-s) vanishes mod 2^out_ell, so
  only c is needed.
"""

from __future__ import annotations

import numpy as np

from ._ot import cot
from ._util import as_ring, mask, wrap
from .b2a import b2a
from .millionaire import millionaire

KINDS = ("faithful", "msb0", "reduce")


def _carry(party, x: np.ndarray, s: int) -> np.ndarray:  # noqa: ANN001
    """Boolean shares of c = 1{lo_0 + lo_1 >= 2^s}."""
    lo = x & mask(s)
    return millionaire(party, mask(s) - lo if party.is_server else lo, s)


def trunc(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    shift: int,
    kind: str = "faithful",
    out_ell: int | None = None,
) -> np.ndarray:
    """Additive shares of signed(x) >> shift: mod 2^ell, or mod 2^out_ell for ``reduce``
    (default out_ell = ell - shift)."""
    x = as_ring(x, ell, "trunc input")
    if kind not in KINDS:
        raise ValueError(f"unknown truncation kind {kind!r}; expected one of {KINDS}")
    if not 0 <= shift < ell:
        raise ValueError(f"truncation shift {shift} must be in 0..{ell - 1} for ell={ell}")
    if kind == "reduce":
        o = ell - shift if out_ell is None else out_ell
        if not 1 <= o <= ell - shift:
            raise ValueError(f"trunc reduce: out_ell={o} must be in 1..{ell - shift}")
    elif out_ell not in (None, ell):
        raise ValueError(f"trunc kind {kind!r} keeps the ring: out_ell must be {ell}")
    s = np.uint64(shift)
    if shift == 0:
        return x.copy() if kind != "reduce" else wrap(x.copy(), o)
    if kind == "reduce":
        c = b2a(party, _carry(party, x, shift), o)
        return wrap((x >> s) + c, o)
    if kind == "msb0":
        # w = msb(x0) OR msb(x1) = t0 + t1 - t0*t1 and the B2A of the carry c share ONE
        # server-sender COT call after the millionaire (one flight; t0*t1 at ell bits)
        top = (x >> np.uint64(ell - 1)) & np.uint64(1)
        c = _carry(party, x, shift).reshape(-1)
        n = x.size
        if party.is_server:
            cb = c.astype(np.uint64)
            got = cot(party, "server", np.concatenate([cb, top.reshape(-1)]), ell)
            ca, w = cb + np.uint64(2) * got[:n], top.reshape(-1) + got[n:]
        else:
            choice = np.concatenate([c, top.reshape(-1).astype(np.uint8)])
            got = cot(party, "server", choice, ell)
            ca, w = c.astype(np.uint64) - np.uint64(2) * got[:n], top.reshape(-1) - got[n:]
        ca, w = ca.reshape(x.shape), w.reshape(x.shape)
        return wrap((x >> s) + ca - (w << np.uint64(ell - shift)), ell)
    half = np.uint64(1) << np.uint64(ell - 1)
    xb = wrap(x + half, ell) if party.is_server else x
    val = mask(ell) - xb if party.is_server else xb
    c, w = millionaire(party, val, ell, split=shift)
    # one B2A call for both bits (one flight instead of two; w travels at ell bits, and
    # (wa << (ell - shift)) mod 2^ell reads only wa mod 2^shift)
    cw = b2a(party, np.concatenate([c.reshape(-1), w.reshape(-1)]), ell)
    ca, wa = cw[: x.size].reshape(x.shape), cw[x.size :].reshape(x.shape)
    out = (xb >> s) + ca - (wa << np.uint64(ell - shift))
    if party.is_server:
        out -= half >> s
    return wrap(out, ell)
