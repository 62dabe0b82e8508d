"""Ring arithmetic, PRG keystream and additive/XOR sharing."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy.stats import chisquare

from twofold.runtime import ring
from twofold.runtime.net import run_pair
from twofold.runtime.prg import PRG
from twofold.runtime.sharing import (
    reconstruct,
    reveal,
    reveal_bits,
    share,
    share_bits,
)


@pytest.mark.parametrize("ell", [1, 2, 31, 32, 63, 64])
def test_signed_roundtrip(ell):
    lo, hi = -(1 << (ell - 1)), (1 << (ell - 1)) - 1
    vals = np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi][: 7 if ell > 1 else 2], dtype=np.int64)
    if ell == 1:
        vals = np.array([-1, 0], dtype=np.int64)
    u = ring.from_signed(vals, ell)
    assert u.dtype == np.uint64
    assert np.all(u <= ring.mask(ell))
    assert np.array_equal(ring.to_signed(u, ell), vals)


def test_ring_ops_match_python_ints():
    ell = 37
    rng = np.random.default_rng(1)  # public test data only
    a = rng.integers(0, 1 << ell, 100, dtype=np.uint64)
    b = rng.integers(0, 1 << ell, 100, dtype=np.uint64)
    m = 1 << ell
    pairs = list(zip(a.tolist(), b.tolist(), strict=True))
    assert ring.add(a, b, ell).tolist() == [(x + y) % m for x, y in pairs]
    assert ring.sub(a, b, ell).tolist() == [(x - y) % m for x, y in pairs]
    assert ring.mul(a, b, ell).tolist() == [(x * y) % m for x, y in pairs]
    assert [int(v) for v in ring.neg(a, ell)] == [(-int(x)) % m for x in a]


@pytest.mark.parametrize("bad", [0, 65, -3, 2.5])
def test_bad_ell(bad):
    with pytest.raises(ValueError, match="ell"):
        ring.mask(bad)


def test_prg_is_aes_ctr_and_continues_across_calls():
    seed = bytes(range(16))
    ref = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(5_000_000))
    p = PRG(seed)
    parts = [p.bytes(7), p.bytes(3 << 20), p.bytes(1), p.bytes(5_000_000 - 7 - (3 << 20) - 1)]
    assert b"".join(bytes(x) for x in parts) == ref
    assert PRG(seed).ring((3, 4), 13).max() < (1 << 13)


def test_prg_seeds_are_fresh_and_validated():
    assert PRG().seed != PRG().seed
    with pytest.raises(ValueError, match="16 bytes"):
        PRG(b"short")


def test_prg_outputs_are_uniform():
    p = PRG(b"\x01" * 16)
    counts = np.bincount(p.bytes(1 << 18), minlength=256)
    assert chisquare(counts).pvalue > 1e-4
    bits = p.bits(100_001)
    assert bits.shape == (100_001,) and set(np.unique(bits)) <= {0, 1}
    assert chisquare(np.bincount(bits, minlength=2)).pvalue > 1e-4
    r = p.ring(1 << 16, 4)
    assert chisquare(np.bincount(r.astype(np.int64), minlength=16)).pvalue > 1e-4


def test_share_reconstruct_and_reveal():
    ell = 20
    x = ring.from_signed(np.arange(-50, 49, dtype=np.int64).reshape(3, 33), ell)
    s0, s1 = share(x, ell, PRG())
    assert np.array_equal(reconstruct(s0, s1, ell), x)
    b = (np.arange(13) % 3 == 0).astype(np.uint8)
    b0, b1 = share_bits(b, PRG())
    assert np.array_equal(b0 ^ b1, b)

    class P:
        def __init__(self, role, chan):
            self.role, self.chan = role, chan

    def server(p):
        return reveal(p, s0, ell, to="client"), reveal(p, s0, ell), reveal_bits(p, b0, "server")

    def client(p):
        return reveal(p, s1, ell, to="client"), reveal(p, s1, ell), reveal_bits(p, b1, "server")

    rs, rc = run_pair(server, client, make=P)
    assert rs[0] is None and np.array_equal(rc[0], x)
    assert np.array_equal(rs[1], x) and np.array_equal(rc[1], x)
    assert np.array_equal(rs[2], b) and rc[2] is None
