"""Exact integer conv/matmul mod 2^ℓ through float64 limbs, against a slow Python-int reference."""

import numpy as np
import pytest

from twofold.backends.exact_linalg import (
    conv2d_exact,
    matmul_exact,
    plan_widths,
    split_limbs,
    to_ring,
    to_signed,
)


def _rand_ring(rng, shape, ell):
    """Uniform residues over the full ring Z_2^ℓ (test data only, not secret)."""
    hi = rng.integers(0, 1 << 32, size=shape, dtype=np.uint64)
    lo = rng.integers(0, 1 << 32, size=shape, dtype=np.uint64)
    x = (hi << np.uint64(32)) | lo
    return x & np.uint64((1 << ell) - 1) if ell < 64 else x


def _ref_matmul(a, b, ell):
    ai = a.astype(object)
    bi = b.astype(object)
    return np.array((ai @ bi) % (1 << ell), dtype=np.uint64)


def _ref_conv(x, w, stride, pad, group, ell):
    _, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad), dtype=object)
    xp[:, pad : pad + h, pad : pad + wd] = x[0].astype(object)
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((1, co, oh, ow), dtype=object)
    per = co // group
    for o in range(co):
        gi = o // per
        for i in range(oh):
            for j in range(ow):
                win = xp[
                    gi * cg : (gi + 1) * cg,
                    i * stride : i * stride + kh,
                    j * stride : j * stride + kw,
                ]
                out[0, o, i, j] = int((win * w[o].astype(object)).sum()) % (1 << ell)
    return out.astype(np.uint64)


@pytest.mark.parametrize("ell", [64, 37, 32, 17])
def test_matmul_full_ring(ell):
    rng = np.random.default_rng(ell)
    a = _rand_ring(rng, (5, 300), ell)
    b = _rand_ring(rng, (300, 7), ell)
    got = matmul_exact(to_signed(a, ell), to_signed(b, ell), ell)
    assert np.array_equal(got, _ref_matmul(a, b, ell))


@pytest.mark.parametrize(("ell", "group"), [(64, 1), (32, 2), (41, 4)])
def test_conv_full_ring(ell, group):
    rng = np.random.default_rng(ell + group)
    x = _rand_ring(rng, (1, 4, 6, 5), ell)
    w = _rand_ring(rng, (4, 4 // group, 3, 3), ell)
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": group}
    got = conv2d_exact(to_signed(x, ell), to_signed(w, ell), attrs, (3, 3), ell)
    assert np.array_equal(got, _ref_conv(x, w, 2, 1, group, ell))


def test_small_values_take_one_float_product():
    assert plan_widths(2**20, 2**15, 1152) == (None, None)
    la, lb = plan_widths(2**63, 2**15, 1152)
    assert lb is None and la is not None and la + 15 + 11 <= 54


def test_limbs_recombine_mod_ring():
    rng = np.random.default_rng(1)
    x = to_signed(_rand_ring(rng, (1000,), 64), 64)
    total = np.zeros(1000, dtype=np.uint64)
    for shift, d in split_limbs(x, 64, 13):
        assert np.abs(d).max() <= 2**12
        total += to_ring(d.astype(np.int64), 64) << np.uint64(shift)
    assert np.array_equal(total, x.view(np.uint64))
