"""Exact arithmetic on RNS residues (uint64 numpy arrays, primes q < 2^61) without SEAL calls.

The server's HE linear layers do their heavy lifting here, vectorised over whole layers:

* :func:`mul_small` multiplies small values by a constant: quotient from float64, remainder
  from wrapping 64-bit arithmetic;
* :func:`limbs` and :func:`reduce_limbs` make W @ V mod q exact on float64 BLAS for small
  signed integer weights W: V is cut into limbs of b bits with ||W_row||_1 * 2^b < 2^53, so
  every limb product is an exact float64 integer (the idea of the cleartext backend's limb
  BLAS), and the limb products are recombined mod q.
"""

from __future__ import annotations

import numpy as np

_FLOAT_EXACT = 53  # float64 holds every integer below 2^53


def _u(q: int | np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.uint64)


def mul_small(a: np.ndarray, c: int | np.ndarray, q: int | np.ndarray) -> np.ndarray:
    """a * c mod q for uint64 a < 2^48 and constants 0 <= c < q < 2^62 (ints, or arrays that
    broadcast against a, e.g. one per prime): the quotient comes from float64 (error below
    1/16 since a*c < 2^110), the remainder from wrapping 64-bit arithmetic."""
    qa, ca = _u(q), _u(c)
    ratio = ca.astype(np.float64) / qa.astype(np.float64)
    k = np.rint(a.astype(np.float64) * ratio).astype(np.int64).view(np.uint64)
    r = (a * ca - k * qa).view(np.int64)  # the true remainder, in (-q, q)
    return np.where(r < 0, r + qa.astype(np.int64), r).view(np.uint64)


def add(a: np.ndarray, b: np.ndarray, q: int | np.ndarray) -> np.ndarray:
    """(a + b) mod q for residues a, b < q < 2^63 (q an int or a broadcasting array)."""
    qa = _u(q)
    s = a + b
    return np.where(s >= qa, s - qa, s)


def sub(a: np.ndarray, b: np.ndarray, q: int | np.ndarray) -> np.ndarray:
    """(a - b) mod q for residues a, b < q."""
    return np.where(a >= b, a - b, a + (_u(q) - b))


def from_signed(x: np.ndarray, q: int | np.ndarray) -> np.ndarray:
    """Residues mod q of signed int64 values."""
    return np.mod(x, _u(q).astype(np.int64)).astype(np.uint64)


def from_small(x: np.ndarray, q: int | np.ndarray) -> np.ndarray:
    """Residues mod q of signed int64 values with |x| < q (one comparison, no division)."""
    xu = x.view(np.uint64)
    return np.where(x < 0, xu + _u(q), xu)


def reduce_limbs(c: np.ndarray, b: int, q: int) -> np.ndarray:
    """sum_l c[..., l, :] * 2^(b*l) mod q for signed int64 limbs |c| < 2^53, b <= 32, q < 2^62.

    The quotient by q comes from float64 and the remainder from wrapping 64-bit arithmetic,
    exact while the true remainder is below 2^63 in absolute value: in one step when the value
    over q stays below 2^48 (float error < 1/8), else by Horner steps acc * 2^b + c_l."""
    n_l = c.shape[-2]
    if _FLOAT_EXACT + b * (n_l - 1) - (q.bit_length() - 1) > 48:
        return _reduce_horner(c, b, q)
    wrapped = c[..., 0, :].view(np.uint64).copy()
    approx = c[..., 0, :].astype(np.float64)
    for i in range(1, n_l):
        wrapped += c[..., i, :].view(np.uint64) << np.uint64(b * i)
        approx += c[..., i, :] * float(1 << (b * i))
    k = np.rint(approx * (1.0 / q)).astype(np.int64)
    r = (wrapped - k.view(np.uint64) * np.uint64(q)).view(np.int64)
    return np.where(r < 0, r + q, np.where(r >= q, r - q, r)).view(np.uint64)


def _reduce_horner(c: np.ndarray, b: int, q: int) -> np.ndarray:
    acc = from_signed(c[..., -1, :], q)
    sh = np.uint64(b)
    for i in range(c.shape[-2] - 2, -1, -1):
        low = c[..., i, :]
        approx = acc.astype(np.float64) * float(1 << b) + low
        k = np.rint(approx / q).astype(np.int64)
        r = ((acc << sh) + low.view(np.uint64) - k.view(np.uint64) * np.uint64(q)).view(np.int64)
        acc = np.where(r < 0, r + q, np.where(r >= q, r - q, r)).view(np.uint64)
    return acc


def limb_bits(l1_max: int) -> int:
    """Limb width b for :func:`matmul`: l1_max * (2^b - 1) < 2^53 keeps float64 sums exact."""
    b = _FLOAT_EXACT - max(int(l1_max), 1).bit_length()
    if b < 8:
        raise ValueError(f"weights too large for exact float64 limbs (||w||_1 = {l1_max})")
    return min(b, 32)


def limbs(v: np.ndarray, b: int, q: int) -> list[np.ndarray]:
    """The b-bit limbs of residues v < q, low first, as float64 arrays (ceil(bits(q)/b) of them):
    a product with weights of row l1 norm at most l1_max (b = limb_bits(l1_max)) is exact."""
    mask = np.uint64((1 << b) - 1)
    n_limbs = -(-q.bit_length() // b)
    return [((v >> np.uint64(b * k)) & mask).astype(np.float64) for k in range(n_limbs)]
