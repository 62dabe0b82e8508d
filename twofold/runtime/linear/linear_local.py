"""Exact local linear algebra mod 2^ell (the server's W * x_s, and test references).

Products are computed with float64 BLAS on limbs small enough that every partial sum is an
exact integer (< 2^53), then recombined mod 2^ell in uint64; no overflow, no rounding.
"""

from __future__ import annotations

import numpy as np


def _limbs(a: np.ndarray, ell: int, width: int) -> list[np.ndarray]:
    u = np.asarray(a).astype(np.int64).astype(np.uint64) & np.uint64((1 << ell) - 1)
    out = []
    for s in range(0, ell, width):
        out.append(((u >> np.uint64(s)) & np.uint64((1 << width) - 1)).astype(np.float64))
    return out


def matmul_mod(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """(a @ b) mod 2^ell for integer matrices (signed or residues), exact; uint64 result."""
    kdim = max(a.shape[-1], 1)
    width = max(1, (52 - kdim.bit_length()) // 2)
    la, lb = _limbs(a, ell, width), _limbs(b, ell, width)
    m = np.uint64((1 << ell) - 1)
    acc = np.zeros(a.shape[:-1] + b.shape[1:], np.uint64)
    for i, x in enumerate(la):
        for j, y in enumerate(lb):
            sh = (i + j) * width
            if sh >= ell:
                continue
            part = (x @ y).astype(np.uint64)
            acc += part << np.uint64(sh)
    return acc & m


def pad_nchw(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Zero-pad [B, C, H, W] with ONNX pads (top, left, bottom, right)."""
    t, left, bot, right = pads
    return np.pad(x, ((0, 0), (0, 0), (t, bot), (left, right)))


def im2col(
    x: np.ndarray, kh: int, kw: int, dil: tuple[int, int], stride: tuple[int, int]
) -> np.ndarray:  # noqa: E501
    """Padded [C, Hp, Wp] -> [C*kh*kw, Ho*Wo] (rows ordered c, i, j as in the kernel)."""
    C, Hp, Wp = x.shape  # noqa: N806
    Ho = (Hp - (kh - 1) * dil[0] - 1) // stride[0] + 1  # noqa: N806
    Wo = (Wp - (kw - 1) * dil[1] - 1) // stride[1] + 1  # noqa: N806
    cols = np.empty((C, kh, kw, Ho, Wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dil[0], j * dil[1]
            cols[:, i, j] = x[:, h0 : h0 + stride[0] * (Ho - 1) + 1 : stride[0],
                              w0 : w0 + stride[1] * (Wo - 1) + 1 : stride[1]]  # fmt: skip
    return cols.reshape(C * kh * kw, Ho * Wo)


def conv2d_mod(
    x: np.ndarray,
    w: np.ndarray,
    *,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    group: int,
    ell: int,
) -> np.ndarray:
    """Exact conv2d of [B, C, H, W] by [O, C/group, kh, kw] mod 2^ell (no bias)."""
    xp = pad_nchw(x, pads)
    B = x.shape[0]  # noqa: N806
    O, cg, kh, kw = w.shape  # noqa: N806
    og = O // group
    outs = []
    for n in range(B):
        ys = []
        for g in range(group):
            cols = im2col(xp[n, g * cg : (g + 1) * cg], kh, kw, dilations, strides)
            ys.append(matmul_mod(w[g * og : (g + 1) * og].reshape(og, -1), cols, ell))
        outs.append(np.concatenate(ys, axis=0))
    Ho = (xp.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1  # noqa: N806
    Wo = (xp.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1  # noqa: N806
    return np.stack(outs).reshape(B, O, Ho, Wo)
