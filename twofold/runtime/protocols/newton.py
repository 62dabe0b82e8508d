"""Reciprocal and reciprocal square root of a shared value (SIRNN, Rathee et al., IEEE S&P
2021, §5): the algorithm and its public integers are ``ir/newton.py``; this module computes the
same integers on shares, step by step:

1. clamp x₁ = F + relu(x − F) (one ReLU);
2. c_j = DReLU(x₁ − 2^j) for the |J| exponents (one DReLU each), B2A to the ring (one COT
   each); the normaliser f and the output weights g1, g2 are public linear forms in the c_j,
   evaluated locally;
3. z = x₁·f (COT product), then the table index and the Newton operand by two known-MSB
   truncations of z ≥ 0; the first approximation y = T[i] by one 1-out-of-2^M OT (lut.py);
4. the Newton step: two (reciprocal) or three (rsqrt) COT products, each followed by a
   known-MSB truncation (every operand is provably non-negative);
5. out = y·g1 + trunc(y·g2, p): one COT product on both halves at once, one truncation;
   ``log`` stops after the table: out = T[i] + (the per-k constant's linear form).

Bit-exact with ``ir.newton.evaluate`` (same clamps, floors, table and ring). Communication per
element at ℓ = 32 (F = 1 ulp, 28 comparisons): dominated by the 28 DReLUs; measured by
``benchmarks/protocols.py``.
"""

from __future__ import annotations

import numpy as np

from ...ir import newton as N
from ._util import as_ring, chunk_of, wrap
from .arith import add_const
from .b2a import b2a
from .drelu import drelu
from .lut import CHUNK as LUT_CHUNK
from .lut import _lookup
from .mul import mul
from .relu import relu
from .trunc import trunc


def _u(v: int, ell: int) -> np.uint64:
    return np.uint64(v % (1 << ell))


def _exponent_bits(party, x1: np.ndarray, pl: N.Plan, ell: int) -> np.ndarray:  # noqa: ANN001
    """Arithmetic shares (n, |J|) of c_j = 1{x₁ ≥ 2^j}."""
    n, nj = x1.size, len(pl.exps)
    if nj == 0:
        return np.zeros((n, 0), np.uint64)
    if party.is_server:
        offs = np.array([_u(-(1 << j), ell) for j in pl.exps], np.uint64)
        d = wrap(x1[:, None] + offs[None, :], ell).reshape(-1)
    else:
        d = np.repeat(x1, nj)
    bits = np.empty(d.size, np.uint8)
    step = chunk_of(party)
    for lo in range(0, d.size, step):
        bits[lo : lo + step] = drelu(party, d[lo : lo + step], ell)
    return b2a(party, bits, ell).reshape(n, nj)


def _form(party, c: np.ndarray, vec: tuple[int, ...], pl: N.Plan, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of V[k] from the shares of the c_j (local)."""
    const, coef = pl.linear(vec)
    acc = np.zeros(c.shape[0], np.uint64)
    for col, a in enumerate(coef):
        if a:
            acc += c[:, col] * _u(a, ell)
    return add_const(party, wrap(acc, ell), np.int64(const), ell)


def _mul(party, a: np.ndarray, b: np.ndarray, ell: int, shift: int) -> np.ndarray:  # noqa: ANN001
    """(a·b) >> shift of non-negative products (COT product, known-MSB truncation)."""
    return trunc(party, mul(party, a, b, ell), ell, shift, "msb0")


def newton_fn(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    kind: str,
    s_in: int,
    s_out: int,
    floor: float,
) -> np.ndarray:
    """Additive shares mod 2^ell of ``ir.newton.evaluate(x, kind, ell, s_in, s_out, floor)``."""
    x = as_ring(x, ell, f"{kind} input")
    pl = N.plan(kind, ell, s_in, s_out, floor)
    flat = x.reshape(-1)
    big_f = _u(pl.floor, ell)
    x1 = add_const(party, relu(party, wrap(flat - big_f, ell) if party.is_server else flat, ell),
                   np.int64(pl.floor), ell)  # fmt: skip
    c = _exponent_bits(party, x1, pl, ell)
    f = _form(party, c, pl.f, pl, ell)
    z = mul(party, x1, f, ell)
    idx = trunc(party, z, ell, N.index_shift(pl), "msb0") & np.uint64((1 << N.M) - 1)
    w = trunc(party, z, ell, N.w_shift(pl), "msb0") if kind != "log" else None
    table = N.table(kind, s_out if kind == "log" else pl.p)
    y = np.empty_like(flat)
    for lo in range(0, flat.size, LUT_CHUNK):
        y[lo : lo + LUT_CHUNK] = _lookup(party, idx[lo : lo + LUT_CHUNK], table, ell)
    if kind == "log":  # ln w + (k − s)·ln 2
        return wrap(y + _form(party, c, pl.g1, pl, ell), ell).reshape(x.shape)
    p = pl.p
    if kind == "reciprocal":
        e = _mul(party, w, y, ell, p)
        d = add_const(party, wrap(np.uint64(0) - e, ell), np.int64(2 << p), ell)
        y = _mul(party, y, d, ell, p)
    else:
        a = _mul(party, y, y, ell, p)
        b = _mul(party, w, a, ell, p)
        d = add_const(party, wrap(np.uint64(0) - b, ell), np.int64(3 << p), ell)
        y = _mul(party, y, d, ell, p + 1)
    g = np.concatenate([_form(party, c, pl.g1, pl, ell), _form(party, c, pl.g2, pl, ell)])
    prod = mul(party, np.concatenate([y, y]), g, ell)
    n = flat.size
    out = wrap(prod[:n] + trunc(party, prod[n:], ell, p, "msb0"), ell)
    return out.reshape(x.shape)
