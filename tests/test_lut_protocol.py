"""The 2PC table lookup (runtime/protocols/lut.py) sends each piece's intercept and slope as
k-bit numbers (k = the table span's bits + 1) packed into one OT message and lifts them to
Z_2^ell with the top bit known zero: bit for bit ir/lut.evaluate, for tables with negative
entries and slopes (tanh, ELU: the faithful truncation), the sigmoid (known-MSB) and across
rings."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from twofold.ir import lut
from twofold.runtime.net import run_pair
from twofold.runtime.ot.otpack import OTPack
from twofold.runtime.protocols.lut import lut as lut_protocol
from twofold.runtime.session import Party


def _party(role: str, chan):  # noqa: ANN001, ANN202
    p = Party(role, chan, setup_ot=False)
    p.ot = OTPack(chan, role)
    return p


CASES = [("sigmoid", 30, 11), ("tanh", 24, 9), ("elu_neg", 40, 12), ("sigmoid", 18, 11)]


@pytest.mark.parametrize(("fn", "ell", "scale"), CASES)
def test_lut_two_party_equals_cleartext(fn, ell, scale):
    rng = np.random.default_rng(ell)
    lo, hi = lut.bounds(fn, scale)
    x = rng.integers(2 * lo, 2 * hi, 1200, dtype=np.int64)  # both clamps and the whole domain
    x[:4] = [lo, hi - 1, lo - 1, hi]
    m = (1 << ell) - 1
    x_ring = x.view(np.uint64) & np.uint64(m)
    r = np.array([secrets.randbits(ell) for _ in range(x.size)], np.uint64)
    x0, x1 = (x_ring - r) & np.uint64(m), r
    tables = lut.table(fn, 1.0, scale)
    ks = [lut.entry_bits(t)[0] for t in tables]
    assert max(ks) < ell and sum(ks) <= 64  # the narrow path: one packed message, lifted
    args = (ell, tables, lo, hi, lut.shift(fn, scale))

    def run(xs):  # noqa: ANN001, ANN202
        return lambda p: lut_protocol(p, xs, *args)

    s, c = run_pair(run(x0), run(x1), make=_party)
    got = ((s + c) & np.uint64(m)).astype(np.int64)
    want = lut.evaluate(x, fn, 1.0, scale) & m
    assert np.array_equal(got, want)
