"""Math functions inside the network as lookup tables (SIRNN, Rathee et al., IEEE S&P 2021, §4).

A function f on a fixed-point input X (scale s) is evaluated as a table lookup on a few high
bits of the clamped input: ``U = clip(X, LO, HI − 1) − LO`` with LO = lo·2^s, HI = hi·2^s;
``i = U >> (log2(hi − lo) + s − m)`` (m index bits, so i ∈ [0, 2^m)); the result is
``T[i] = round(f(lo + (i + ½)·δ)·2^s)`` with δ = (hi − lo)/2^m, at scale s. The cleartext
interpreter and the 2PC protocol (``runtime/protocols/lut.py``: two ReLUs for the clamp, a
known-MSB truncation for the index, one 1-out-of-2^m OT for the table) compute exactly this.

Error against float for x in [lo, hi): |f(x) − T[i]·2^-s| ≤ L·δ/2 + 2^-(s+1) (L the Lipschitz
bound of f on the domain); outside it the clamp adds |f(x) − f(clamp(x))|, bounded by
``tail`` for functions that saturate (and refused at compile time for those that do not).

Piecewise linear functions (``curvature`` > 0, SIRNN §4's spline form): T[i] = round(f(x_i)·2^s)
at the knots x_i = lo + i·δ, D[i] = T[i + 1] − T[i], and the value is
``T[i] + ((D[i]·φ + 2^(shift−1)) >> shift)`` (rounded: no bias for a product to grow) with
φ = U mod 2^shift the position inside the segment; so
2^m entries of two small tables, one product and one truncation stand in for a 2^(m+5)-entry
table. Error in the domain ≤ c·δ²/8 + 2^-s (c ≥ |f''|: the chord's error; ½ ulp from
rounding the knots, ½ from rounding the product). ``evaluate`` is the one definition of the result.
The tables are shared code of the compiler and the runtime (the runtime may import ``ir``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class MathFn:
    """f(x, alpha) on the table's domain [lo, hi) with 2^bits entries."""

    f: Callable[[np.ndarray, float], np.ndarray]
    lo: int
    hi: int
    bits: int
    lipschitz: Callable[[float], float]
    tail: Callable[[float], float] | None  # clamp error outside the domain; None: refused
    doc: str
    curvature: float = 0.0  # > 0: piecewise linear between knots, this bounds |f''|


