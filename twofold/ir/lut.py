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
The table is shared code of the compiler and the runtime (the runtime may import ``ir``).
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


def _erf(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


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
        12,
        lambda a: 0.25,
        lambda a: 1.0 / (1.0 + math.exp(8)),
        "1 / (1 + exp(-x))",
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
    "exp_neg": MathFn(
        lambda x, a: np.exp(np.minimum(x, 0.0)),
        -16,
        0,
        12,
        lambda a: 1.0,
        lambda a: math.exp(-16),
        "exp(x) for x ≤ 0 (softmax after subtracting the maximum): |error| ≤ δ/2 + 2^-(s+1)",
    ),
    "erf": MathFn(
        _erf,
        -4,
        4,
        12,
        lambda a: 2.0 / math.sqrt(math.pi),
        lambda a: math.erfc(4.0),
        "erf(x) (GELU = x·(1 + erf(x/√2))/2)",
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
def table(fn: str, alpha: float, scale: int) -> np.ndarray:
    """T[i] = round(f(lo + (i + ½)·δ)·2^scale) as int64[2^bits] (read-only)."""
    m = spec(fn)
    n = 1 << m.bits
    mid = m.lo + (np.arange(n, dtype=np.float64) + 0.5) * ((m.hi - m.lo) / n)
    t = np.rint(m.f(mid, float(alpha)) * 2.0**scale).astype(np.int64)
    t.setflags(write=False)
    return t


def index(x: np.ndarray, fn: str, scale: int) -> np.ndarray:
    """The table index of signed fixed-point inputs (int64)."""
    lo, hi = bounds(fn, scale)
    return (np.clip(x, lo, hi - 1) - lo) >> shift(fn, scale)


def error_bound(fn: str, alpha: float, scale: int) -> float:
    """max |f(x) − lut(x)| for x in the domain (real units); for exp see its ``doc``."""
    m = spec(fn)
    delta = (m.hi - m.lo) / (1 << m.bits)
    return m.lipschitz(alpha) * delta / 2 + 2.0 ** -(scale + 1)
