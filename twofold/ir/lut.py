"""Math functions inside the network as piecewise-linear tables (SIRNN, Rathee et al., IEEE
S&P 2021, §4: a lookup on a few high bits of the input, the low bits by arithmetic).

A function f on a fixed-point input X (scale s) is evaluated on the clamped input
``U = clip(X, LO, HI − 1) − LO`` (LO = lo·2^s, HI = hi·2^s): the high bits
``i = U >> sh`` (sh = log2(hi − lo) + s − m, m index bits) pick a cell of width δ = (hi − lo)/2^m,
the low bits ``r = U − (i << sh)`` ∈ [0, 2^sh) the place in it, and the result at scale s is
``a_i + ((b_i · r + 2^(sh−1)) >> sh)`` (rounded to nearest: a floor's −½ ulp bias would
add up over a network's many lookups): the chord of the cell, b_i = round((f(x_{i+1}) −
f(x_i))·2^s), moved by ⅔ of its excess at the midpoint so that its error has mean zero over
the cell (:func:`table`). The cleartext interpreter (:func:`evaluate`)
and the 2PC protocol (``runtime/protocols/lut.py``: two ReLUs for the clamp, a known-MSB
truncation for the index, two 1-out-of-2^m OTs for a_i and b_i, one product of two shared
values and one truncation) compute exactly this.

Error against float for x in [lo, hi): the chord's error C·δ²/8 (C = max |f''| on the domain;
at a kink, e.g. log(1 + e^−|x|) at 0, a cell boundary) plus the roundings of a_i, b_i and the
interpolation, 2^-(s+1) each: :func:`error_bound`. Outside the domain the clamp
adds |f(x) − f(clamp(x))|, bounded by ``tail`` for functions that saturate (refused at compile
time for those that do not). The table is shared code of the compiler and the runtime (the
runtime may import ``ir``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class MathFn:
    """f(x, alpha) on the table's domain [lo, hi) in 2^bits linear pieces."""

    f: Callable[[np.ndarray, float], np.ndarray]
    lo: int
    hi: int
    bits: int
    curvature: Callable[[float], float]  # max |f''| on the domain (for exp: relative, e^δ)
    tail: Callable[[float], float] | None  # clamp error outside the domain; None: refused
    doc: str


def _erf(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _elu_neg(x: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * np.expm1(np.minimum(x, 0.0))


FUNCTIONS: dict[str, MathFn] = {
    "tanh": MathFn(
        lambda x, a: np.tanh(x),
        -8,
        8,
        7,
        lambda a: 4 / (3 * math.sqrt(3)),
        lambda a: 1 - math.tanh(8),
        "tanh(x)",
    ),
    "sigmoid": MathFn(
        lambda x, a: 1.0 / (1.0 + np.exp(-x)),
        -8,
        8,
        8,
        lambda a: math.sqrt(3) / 18,
        lambda a: 1.0 / (1.0 + math.exp(8)),
        "1 / (1 + exp(-x))",
    ),
    "exp": MathFn(
        lambda x, a: np.exp(x),
        -24,
        8,
        8,
        lambda a: math.exp(32 / 256),
        None,
        "exp(x), input below 8: |error| ≤ exp(x)·e^δ·δ²/8 + 1.5·2^-s (relative 0.22%)",
    ),
    "exp_neg": MathFn(
        lambda x, a: np.exp(np.minimum(x, 0.0)),
        -16,
        0,
        7,
        lambda a: 1.0,
        lambda a: math.exp(-16),
        "exp(x) for x ≤ 0 (softmax after subtracting the maximum)",
    ),
    "erf": MathFn(
        _erf,
        -4,
        4,
        7,
        lambda a: 4 / math.sqrt(2 * math.pi * math.e),
        lambda a: math.erfc(4.0),
        "erf(x) (GELU = x·(1 + erf(x/√2))/2)",
    ),
    "elu_neg": MathFn(
        _elu_neg,
        -16,
        0,
        7,
        lambda a: abs(a),
        lambda a: abs(a) * math.exp(-16),
        "alpha·(exp(min(x, 0)) − 1): ELU = relu(x) + this, SELU = gamma·ELU",
    ),
    "softplus_g": MathFn(
        lambda x, a: np.log1p(np.exp(-np.abs(x))),
        -16,
        16,
        7,
        lambda a: 0.25,
        lambda a: math.log1p(math.exp(-16)),
        "log(1 + exp(-|x|)): softplus = relu(x) + this (the kink at 0 is a cell boundary)",
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


@lru_cache(maxsize=64)
def table(fn: str, alpha: float, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) as int64[2^bits] (read-only): b_i = round((f(x_{i+1}) − f(x_i))·2^scale) the
    chord's rise over the cell [x_i, x_{i+1}); a_i = round((f(x_i) − ⅔·e_i)·2^scale), e_i the
    chord's excess over f at the cell's midpoint, so that the chord's curvature error averages
    to zero over the cell (a chord lies above a convex f throughout: SiLU's x·σ(x) would be
    biased low on both sides of 0 and the bias would add up through a network)."""
    m = spec(fn)
    n = 1 << m.bits
    delta = (m.hi - m.lo) / n
    ends = m.lo + np.arange(n + 1, dtype=np.float64) * delta
    fe = m.f(ends, float(alpha))
    excess = (fe[:-1] + fe[1:]) / 2 - m.f(ends[:-1] + delta / 2, float(alpha))
    a = np.rint((fe[:-1] - 2 * excess / 3) * 2.0**scale).astype(np.int64)
    b = np.rint(np.diff(fe) * 2.0**scale).astype(np.int64)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def index(x: np.ndarray, fn: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, r): the cell and the place in it of signed fixed-point inputs (int64)."""
    lo, hi = bounds(fn, scale)
    sh = shift(fn, scale)
    u = np.clip(x, lo, hi - 1) - lo
    i = u >> sh
    return i, u - (i << sh)


def evaluate(x: np.ndarray, fn: str, alpha: float, scale: int) -> np.ndarray:
    """The fixed-point result (int64, scale ``scale``) of signed int64 inputs."""
    a, b = table(fn, float(alpha), scale)
    i, r = index(np.asarray(x, np.int64), fn, scale)
    sh = shift(fn, scale)
    return a[i] + ((b[i] * r + ((1 << sh) >> 1)) >> sh)


def product_bits(fn: str, alpha: float, scale: int) -> int:
    """Two's-complement bits of the largest b_i·r the protocol forms (the ring must hold it)."""
    _, b = table(fn, float(alpha), scale)
    top = int(np.abs(b).max(initial=0)) << shift(fn, scale)
    return top.bit_length() + 1


def error_bound(fn: str, alpha: float, scale: int) -> float:
    """max |f(x) − lut(x)| for x in the domain (real units); exp's is relative (see ``doc``)."""
    m = spec(fn)
    delta = (m.hi - m.lo) / (1 << m.bits)
    return m.curvature(alpha) * delta**2 / 8 + 1.5 * 2.0**-scale
