"""Reciprocal and reciprocal square root in fixed point (SIRNN, Rathee et al., IEEE S&P 2021,
§5: normalise by the most significant bit, a table for the first approximation on the top
bits, then Newton iterations at a precision the ring holds).

Input x (signed integer, scale s, ring ℓ), output at scale t. With F = the integer floor
(``floor`` in real units at scale s, at least one ulp), J = the comparison exponents
``j0 = bit_length(F) .. ℓ − 4``, p = :func:`precision` (ℓ) and M = :data:`M` index bits:

1. clamp: x₁ = max(x, F) (the input must be below 2^(ℓ−3): two spare bits, ``bitwidth``);
2. exponent: c_j = 1{x₁ ≥ 2^j} for j ∈ J; k = j0 − 1 + Σ c_j is the MSB position of x₁, and
   every per-k public vector V is the linear form V[k] = V[j0 − 1] + Σ_j c_j (V[j] − V[j−1]);
3. normalise: z = x₁·f[k] — ``reciprocal``: f = 2^(Z−k), z ∈ [2^Z, 2^(Z+1)), Z = ℓ − 3;
   ``rsqrt``: f = 2^(2e) with 2e ∈ {D − k, D − k + 1} even, z ∈ [2^D, 2^(D+2)), D ∈ {ℓ − 4,
   ℓ − 5} with D ≡ s (mod 2);
4. table: i = (z >> (top − M)) mod 2^M (top = Z + 1 or D + 2), y = T[i] ≈ 2^p·g(w) at the
   cell's midpoint, w = z / 2^Z ∈ [1, 2) (g = 1/w) or z / 2^D ∈ [1, 4) (g = 1/√w);
5. one Newton step on w' = z >> (Z − p) (or D − p), all shifts floors of non-negative values:
   reciprocal e = (w'·y) >> p, y ← (y·(2^(p+1) − e)) >> p;
   rsqrt a = (y·y) >> p, b = (w'·a) >> p, y ← (y·(3·2^p − b)) >> (p + 1);
6. denormalise: out = y·g1[k] + ((y·g2[k]) >> p), where y·2^(E_k) is the result with E_k =
   s + t − p − k (reciprocal) or t + (s − D)/2 + e_k − p (rsqrt): g1 = 2^(E_k) if E_k ≥ 0, g2 =
   2^(E_k + p) if −p ≤ E_k < 0 (each 0 otherwise).

The cleartext interpreter (:func:`evaluate`) and the 2PC protocol
(``runtime/protocols/newton.py``: one ReLU, |J| DReLUs and B2As, four or five COT products,
known-MSB truncations, one 1-out-of-2^M OT) compute exactly these integers. Every product
fits the ring: z < 2^(ℓ−2), the Newton products < 2^(2p+3) ≤ 2^(ℓ−1), y·g2 < 2^(2p+1), and
y·g1 is the result itself (its range is the compiler's, ``compiler/ranges.py``).

Error against float, for X = x·2^-s ≥ floor (tested over a dense sweep, ``tests/test_newton.py``;
:func:`error_bound`): the table's relative error ≤ 2^-(M+1) (1/w) or 2^-M (1/√w) is squared
by the Newton step, so |out·2^-t − g(X)| ≤ ε·g(X) + 2^-(t−1) with
ε = 2^-(p−2) (p = 14 at ℓ = 32: ε = 2^-12 ≈ 2.4e-4, measured 1.1e-4; p = 16 from ℓ = 36:
ε ≈ 6.1e-5, measured 2.7e-5); the absolute term is the floors' (measured ≤ 1.04 ulp).
An input below ``floor`` is clamped to it (its result is g(floor)).

``log`` (LogSoftmax inside the network) shares steps 1–4 with the reciprocal and stops there:
ln X = (k − s)·ln 2 + ln w, the first term a public per-k constant (a linear form in the c_j),
the second a 256-entry table of ln w at the cell's midpoint, both at the output scale t:
|out·2^-t − ln X| ≤ 2^-(M+1) + 2^-t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Index bits of the first-approximation table (one 1-out-of-256 OT per element).
M = 8
KINDS = ("reciprocal", "rsqrt", "log")


def precision(ell: int) -> int:
    """Fraction bits p of the Newton step: products stay below 2^(2p+3) ≤ 2^(ℓ−1)."""
    return min(16, (ell - 4) // 2)


@dataclass(frozen=True)
class Plan:
    """Every public integer the algorithm uses at (kind, ℓ, s, F)."""

    kind: str
    ell: int
    scale: int  # of the input
    out_scale: int
    floor: int  # F, integer at scale s, ≥ 1
    p: int
    top: int  # z ∈ [2^(top − width), 2^top)
    width: int  # 1 (reciprocal) or 2 (rsqrt)
    exps: tuple[int, ...]  # J: the exponents compared
    f: tuple[int, ...]  # normaliser per k = j0 − 1 .. ℓ − 4
    g1: tuple[int, ...]
    g2: tuple[int, ...]

    @property
    def k0(self) -> int:
        return self.exps[0] - 1 if self.exps else self.ell - 4

    def linear(self, vec: tuple[int, ...]) -> tuple[int, list[int]]:
        """(constant, coefficient per c_j) with V[k] = constant + Σ_j c_j·coefficient_j."""
        return vec[0], [vec[i + 1] - vec[i] for i in range(len(self.exps))]


def floor_int(floor: float, scale: int) -> int:
    """F: the floor in integer units at ``scale``, at least one ulp."""
    return max(1, int(round(float(floor) * 2.0**scale)))


@lru_cache(maxsize=64)
def plan(kind: str, ell: int, scale: int, out_scale: int, floor: float) -> Plan:
    if kind not in KINDS:
        raise ValueError(f"unknown function {kind!r}; known: {', '.join(KINDS)}")
    p = precision(ell)
    if p < M + 2:
        raise ValueError(f"{kind}: ring ℓ = {ell} is too small (needs ℓ ≥ {2 * M + 8})")
    big_f = floor_int(floor, scale)
    kmax = ell - 4
    j0 = big_f.bit_length()
    if j0 - 1 > kmax:
        raise ValueError(f"{kind}: floor {floor} does not fit the ring ℓ = {ell}")
    ks = range(j0 - 1, kmax + 1)
    if kind == "log":  # ln X = (k − s)·ln 2 + ln w: g1 holds the first term, no Newton step
        z_exp = ell - 3
        f = [1 << (z_exp - k) for k in ks]
        g1 = [int(round((k - scale) * math.log(2) * 2.0**out_scale)) for k in ks]
        return Plan(kind, ell, scale, out_scale, big_f, p, z_exp + 1, 1,
                    tuple(range(j0, kmax + 1)), tuple(f), tuple(g1), (0,) * len(g1))  # fmt: skip
    if kind == "reciprocal":
        z_exp = ell - 3
        top, width = z_exp + 1, 1
        f = [1 << (z_exp - k) for k in ks]
        expo = [scale + out_scale - p - k for k in ks]
    else:
        d = ell - 4 if (ell - 4 - scale) % 2 == 0 else ell - 5
        top, width = d + 2, 2
        two_e = [(d - k) + ((d - k) & 1) for k in ks]
        f = [1 << t for t in two_e]
        expo = [out_scale + (scale - d) // 2 + t // 2 - p for t in two_e]
    g1 = [1 << e if e >= 0 else 0 for e in expo]
    g2 = [1 << (e + p) if -p <= e < 0 else 0 for e in expo]
    exps = tuple(range(j0, kmax + 1))
    return Plan(kind, ell, scale, out_scale, big_f, p, top, width, exps, tuple(f), tuple(g1),
                tuple(g2))  # fmt: skip


@lru_cache(maxsize=64)
def table(kind: str, p: int) -> np.ndarray:
    """T[i] = round(2^p·g(w)) at the midpoint w of cell i (read-only int64[2^M]); rsqrt's
    cells cover [0, 4) and those below w = 1 are never read (0); ``log``'s is ln w at the
    output scale p."""
    i = np.arange(1 << M, dtype=np.float64)
    if kind == "log":
        t = np.rint(np.log1p((i + 0.5) / 2**M) * 2.0**p)
    elif kind == "reciprocal":
        t = np.rint(2.0**p / (1.0 + (i + 0.5) / 2**M))
    else:
        w = (i + 0.5) * 4.0 / 2**M
        t = np.where(w >= 1.0, np.rint(2.0**p / np.sqrt(np.maximum(w, 1.0))), 0.0)
    t = t.astype(np.int64)
    t.setflags(write=False)
    return t


def index_shift(pl: Plan) -> int:
    """z >> this is 2^M + i (reciprocal, log) or i ∈ [2^(M−2), 2^M) (rsqrt): the table index
    mod 2^M."""
    return pl.top - M - (0 if pl.kind == "rsqrt" else 1)


def w_shift(pl: Plan) -> int:
    return pl.top - pl.width - pl.p


def newton(pl: Plan, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One Newton step on int64 arrays (the cleartext of the protocol's products + shifts)."""
    p = pl.p
    if pl.kind == "reciprocal":
        e = (w * y) >> p
        return (y * ((2 << p) - e)) >> p
    a = (y * y) >> p
    b = (w * a) >> p
    return (y * ((3 << p) - b)) >> (p + 1)


