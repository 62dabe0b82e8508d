"""Exact integer matmul and convolution mod 2^ℓ through float64 BLAS.

numpy's uint64 matmul does not use BLAS and is 20-50× slower than float64. A float64
product of integers is exact while every partial sum stays below 2^53, so each operand
is split into signed limbs (digits in [-2^(L-1), 2^(L-1))) small enough that
``K · max|a_limb| · max|b_limb| < 2^53``; the limb products are recombined with
wrap-around uint64 arithmetic and reduced mod 2^ℓ (DESIGN.md §5, ring Z_2^ℓ).
Limb widths are chosen from the actual magnitudes, so typical fixed-point layers take
one float64 product and the full ring takes a few.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_EXACT = 1 << 53
Bilinear = Callable[[np.ndarray, np.ndarray], np.ndarray]


def mask(ell: int) -> np.uint64:
    return np.uint64((1 << ell) - 1) if ell < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)


def to_signed(x: np.ndarray, ell: int) -> np.ndarray:
    """Residues mod 2^ℓ (uint64) to their two's-complement values (int64)."""
    x = np.asarray(x, dtype=np.uint64)
    if ell == 64:
        return x.view(np.int64)
    half = np.uint64(1 << (ell - 1))
    return ((x + half) & mask(ell)).view(np.int64) - np.int64(1 << (ell - 1))


def to_ring(x: np.ndarray, ell: int) -> np.ndarray:
    """int64 (or uint64) values to residues mod 2^ℓ."""
    return np.asarray(x).astype(np.int64, copy=False).view(np.uint64) & mask(ell)


def _maxabs(x: np.ndarray) -> int:
    if x.size == 0:
        return 0
    return max(abs(int(x.max())), abs(int(x.min())))


def split_limbs(x: np.ndarray, ell: int, width: int) -> list[tuple[int, np.ndarray]]:
    """Signed digits of ``x`` (int64) in base 2^width: x ≡ Σ d_i·2^shift_i (mod 2^ℓ).

    Returns (shift, digits as float64) pairs, stopping once the rest is zero or the
    shift reaches ℓ; each digit lies in [-2^(width-1), 2^(width-1)).
    """
    rest = x.astype(np.int64, copy=True)
    limbs: list[tuple[int, np.ndarray]] = []
    shift = 0
    half = np.int64(1 << (width - 1))
    low = np.int64((1 << width) - 1)
    while shift < ell and rest.any():
        d = ((rest + half) & low) - half  # wraps like the ring: fine mod 2^64
        limbs.append((shift, d.astype(np.float64)))
        with np.errstate(over="ignore"):
            rest = (rest - d) >> np.int64(width)
        shift += width
    if not limbs:
        limbs.append((0, np.zeros(x.shape, np.float64)))
    return limbs


def _bits(v: int) -> int:
    return max(v, 1).bit_length()


def plan_widths(amax: int, bmax: int, k: int) -> tuple[int | None, int | None]:
    """Limb widths (None = keep whole) so that k·|a_limb|·|b_limb| < 2^53."""
    k = max(k, 1)
    if amax * bmax * k < _EXACT:
        return None, None
    budget = 53 - math.ceil(math.log2(k)) - 1  # need 2^(La-1)·2^(Lb-1)·k < 2^53
    bb, ba = _bits(bmax), _bits(amax)
    if budget - bb + 1 >= 8:  # split a only: 2^(La-1)·bmax·k < 2^53
        return budget - bb + 1, None
    if budget - ba + 1 >= 8:
        return None, budget - ba + 1
    half = (budget + 2) // 2
    return half, half


def exact_bilinear(a: np.ndarray, b: np.ndarray, k: int, ell: int, op: Bilinear) -> np.ndarray:
    """op(a, b) mod 2^ℓ exactly, for a bilinear ``op`` summing at most ``k`` products.

    ``a`` and ``b`` are int64 (signed representatives); the result is uint64 residues.
    """
    wa, wb = plan_widths(_maxabs(a), _maxabs(b), k)
    la = [(0, a.astype(np.float64))] if wa is None else split_limbs(a, ell, wa)
    lb = [(0, b.astype(np.float64))] if wb is None else split_limbs(b, ell, wb)
    acc = None
    for sa, da in la:
        for sb, db in lb:
            sh = sa + sb
            if sh >= ell:
                continue
            part = np.rint(op(da, db)).astype(np.int64).view(np.uint64)
            if sh:
                part = part << np.uint64(sh)
            acc = part if acc is None else acc + part
    assert acc is not None
    return acc & mask(ell)


# ------------------------------------------------------------------ float kernels


def im2col(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: list[int],
    pads: list[int],
    dilations: list[int],
    out_hw: tuple[int, int],
    fill: float = 0.0,
) -> np.ndarray:
    """(1, C, H, W) -> (C, kh, kw, OH, OW) windows (a copy), padding with ``fill``.

    Right/bottom padding is extended when ceil-mode windows need it.
    """
    _, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh, ow = out_hw
    need_h = (oh - 1) * sh + dh * (kh - 1) + 1
    need_w = (ow - 1) * sw + dw * (kw - 1) + 1
    pb = max(pb, need_h - h - pt)
    pr = max(pr, need_w - w - pl)
    xp = np.full((c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
    xp[:, pt : pt + h, pl : pl + w] = x[0]
    cs, hs, ws = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp,
        shape=(c, kh, kw, oh, ow),
        strides=(cs, hs * dh, ws * dw, hs * sh, ws * sw),
        writeable=False,
    )
    return np.ascontiguousarray(view)


def conv2d_float(x: np.ndarray, w: np.ndarray, attrs: dict, out_hw: tuple[int, int]) -> np.ndarray:
    """Grouped 2-D convolution in float64 by im2col + batched BLAS matmul (no bias)."""
    g = attrs.get("group", 1)
    cout, cg, kh, kw = w.shape
    cols = im2col(
        x, (kh, kw), attrs["strides"], attrs["pads"], attrs.get("dilations", [1, 1]), out_hw
    )
    p = out_hw[0] * out_hw[1]
    cols = cols.reshape(g, cg * kh * kw, p)
    wm = w.reshape(g, cout // g, cg * kh * kw)
    return np.matmul(wm, cols).reshape(1, cout, *out_hw)


def conv2d_exact(
    x: np.ndarray, w: np.ndarray, attrs: dict, out_hw: tuple[int, int], ell: int
) -> np.ndarray:
    """conv(x, w) mod 2^ℓ for signed int64 ``x`` (1,C,H,W) and ``w``; uint64 result."""
    k = w.shape[1] * w.shape[2] * w.shape[3]
    return exact_bilinear(w, x, k, ell, lambda wf, xf: conv2d_float(xf, wf, attrs, out_hw))


def matmul_exact(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """a @ b mod 2^ℓ for signed int64 matrices; uint64 result."""
    return exact_bilinear(a, b, a.shape[-1], ell, np.matmul)