def _elu_neg(x: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * np.expm1(np.minimum(x, 0.0))


FUNCTIONS: dict[str, MathFn] = {
    "tanh": MathFn(
        lambda x, a: np.tanh(x), -8, 8, 12, lambda a: 1.0, lambda a: 1 - math.tanh(8), "tanh(x)"
    ),
    "sigmoid": MathFn(
        lambda x, a: 1.0 / (1.0 + np.exp(-x)),
        -8,
        8,
        8,  # 256 segments of 1/16, linear inside: 2.9e-4 at s = 12 (4096 steps: 6.1e-4)
        lambda a: 0.25,
        lambda a: 1.0 / (1.0 + math.exp(8)),
        "1 / (1 + exp(-x))",
        curvature=0.0963,  # max |σ''| = 1/(6·√3) ≈ 0.09623
    ),
    "exp": MathFn(
        lambda x, a: np.exp(x),
        -24,
        8,
        12,
        lambda a: math.exp(8),
        None,
        "exp(x), input below 8: |error| ≤ exp(x)·(e^(δ/2) − 1) + 2^-(s+1)",
    ),
    "elu_neg": MathFn(
        _elu_neg,
        -16,
        0,
        12,
        lambda a: abs(a),
        lambda a: abs(a) * math.exp(-16),
        "alpha·(exp(min(x, 0)) − 1): ELU = relu(x) + this, SELU = gamma·ELU",
    ),
    "softplus_g": MathFn(
        lambda x, a: np.log1p(np.exp(-np.abs(x))),
        -16,
        16,
        12,
        lambda a: 0.5,
        lambda a: math.log1p(math.exp(-16)),
        "log(1 + exp(-|x|)): softplus = relu(x) + this",
    ),
}


def spec(fn: str) -> MathFn:
    try:
        return FUNCTIONS[fn]
    except KeyError:
        raise ValueError(f"unknown math function {fn!r}; known: {', '.join(FUNCTIONS)}") from None


def shift(fn: str, scale: int) -> int:
    """Right shift taking the clamped, offset input U to the table index."""
    m = spec(fn)
    sh = int(math.log2(m.hi - m.lo)) + scale - m.bits
    if sh < 0:
        raise ValueError(f"{fn}: scale {scale} is below the table's {m.bits} index bits")
    return sh


def bounds(fn: str, scale: int) -> tuple[int, int]:
    """(LO, HI): the integer clamp range [LO, HI) at ``scale``."""
    m = spec(fn)
    return m.lo << scale, m.hi << scale


@lru_cache(maxsize=32)
def _knots(fn: str, alpha: float, scale: int) -> np.ndarray:
    """round(f(x)·2^scale) at x = lo + (i + ½)·δ, i < 2^bits (the knots lo + i·δ, i ≤ 2^bits,
    for a piecewise linear ``fn``) as int64 (read-only)."""
    m = spec(fn)
    n = 1 << m.bits
    pts = np.arange(n + 1, dtype=np.float64) if m.curvature else np.arange(n) + 0.5
    t = np.rint(m.f(m.lo + pts * ((m.hi - m.lo) / n), float(alpha)) * 2.0**scale)
    t = t.astype(np.int64)
    t.setflags(write=False)
    return t


def table(fn: str, alpha: float, scale: int) -> np.ndarray:
    """T as int64[2^bits]: f at the cell midpoints, or at the knots of a linear ``fn``."""
    return _knots(fn, alpha, scale)[: 1 << spec(fn).bits]


def slopes(fn: str, alpha: float, scale: int) -> np.ndarray | None:
    """D[i] = T[i + 1] − T[i] (int64[2^bits]) of a piecewise linear ``fn``; else None."""
    if not spec(fn).curvature:
        return None
    return np.diff(_knots(fn, alpha, scale))


def evaluate(x: np.ndarray, fn: str, alpha: float, scale: int) -> np.ndarray:
    """The fixed-point result (int64, at ``scale``) on signed fixed-point inputs ``x``: the
    table entry, plus (D[i]·φ + 2^(shift−1)) >> shift for a piecewise linear ``fn``."""
    i = index(x, fn, scale)
    y = table(fn, alpha, scale)[i]
    d = slopes(fn, alpha, scale)
    if d is None:
        return y
    lo, hi = bounds(fn, scale)
    sh = shift(fn, scale)
    phi = (np.clip(x, lo, hi - 1) - lo) & ((1 << sh) - 1)
    return y + ((d[i] * phi + (1 << (sh - 1))) >> sh)


def value_range(fn: str, alpha: float, scale: int) -> tuple[int, int]:
    """(min, max) of every result ``evaluate`` can give (integers at ``scale``)."""
    k = _knots(fn, alpha, scale)
    return int(k.min()), int(k.max())


def index(x: np.ndarray, fn: str, scale: int) -> np.ndarray:
    """The table index of signed fixed-point inputs (int64)."""
    lo, hi = bounds(fn, scale)
    return (np.clip(x, lo, hi - 1) - lo) >> shift(fn, scale)


def error_bound(fn: str, alpha: float, scale: int) -> float:
    """max |f(x) − lut(x)| for x in the domain (real units); for exp see its ``doc``."""
    m = spec(fn)
    delta = (m.hi - m.lo) / (1 << m.bits)
    if m.curvature:
        return m.curvature * delta**2 / 8 + 2.0**-scale
    return m.lipschitz(alpha) * delta / 2 + 2.0 ** -(scale + 1)


def entry_bits(t: np.ndarray) -> tuple[int, int]:
    """(k, base): every entry minus ``base`` (the table's minimum) lies in [0, 2^(k−1)), so
    the 2PC lookup can send k-bit entries and lift them to the ring with the top bit known
    zero (runtime/protocols/lut.py)."""
    base = int(t.min())
    return (int(t.max()) - base).bit_length() + 1, base