def evaluate(
    x: np.ndarray, kind: str, ell: int, scale: int, out_scale: int, floor: float
) -> np.ndarray:
    """The fixed-point result (signed int64) of signed int64 inputs, as the protocol computes."""
    pl = plan(kind, ell, scale, out_scale, floor)
    x1 = np.maximum(np.asarray(x, np.int64), pl.floor)
    k = np.full(x1.shape, pl.k0, np.int64)
    for j in pl.exps:
        k += x1 >= (1 << j)
    pos = k - pl.k0
    z = x1 * np.asarray(pl.f, np.int64)[pos]
    idx = (z >> index_shift(pl)) & ((1 << M) - 1)
    if kind == "log":
        return table(kind, out_scale)[idx] + np.asarray(pl.g1, np.int64)[pos]
    y = table(kind, pl.p)[idx]
    y = newton(pl, y, z >> w_shift(pl))
    g1 = np.asarray(pl.g1, np.int64)[pos]
    g2 = np.asarray(pl.g2, np.int64)[pos]
    return y * g1 + ((y * g2) >> pl.p)


def function(kind: str, x: np.ndarray) -> np.ndarray:
    """The float function the fixed-point algorithm approximates."""
    x = np.asarray(x, np.float64)
    if kind == "log":
        return np.log(x)
    return 1.0 / x if kind == "reciprocal" else 1.0 / np.sqrt(x)


def error_bound(kind: str, ell: int, out_scale: int, value: np.ndarray) -> np.ndarray:
    """Stated bound on |result − g(X)| (real units) for inputs X ≥ floor with g(X) = value."""
    if kind == "log":  # the table's cell: |ln' w| ≤ 1 on [1, 2); two roundings
        return np.full(np.shape(value), 2.0 ** -(M + 1) + 2.0**-out_scale)
    eps = 2.0 ** -(precision(ell) - 2)
    return eps * np.abs(value) + 2.0 ** -(out_scale - 1)
