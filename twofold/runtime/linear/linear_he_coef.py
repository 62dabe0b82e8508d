"""Server side of Cheetah's HomConv (Huang et al. 2022, §3.2) in the coefficient domain.

A kernel polynomial k(X) = sum_t w_t X^(s_t) has one term per (input channel of the block,
kernel row, kernel column), so ct * k = sum_t w_t * (X^(s_t) * ct): every output ciphertext is
an integer combination of negacyclically shifted input ciphertexts. Stacking the shifted inputs
as the rows of V (one row per input block and shift) makes a whole layer one matrix product
W @ V mod q per prime and polynomial, with W the kernel itself ([O, C*kh*kw], small signed
integers), computed exactly on float64 BLAS (``rns.limbs``, ``rns.reduce_limbs``). No weight
plaintexts, no NTTs: the prepared weights are just W, so they are kept across images. Its
cost grows with Cb*kh*kw (the terms per kernel polynomial); SEAL's NTT-form products cost the
same for any number of terms, so ``prefer_coef`` sends only layers with few terms here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import rns
from .linear_he_pack import ConvPlan

# Crossover in terms per kernel polynomial: a product term here costs ~6 us (2 polynomials x
# 3 primes x 8192 coefficients x 2 limbs on ~17 GMAC/s BLAS), an NTT-form SEAL product ~1.1 ms
# including its plaintext (built per image: caching them all would take 31 GiB).
COEF_MAX_TERMS = 192


def prefer_coef(plan: ConvPlan, kh: int, kw: int) -> bool:
    """Whether a conv with this blocking is cheaper in the coefficient domain."""
    return plan.Cb * kh * kw <= COEF_MAX_TERMS


@dataclass
class KernelMatrix:
    """One group's kernel as W [O/group, n_cb*Cb*kh*kw] (float64 integers) with the shift of
    every column's term within its input block, and the largest row l1 norm."""

    w: np.ndarray
    shifts: np.ndarray  # [Cb*kh*kw] int64
    l1_max: int


def kernel_matrix(plan: ConvPlan, w: np.ndarray, dil: tuple[int, int], ell: int) -> KernelMatrix:
    """W for signed kernel w [O, C, kh, kw] (lifted to (-2^(ell-1), 2^(ell-1)] like a BFV
    plaintext) and the shifts s = offset - c*Hb*Wb - l*d*Wb - l'*d of ``conv_pack_weights``."""
    O, C, kh, kw = w.shape  # noqa: N806
    half = 1 << (ell - 1)
    wc = np.asarray(w).astype(np.int64) & np.int64((1 << ell) - 1)
    wc = np.where(wc > half, wc - (1 << ell), wc)
    full = np.zeros((O, plan.n_cb * plan.Cb, kh, kw), np.int64)
    full[:, :C] = wc
    cc = np.arange(plan.Cb)[:, None, None] * (plan.Hb * plan.Wb)
    ll = np.arange(kh)[None, :, None] * dil[0] * plan.Wb
    lk = np.arange(kw)[None, None, :] * dil[1]
    shifts = (plan.offset - cc - ll - lk).reshape(-1)
    l1 = int(np.abs(full).sum(axis=(1, 2, 3)).max()) if O else 0
    return KernelMatrix(full.reshape(O, -1).astype(np.float64), shifts, l1)


def conv_outputs(
    km: KernelMatrix,
    cts: np.ndarray,
    q: tuple[int, ...],
    useful: list[np.ndarray] | None = None,
    batch: int = 32,
) -> Iterator[np.ndarray]:
    """Output ciphertexts of one group: cts uint64 [n_cb, n_sp, 2, k, N] (input block cb, spatial
    block sp) -> batches of uint64 [n, 2, k, N] in (output channel, spatial block) order.

    The residues are cut into b-bit limbs first and the limbs are shifted: X^s negates the
    wrapped coefficients, and negating every limb negates the integer exactly, so W @ (shifted
    limbs) needs no reduction until the end. When ``useful`` (the coefficient indices the
    client gets, per spatial block) covers under a quarter of them, c0 is computed only there
    and left zero elsewhere: the reply sends no other c0 coefficient, and re-randomising and
    switching down act coefficient by coefficient."""
    n_cb, n_sp, two, k, n = cts.shape
    o = km.w.shape[0]
    b = rns.limb_bits(km.l1_max)
    out = np.zeros((o, n_sp, two, k, n), np.uint64)
    v = np.empty((n_cb, km.shifts.size, n_sp, n), np.float64)
    sparse = useful is not None and 4 * max(u.size for u in useful) < n
    for i, qi in enumerate(q):
        for p in (1,) if sparse else (1, 0):
            ls = rns.limbs(cts[:, :, p, i], b, qi)
            parts = np.empty((o, len(ls), n_sp * n), np.int64)
            for li, limb in enumerate(ls):
                for si, s in enumerate(km.shifts):
                    _shift_into(v[:, si], limb, int(s))
                parts[:, li] = km.w @ v.reshape(-1, n_sp * n)
            out[:, :, p, i] = rns.reduce_limbs(parts, b, qi).reshape(o, n_sp, n)
        for sp, idx in enumerate(useful if sparse else ()):  # c0 at the wanted coefficients
            ls = rns.limbs(cts[:, sp, 0, i], b, qi)
            parts = np.empty((o, len(ls), idx.size), np.int64)
            vu = np.empty((n_cb, km.shifts.size, idx.size), np.float64)
            for li, limb in enumerate(ls):
                for si, s in enumerate(km.shifts):
                    vu[:, si] = _shifted_at(limb, int(s), idx)
                parts[:, li] = km.w @ vu.reshape(-1, idx.size)
            out[:, sp, 0, i, idx] = rns.reduce_limbs(parts, b, qi)
    flat = out.reshape(o * n_sp, two, k, n)
    for s0 in range(0, len(flat), batch):
        yield flat[s0 : s0 + batch]


def _shift_into(dst: np.ndarray, src: np.ndarray, s: int) -> None:
    """dst = X^s * src over the integers mod X^N + 1 (last axis): wrapped terms negated."""
    n = src.shape[-1]
    dst[..., s:] = src[..., : n - s]
    np.negative(src[..., n - s :], out=dst[..., :s])


def _shifted_at(p: np.ndarray, s: int, idx: np.ndarray) -> np.ndarray:
    """(X^s * p)[idx] over the integers mod X^N + 1 (last axis), without the other terms."""
    src = idx - s
    vals = p[..., src % p.shape[-1]]
    return np.where(src < 0, -vals, vals)
