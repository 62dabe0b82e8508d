"""OT-based linear layers (CrypTFlow2 SCI_OT, §5 of the CrypTFlow2 paper; DESIGN.md §5).

W*x_c = sum_i 2^i * W*bit_i(x_c) mod 2^ell. For every element j of the client's share and every
bit i, one correlated OT over Z_2^(ell-i) with the client's bit as choice and the server's column
W[:, j] (a vector) as correlation: the client gets s + bit*W[:, j], the server keeps -s. Only
ell-i bits per entry are needed because the term is multiplied by 2^i. Cost: ell COTs per input
element carrying n_out*(ell-i) bits each, so it grows with MACs * ell^2 — the small-layer path.

Per-channel affine flips the roles (the scale is one number per channel, reused for the whole
channel): the server's scale bits are the choices and the client's channel vector x_c[c, :] is
the correlation, so each element costs sum_i (ell - i) = ell(ell+1)/2 bits and a channel costs
only ell OTs. This is the DenseNet BN path (docs/SECURITY.md). Both are scalar-times-vector COT
products over random OTs with long messages (``linear_ot_cot``).

The sign flip (a BatchNorm folded forward, ``compiler/bn_forward.py``) is the same product
with a one-bit scalar: sign[c]·x = x − 2·t[c]·x with t = [sign < 0] the server's choice bit
and the client's channel vector as correlation. Only bit 1 of the scalar 2t is set, so a
channel costs one OT and an element ℓ − 1 bits (the products are needed mod 2^(ℓ−1) only).
"""

from __future__ import annotations

import numpy as np

from . import linear_ot_cot as cot
from .linear_local import im2col, pad_nchw


def _ring(a: np.ndarray, ell: int) -> np.ndarray:
    return np.asarray(a).astype(np.int64).astype(np.uint64) & np.uint64((1 << ell) - 1)


def matmul_x_client(
    party, x: np.ndarray | None, w: np.ndarray | None, n_rows: int, n_in: int, n_out: int, ell: int
) -> np.ndarray:  # noqa: ANN001, E501
    """Shares of x @ w.T mod 2^ell where the client holds x [n_rows, n_in], the server w: one
    scalar-times-vector COT product per entry x[r, j] (its bits choose) with the weight column
    W[:, j] as the vector, summed over j (``linear_ot_cot`` with groups of n_in)."""
    C = n_rows * n_in  # noqa: N806
    if party.role == "server":
        wt = _ring(w, ell).T.copy()  # [n_in, n_out]

        def cols(c0: int, c1: int, e0: int, e1: int) -> np.ndarray:
            return wt[np.arange(c0, c1) % n_in, e0:e1]

        return cot.sender(party, cols, C, n_out, ell, group=n_in)
    return cot.receiver(party, np.asarray(x, np.uint64).reshape(C), n_out, ell, group=n_in)


def gemm(party, x: np.ndarray, w, w_shape, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of W*x_c for x [B, n_in] (the server's x is ignored here)."""
    n_out, n_in = w_shape
    xc = x if party.role == "client" else None
    return matmul_x_client(party, xc, w, x.shape[0], n_in, n_out, ell)


def conv2d(party, x, w, w_shape, strides, pads, dil, group, ell) -> np.ndarray:  # noqa: ANN001
    """Shares of conv(x_c, W) via im2col of the client's share and :func:`matmul_x_client`."""
    O, cg, kh, kw = w_shape  # noqa: N806
    og = O // group
    xp = pad_nchw(x, pads)
    B = x.shape[0]  # noqa: N806
    Ho = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1  # noqa: N806
    Wo = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1  # noqa: N806
    y = np.zeros((B, O, Ho * Wo), np.uint64)
    for n in range(B):
        for g in range(group):
            cols = None
            if party.role == "client":
                cols = im2col(xp[n, g * cg : (g + 1) * cg], kh, kw, dil, strides).T
            wg = None if w is None else w[g * og : (g + 1) * og].reshape(og, -1)
            y[n, g * og : (g + 1) * og] = matmul_x_client(
                party, cols, wg, Ho * Wo, cg * kh * kw, og, ell
            ).T
    return y.reshape(B, O, Ho, Wo)


def affine(party, x: np.ndarray, mul, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of mul[c] * x_c[:, c, :] for x [B, C, M]: the server's scale bits choose, the
    client's channel vector is the correlation (``linear_ot_cot``)."""
    B, C, M = x.shape  # noqa: N806
    if party.role == "client":
        y = cot.sender(party, x.transpose(1, 0, 2).reshape(C, B * M), C, B * M, ell)
    else:
        y = cot.receiver(party, _ring(mul, ell).reshape(C), B * M, ell)
    return y.reshape(C, B, M).transpose(1, 0, 2)


def sign_flip(party, x: np.ndarray, sign, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of sign[c] * x[:, c, :] for x [B, C, M] and a server-private sign in {-1, +1}^C.

    Client (COT sender of its channel vectors x_c[c, :]) gets S, server (receiver of the
    scalar 2t[c], t = [sign < 0]) gets R with S + R = 2t*x_c mod 2^ell. The client's share of
    the result is x_c - S, the server's sign*x_s - R: together sign*x_s + x_c - 2t*x_c =
    sign*x. The client's messages are independent of t; what it receives is nothing (the
    receiver only reads), so it learns nothing about the signs."""
    B, C, M = x.shape  # noqa: N806
    m = np.uint64((1 << ell) - 1)
    if party.role == "client":
        s = cot.sender(party, x.transpose(1, 0, 2).reshape(C, B * M), C, B * M, ell, lo=1, hi=2)
        return (x - s.reshape(C, B, M).transpose(1, 0, 2)) & m
    sg = np.asarray(sign).astype(np.int64).reshape(C)
    two_t = np.where(sg < 0, 2, 0).astype(np.uint64)
    r = cot.receiver(party, two_t, B * M, ell, lo=1, hi=2)
    flipped = x * sg.astype(np.uint64)[None, :, None]
    return (flipped - r.reshape(C, B, M).transpose(1, 0, 2)) & m
