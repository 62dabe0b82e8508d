"""Coefficient packings that turn conv / FC / per-channel scaling into polynomial products.

Cheetah (Huang et al., USENIX Security 2022) §3.2-§3.4: with plaintext modulus 2^ell and no
batching, the product of an input polynomial and a weight polynomial in Z_t[X]/(X^N + 1) holds
every wanted inner product in a known coefficient, with no rotations. Each plan below states its
layout and why wanted coefficients never collide with other terms (including negacyclic wraps).
All functions are pure numpy over uint64 residues mod 2^ell, so they are tested without SEAL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .linear_he_seal import N

# Cost model (ms) used to choose block sizes: input ct (encrypt, send, NTT), output ct
# (inverse NTT, re-randomise, flood, mod-switch, send, decrypt) and one ct x pt product + add.
_MS_IN, _MS_OUT, _MS_MUL = 5.0, 8.0, 0.45


def _ring(a: np.ndarray, ell: int) -> np.ndarray:
    """Signed int64 (or uint64) -> residues mod 2^ell as uint64."""
    return np.asarray(a).astype(np.int64).astype(np.uint64) & np.uint64((1 << ell) - 1)


# --------------------------------------------------------------------------------------------
# Conv2d (one group): Cheetah HomConv.
#   input block (C_b x H_b x W_b) -> x(X) = sum x[c,i,j] X^(c*H_b*W_b + i*W_b + j)
#   kernel of output o           -> k(X) = sum w[o,c,l,l'] X^(O - c*H_b*W_b - l*d*W_b - l'*d)
#   with O = (C_b-1)*H_b*W_b + (kh_e-1)*W_b + (kw_e-1); coefficient O + i*W_b + j of x*k is the
#   stride-1 output at (i, j) of the block for i <= H_b-kh_e, j <= W_b-kw_e. The top wanted
#   degree is C_b*H_b*W_b - 1 < N and every wrapped term lands below O, so nothing collides.
# --------------------------------------------------------------------------------------------
@dataclass
class ConvPlan:
    """Blocking of one group's stride-1 convolution of a padded [C, Hp, Wp] input."""

    C: int
    Hp: int
    Wp: int
    O: int
    khe: int  # effective (dilated) kernel extent
    kwe: int
    stride: tuple[int, int]
    Hb: int = 0
    Wb: int = 0
    Cb: int = 0
    h0s: list[int] = field(default_factory=list)
    w0s: list[int] = field(default_factory=list)

    @property
    def Ho1(self) -> int:  # noqa: N802 - stride-1 output height
        return self.Hp - self.khe + 1

    @property
    def Wo1(self) -> int:  # noqa: N802
        return self.Wp - self.kwe + 1

    @property
    def Ho(self) -> int:  # noqa: N802
        return (self.Ho1 - 1) // self.stride[0] + 1

    @property
    def Wo(self) -> int:  # noqa: N802
        return (self.Wo1 - 1) // self.stride[1] + 1

    @property
    def n_cb(self) -> int:
        return -(-self.C // self.Cb)

    @property
    def n_sp(self) -> int:
        return len(self.h0s) * len(self.w0s)

    @property
    def offset(self) -> int:
        return (self.Cb - 1) * self.Hb * self.Wb + (self.khe - 1) * self.Wb + (self.kwe - 1)


def _tiles(n_out: int, ext: int) -> list[tuple[int, int]]:
    """Candidate (block extent, number of blocks) covering n_out stride-1 outputs."""
    out = []
    for nb in range(1, n_out + 1):
        step = -(-n_out // nb)
        if -(-n_out // step) == nb:
            out.append((step + ext - 1, nb))
        if step == 1:
            break
    return out


def plan_conv(
    C: int, Hp: int, Wp: int, O: int, khe: int, kwe: int, stride: tuple[int, int]
) -> ConvPlan:  # noqa: N803, E501
    """Choose (C_b, H_b, W_b) minimising the modelled cost; raise if a kernel cannot fit in N."""
    p = ConvPlan(C, Hp, Wp, O, khe, kwe, stride)
    if khe * kwe > N or p.Ho1 < 1 or p.Wo1 < 1:
        raise ValueError(f"conv2d: kernel {khe}x{kwe} does not fit the input {Hp}x{Wp} or N={N}")
    best = None
    for hb, nh in _tiles(p.Ho1, khe):
        for wb, nw in _tiles(p.Wo1, kwe):
            if hb * wb > N:
                continue
            cb = min(C, N // (hb * wb))
            ncb = -(-C // cb)
            nsp = nh * nw
            cost = ncb * nsp * _MS_IN + O * nsp * _MS_OUT + O * ncb * nsp * _MS_MUL
            if best is None or cost < best[0]:
                best = (cost, hb, wb, cb)
    if best is None:
        raise ValueError(f"conv2d: no blocking of a {Hp}x{Wp} input fits N={N}")
    _, p.Hb, p.Wb, p.Cb = best
    sh, sw = p.Hb - khe + 1, p.Wb - kwe + 1
    p.h0s = list(range(0, p.Ho1, sh))
    p.w0s = list(range(0, p.Wo1, sw))
    return p


def conv_pack_input(p: ConvPlan, x: np.ndarray) -> np.ndarray:
    """Padded input [C, Hp, Wp] -> polynomials uint64[n_cb, n_sp, N]."""
    out = np.zeros((p.n_cb, p.n_sp, N), np.uint64)
    hw = p.Hb * p.Wb
    for cb in range(p.n_cb):
        c0, c1 = cb * p.Cb, min(p.C, (cb + 1) * p.Cb)
        s = 0
        for h0 in p.h0s:
            for w0 in p.w0s:
                blk = x[c0:c1, h0 : h0 + p.Hb, w0 : w0 + p.Wb]
                view = out[cb, s, : p.Cb * hw].reshape(p.Cb, p.Hb, p.Wb)
                view[: blk.shape[0], : blk.shape[1], : blk.shape[2]] = blk
                s += 1
    return out


def conv_pack_weights(p: ConvPlan, w: np.ndarray, dil: tuple[int, int], ell: int) -> np.ndarray:
    """Kernel [O, C, kh, kw] (signed) -> polynomials uint64[O, n_cb, N] mod 2^ell."""
    O, C, kh, kw = w.shape  # noqa: N806
    wr = _ring(w, ell)
    out = np.zeros((O, p.n_cb, N), np.uint64)
    hw = p.Hb * p.Wb
    cc = np.arange(p.Cb)[:, None, None]
    ll = np.arange(kh)[None, :, None] * dil[0]
    lk = np.arange(kw)[None, None, :] * dil[1]
    idx = p.offset - cc * hw - ll * p.Wb - lk  # [Cb, kh, kw]
    for cb in range(p.n_cb):
        c0, c1 = cb * p.Cb, min(C, (cb + 1) * p.Cb)
        sub = idx[: c1 - c0].reshape(-1)
        out[:, cb, sub] = wr[:, c0:c1].reshape(O, -1)
    return out


def conv_useful(p: ConvPlan) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spatial block: (coefficient indices, flat output indices into [Ho*Wo])."""
    res = []
    sh, sw = p.stride
    for h0 in p.h0s:
        rows = [r for r in range(h0, min(h0 + p.Hb - p.khe + 1, p.Ho1)) if r % sh == 0]
        for w0 in p.w0s:
            cols = [c for c in range(w0, min(w0 + p.Wb - p.kwe + 1, p.Wo1)) if c % sw == 0]
            r = np.asarray(rows, np.int64)[:, None]
            c = np.asarray(cols, np.int64)[None, :]
            coef = p.offset + (r - h0) * p.Wb + (c - w0)
            flat = (r // sh) * p.Wo + (c // sw)
            res.append((coef.reshape(-1), flat.reshape(-1)))
    return res


# --------------------------------------------------------------------------------------------
# Fully connected: Cheetah HomFC. x(X) = sum_j x_j X^j (j < n_ib);
#   W(X) = sum_o sum_j w[o,j] X^(o*n_ib + n_ib-1-j); coefficient o*n_ib + n_ib-1 = sum_j w[o,j]x_j.
#   A term x_j' w[o',j] lands at o'*n_ib + n_ib-1 + (j'-j) with |j'-j| < n_ib, so only o'=o, j'=j
#   hits a wanted slot; with n_ob*n_ib <= N wrapped terms land below n_ib-1.
# --------------------------------------------------------------------------------------------
@dataclass
class FCPlan:
    n_in: int
    n_out: int
    nib: int
    nob: int

    @property
    def n_ib(self) -> int:
        return -(-self.n_in // self.nib)

    @property
    def n_obk(self) -> int:
        return -(-self.n_out // self.nob)


def plan_fc(n_in: int, n_out: int) -> FCPlan:
    best = None
    for nib in sorted({min(n_in, N >> s) for s in range(0, 14)}):
        nob = max(1, min(n_out, N // nib))
        nin_ct, nout_ct = -(-n_in // nib), -(-n_out // nob)
        cost = nin_ct * _MS_IN + nout_ct * _MS_OUT + nin_ct * nout_ct * _MS_MUL
        if best is None or cost < best[0]:
            best = (cost, nib, nob)
    return FCPlan(n_in, n_out, best[1], best[2])


def fc_pack_input(p: FCPlan, x: np.ndarray) -> np.ndarray:
    out = np.zeros((p.n_ib, N), np.uint64)
    for b in range(p.n_ib):
        seg = x[b * p.nib : (b + 1) * p.nib]
        out[b, : seg.size] = seg
    return out


def fc_pack_weights(p: FCPlan, w: np.ndarray, ell: int) -> np.ndarray:
    """W [n_out, n_in] -> uint64[n_obk, n_ib, N]."""
    wr = _ring(w, ell)
    out = np.zeros((p.n_obk, p.n_ib, N), np.uint64)
    for ob in range(p.n_obk):
        o0, o1 = ob * p.nob, min(p.n_out, (ob + 1) * p.nob)
        for ib in range(p.n_ib):
            j0, j1 = ib * p.nib, min(p.n_in, (ib + 1) * p.nib)
            oo = np.arange(o1 - o0)[:, None]
            jj = np.arange(j1 - j0)[None, :]
            out[ob, ib, (oo * p.nib + p.nib - 1 - jj).reshape(-1)] = wr[o0:o1, j0:j1].reshape(-1)
    return out


def fc_useful(p: FCPlan, ob: int) -> tuple[np.ndarray, np.ndarray]:
    o0, o1 = ob * p.nob, min(p.n_out, (ob + 1) * p.nob)
    oo = np.arange(o1 - o0)
    return oo * p.nib + p.nib - 1, o0 + oo


# --------------------------------------------------------------------------------------------
# Per-channel scaling (BN affine): channel c of a block at X^(c*M) (M values), scale poly
#   g(X) = sum_c gamma_c X^(c*C_b*M). A term (input channel c', scale c) lands at c'*M + c*C_b*M
#   + k, a mixed-radix number (k < M, c' < C_b, c < C_b) below C_b^2*M <= N: all distinct, and
#   the diagonal c' = c holds gamma_c * x_c at c*(C_b+1)*M + k.
# --------------------------------------------------------------------------------------------
@dataclass
class AffinePlan:
    C: int
    M: int  # values per channel
    Cb: int
    mchunk: int  # values per channel per polynomial (M if M <= N)

    @property
    def n_mc(self) -> int:
        return -(-self.M // self.mchunk)

    @property
    def n_cb(self) -> int:
        return -(-self.C // self.Cb)


def plan_affine(C: int, M: int) -> AffinePlan:
    if M >= N:
        return AffinePlan(C, M, 1, N)
    cb = max(1, min(C, math.isqrt(N // M)))
    return AffinePlan(C, M, cb, M)


def affine_pack_input(p: AffinePlan, x: np.ndarray) -> np.ndarray:
    """x [C, M] -> uint64[n_cb, n_mc, N]."""
    out = np.zeros((p.n_cb, p.n_mc, N), np.uint64)
    for cb in range(p.n_cb):
        c0, c1 = cb * p.Cb, min(p.C, (cb + 1) * p.Cb)
        for mc in range(p.n_mc):
            seg = x[c0:c1, mc * p.mchunk : (mc + 1) * p.mchunk]
            view = out[cb, mc, : p.Cb * p.mchunk].reshape(p.Cb, p.mchunk)
            view[: seg.shape[0], : seg.shape[1]] = seg
    return out


def affine_pack_weights(p: AffinePlan, g: np.ndarray, ell: int) -> np.ndarray:
    """gamma [C] -> uint64[n_cb, N]."""
    gr = _ring(g, ell)
    out = np.zeros((p.n_cb, N), np.uint64)
    for cb in range(p.n_cb):
        c0, c1 = cb * p.Cb, min(p.C, (cb + 1) * p.Cb)
        out[cb, np.arange(c1 - c0) * p.Cb * p.mchunk] = gr[c0:c1]
    return out


def affine_useful(p: AffinePlan, cb: int, mc: int) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, flat indices into [C*M]) of block (cb, mc)."""
    c0, c1 = cb * p.Cb, min(p.C, (cb + 1) * p.Cb)
    m0, m1 = mc * p.mchunk, min(p.M, (mc + 1) * p.mchunk)
    cc = np.arange(c1 - c0)[:, None]
    kk = np.arange(m1 - m0)[None, :]
    coef = cc * (p.Cb + 1) * p.mchunk + kk
    flat = (c0 + cc) * p.M + m0 + kk
    return coef.reshape(-1), flat.reshape(-1)


def negacyclic_mul(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    """Reference product in Z_{2^ell}[X]/(X^N+1) (exact; for tests of the packings)."""
    # Exact via 16-bit limbs of b and float64 FFT-free convolution in int64 blocks.
    m = (1 << ell) - 1
    res = np.zeros(N, np.uint64)
    nz = np.nonzero(b)[0]
    for j in nz:
        shifted = np.roll(a, j)
        shifted[:j] = (np.uint64(0) - shifted[:j]) & np.uint64(m)
        res = (res + shifted * b[j]) & np.uint64(m)
    return res
