"""Max and MaxPool over additively shared values (CrypTFlow2 §5: a tree of comparisons).

max(a, b) = b + DReLU(a - b)·(a - b): one DReLU and one multiplexer.  A window of K values is
reduced pairwise in ceil(log2 K) rounds of comparisons, all windows and pairs of one level in
one batched call.  Padding positions are replaced by a valid element of the same window, so
padding never wins (ONNX semantics).  Exactness needs a - b not to wrap: the compiler keeps
one bit of margin (|x| < 2^(ell-2)).

Separable windows: the max over a kh x kw window is the max over its kh rows of each row's max
over kw columns, and overlapping windows share those row maxima. So a pool can first reduce
every input row the windows use along the width (kw - 1 comparisons per row and output column),
then the results along the height (kh - 1 per output): for DenseNet's 3x3/2 pool 25% fewer
comparisons than the (kh·kw - 1) per output of the whole window, for a 3x3/1 pool half. Max is
exact and associative, so both orders give the same value; the plan with fewer comparisons is
taken, unless it would add a round (public shapes only: both parties choose alike).
"""

from __future__ import annotations

import math

import numpy as np

from ._util import as_ring, wrap
from .drelu import drelu
from .mux import mux


def max_(party, a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of the elementwise signed maximum of a and b."""
    d = wrap(as_ring(a, ell) - as_ring(b, ell), ell)
    return wrap(b + mux(party, drelu(party, d, ell), d, ell), ell)


def max_reduce(party, v: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of the maximum over axis 0 of v (K, M), by a pairwise tree."""
    rows = as_ring(v, ell, "max input")
    while rows.shape[0] > 1:
        p = rows.shape[0] // 2
        m = max_(party, rows[0 : 2 * p : 2].reshape(-1), rows[1 : 2 * p : 2].reshape(-1), ell)
        m = m.reshape(p, -1)
        rows = np.concatenate([m, rows[2 * p :]]) if rows.shape[0] % 2 else m
    return rows[0]


def _window_index(size: int, k: int, stride: int, pad: int, dil: int, out: int) -> np.ndarray:
    """Input index (or -1 for padding) of each (output position, kernel offset) on one axis."""
    pos = np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :] * dil
    return np.where((pos >= 0) & (pos < size), pos, -1)


def pool_output_size(
    size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int = 1, ceil_mode: bool = False
) -> int:
    """ONNX MaxPool output length along one axis."""
    span = size + pad_lo + pad_hi - ((k - 1) * dil + 1)
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1  # a last window starting in the right padding is dropped
    return out


def maxpool(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    kernel: tuple[int, int] | list[int],
    strides: tuple[int, int] | list[int] | None = None,
    pads: tuple[int, int, int, int] | list[int] | None = None,
    *,
    dilations: tuple[int, int] | list[int] | None = None,
    ceil_mode: bool = False,
    separable: bool | None = None,
) -> np.ndarray:
    """ONNX MaxPool of shares x (N, C, H, W); pads = [top, left, bottom, right]. ``separable``:
    rows then columns (True), whole windows (False), or the one with fewer comparisons (None,
    see the module docstring)."""
    x = as_ring(x, ell, "maxpool input")
    if x.ndim != 4:
        raise ValueError(f"maxpool expects an NCHW tensor, got shape {x.shape}")
    kh, kw = (int(k) for k in kernel)
    sh, sw = (int(s) for s in (strides or (1, 1)))
    pt, pl, pb, pr = (int(p) for p in (pads or (0, 0, 0, 0)))
    dh, dw = (int(d) for d in (dilations or (1, 1)))
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise ValueError(f"maxpool: bad kernel/strides/pads/dilations {kernel} {strides} {pads}")
    if max(pt, pb) >= (kh - 1) * dh + 1 or max(pl, pr) >= (kw - 1) * dw + 1:
        raise ValueError(f"maxpool: pads {pads} must be smaller than the kernel {kernel}")
    n, c, h, w = x.shape
    oh = pool_output_size(h, kh, sh, pt, pb, dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pl, pr, dw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"maxpool: kernel {kernel} larger than the padded input {x.shape}")
    iy = _axis_windows(h, kh, sh, pt, dh, oh)  # (oh, kh)
    ix = _axis_windows(w, kw, sw, pl, dw, ow)  # (ow, kw)
    if separable is None:
        separable = _separable_is_cheaper(iy, ix)
    if separable:  # every row the windows use, reduced along the width; then the height
        rows = np.unique(iy)
        v = x[:, :, rows, :][:, :, :, ix]  # (n, c, rows, ow, kw)
        m = max_reduce(party, np.moveaxis(v, 4, 0).reshape(kw, -1), ell)
        v = m.reshape(n, c, rows.size, ow)[:, :, np.searchsorted(rows, iy), :]  # (n,c,oh,kh,ow)
        return max_reduce(party, np.moveaxis(v, 3, 0).reshape(kh, -1), ell).reshape(n, c, oh, ow)
    flat = (iy[:, None, :, None] * w + ix[None, :, None, :]).reshape(oh * ow, kh * kw)
    vals = x.reshape(n * c, h * w)[:, flat]  # (nc, oh*ow, K)
    vals = np.ascontiguousarray(np.moveaxis(vals, 2, 0)).reshape(kh * kw, -1)
    return max_reduce(party, vals, ell).reshape(n, c, oh, ow)


def _axis_windows(size: int, k: int, stride: int, pad: int, dil: int, out: int) -> np.ndarray:
    """The input index of each (output position, kernel offset) on one axis, a padding offset
    replaced by a valid index of the same window (padding never wins a max)."""
    idx = _window_index(size, k, stride, pad, dil, out)
    if (idx < 0).all(axis=1).any():
        raise ValueError("maxpool: a window lies entirely in the padding")
    first = idx[np.arange(out), np.argmax(idx >= 0, axis=1)]
    return np.where(idx >= 0, idx, first[:, None])


def _separable_is_cheaper(iy: np.ndarray, ix: np.ndarray) -> bool:
    """Whether rows-then-columns takes fewer comparisons than whole windows, in no more
    rounds (comparisons per channel; ceil(log2 K) rounds to reduce K values)."""
    (oh, kh), (ow, kw) = iy.shape, ix.shape
    whole = (kh * kw - 1) * oh * ow
    split = (kw - 1) * np.unique(iy).size * ow + (kh - 1) * oh * ow
    depth = lambda k: (k - 1).bit_length()  # noqa: E731 - ceil(log2 k)
    return split < whole and depth(kh) + depth(kw) <= depth(kh * kw)
