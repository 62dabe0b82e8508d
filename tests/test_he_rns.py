"""The server's numpy HE arithmetic: RNS helpers, re-randomisers, coefficient-domain HomConv."""

from __future__ import annotations

import numpy as np
import pytest
import seal

from twofold.runtime.linear import linear_he as he
from twofold.runtime.linear import linear_he_coef as coef
from twofold.runtime.linear import linear_he_pack as pk
from twofold.runtime.linear import rns
from twofold.runtime.linear.linear_he_seal import (
    N,
    coeffs_from_plain,
    ct_from_array,
    he_params,
)
from twofold.runtime.linear.linear_he_seeded import SeededEncryptor, uniform_residues
from twofold.runtime.linear.linear_he_zero import ZeroEncryptor, centred_binomial, ternary
from twofold.runtime.prg import PRG

RNG = np.random.default_rng(7)  # public test data only
PRIMES = (4503599627124737, 1152921504606748673, 2**61 - 1, 65537)


def _obj(a: np.ndarray) -> np.ndarray:
    return a.astype(object)


@pytest.mark.parametrize("q", PRIMES)
def test_modular_helpers_match_python_integers(q: int) -> None:
    a = RNG.integers(0, q, 4000, dtype=np.uint64)
    b = RNG.integers(0, q, 4000, dtype=np.uint64)
    assert (_obj(rns.add(a, b, q)) == (_obj(a) + _obj(b)) % q).all()
    assert (_obj(rns.sub(a, b, q)) == (_obj(a) - _obj(b)) % q).all()
    small = RNG.integers(0, 1 << 48, 4000, dtype=np.uint64)
    small[:3] = (1 << 48) - 1
    assert (_obj(rns.mul_small(small, q - 1, q)) == _obj(small) * (q - 1) % q).all()
    s = RNG.integers(-(1 << 40), 1 << 40, 4000)
    assert (_obj(rns.from_signed(s, q)) == _obj(s) % q).all()
    lim = min(q - 1, 1 << 40)
    s = RNG.integers(-lim, lim, 4000)
    assert (_obj(rns.from_small(s, q)) == _obj(s) % q).all()


@pytest.mark.parametrize("q", PRIMES[:3])
@pytest.mark.parametrize("b", [32, 21, 12])  # one-step and Horner reductions
def test_limb_products_reduce_exactly(q: int, b: int) -> None:
    n_l = -(-q.bit_length() // b)
    c = RNG.integers(-(1 << 52), 1 << 52, (5, n_l, 64))
    ref = sum(_obj(c[:, i]) * (1 << (b * i)) for i in range(n_l)) % q
    assert (_obj(rns.reduce_limbs(c, b, q)) == ref).all()
    w = RNG.integers(-(1 << 15), 1 << 15, (9, 200))
    v = RNG.integers(0, q, (200, 1500), dtype=np.uint64)
    lb = min(rns.limb_bits(int(np.abs(w).sum(1).max())), b)
    parts = np.stack([w.astype(np.float64) @ limb for limb in rns.limbs(v, lb, q)], axis=1)
    got = rns.reduce_limbs(parts.astype(np.int64), lb, q)  # W @ V mod q, as linear_he_coef does
    assert (_obj(got) == (_obj(w) @ _obj(v)) % q).all()
    with pytest.raises(ValueError, match="too large"):
        rns.limb_bits(1 << 50)


def negacyclic_shift(p: np.ndarray, s: int, q: int) -> np.ndarray:
    """Reference: X^s * p mod (X^N + 1, q) along the last axis (wrapped terms change sign)."""
    if s == 0:
        return p.copy()
    out = np.empty_like(p)
    out[..., s:] = p[..., :-s]
    w = p[..., -s:]
    out[..., :s] = np.where(w == 0, w, np.uint64(q) - w)
    return out


def test_negacyclic_shift_is_multiplication_by_a_monomial() -> None:
    q = PRIMES[1]
    p = RNG.integers(0, q, (2, 16), dtype=np.uint64)
    for s in (0, 1, 5, 15):
        got = negacyclic_shift(p, s, q)
        for i in range(16):
            j = i + s
            want = p[:, i] if j < 16 else (q - p[:, i]) % q
            assert np.array_equal(got[:, j % 16], want)


def test_noise_samplers_have_the_right_support_and_spread() -> None:
    prg = PRG()
    u = ternary(prg, (50_000,))
    assert set(np.unique(u)) == {-1, 0, 1}
    assert abs((u == 0).mean() - 1 / 3) < 0.01
    e = centred_binomial(prg, (200_000,))
    assert np.abs(e).max() <= 21 and abs(e.mean()) < 0.05
    assert 3.1 < e.std() < 3.4  # eta = 21: sd 3.24, the width SEAL uses (3.2)


def test_encryptions_of_zero_decrypt_to_zero_and_are_fresh() -> None:
    hp = he_params(32)
    sk = seal.KeyGenerator(hp.ctx).secret_key()
    dec = seal.Decryptor(hp.ctx, sk)
    a = uniform_residues(PRG(), hp.q, 1)  # the public key the client sends: (p0, a)
    p0 = SeededEncryptor(hp, sk).encrypt(a, np.zeros((1, N), np.uint64), PRG())
    ze = ZeroEncryptor(hp, np.stack([p0[0], a[0]]))
    z = ze.sample(PRG(), 3)
    for i in range(3):
        ct = ct_from_array(hp, z[i])
        hp.evaluator.mod_switch_to_inplace(ct, hp.last_parms)
        assert not coeffs_from_plain(dec.decrypt(ct)).any()
        assert dec.invariant_noise_budget(ct) > 5
    assert not np.array_equal(z[0, 1], z[1, 1])  # c1 differs: fresh u each time


def test_flood_is_uniform_at_the_data_level_and_small_at_q0() -> None:
    """F in [-2^b, 2^b) by CRT, spread over the whole range; b meets the circuit-privacy
    budget (2^-40 over 2^20 inferences of 2^25 coefficients) and F/(q_1 q_2) < 2^15."""
    hp = he_params(32)
    f = he.flood_residues(PRG(), hp, 2)
    q0, q1, q2 = hp.q
    Q = q0 * q1 * q2  # noqa: N806
    b = he.flood_bits(hp)
    assert b == 134 and he.privacy_bound_bits(hp) >= 40
    assert (1 << b) // (q1 * q2) < 1 << he.FLOOD_AT_Q0_BITS
    seen = []
    for i in range(0, N, 409):
        r = [int(f[1, j, i]) for j in range(3)]
        v = sum(rj * (Q // qj) * pow(Q // qj, -1, qj) for rj, qj in zip(r, hp.q, strict=True)) % Q
        v = v - Q if v > Q // 2 else v
        assert -(1 << b) <= v < (1 << b)
        seen.append(v)
    assert max(seen) > 1 << (b - 4) and min(seen) < -(1 << (b - 4))


def test_session_reveal_budget_is_enforced() -> None:
    class P:  # a stand-in party object (only its identity keys the per-session state)
        pass

    p = P()
    he.count_revealed(p, 1 << 24)
    he.count_revealed(p, 1 << 24)
    with pytest.raises(ValueError, match="circuit-privacy budget"):
        he.count_revealed(p, 1)


def test_coefficient_domain_conv_equals_the_polynomial_products() -> None:
    """W @ (shifted inputs) == sum over blocks of x_j * k_oj, residue for residue."""
    hp = he_params(32)
    plan = pk.plan_conv(5, 9, 9, 3, 3, 3, (1, 1))
    w = RNG.integers(-(1 << 12), 1 << 12, (3, 5, 3, 3))
    km = coef.kernel_matrix(plan, w, (1, 1), 32)
    cts = RNG.integers(0, hp.q[0], (plan.n_cb, plan.n_sp, 2, 1, N), dtype=np.uint64)
    q = hp.q[:1]
    got = np.concatenate(list(coef.conv_outputs(km, cts, q, batch=2)))
    useful = [u[0] for u in pk.conv_useful(plan)]
    part = np.concatenate(list(coef.conv_outputs(km, cts, q, useful)))
    kp = pk.conv_pack_weights(plan, w, (1, 1), 32)  # the kernel polynomials mod 2^32
    kc = kp.astype(np.int64)
    kc = np.where(kc >= 1 << 31, kc - (1 << 32), kc)  # centred, as BFV lifts them

    def product(o: int, sp: int, poly: int) -> np.ndarray:  # sum_cb ct_cb * k_o,cb, term by term
        acc = np.zeros(N, object)
        for cb in range(plan.n_cb):
            for d in np.flatnonzero(kc[o, cb]):
                sh = negacyclic_shift(cts[cb, sp, poly, 0], int(d), q[0])
                acc = (acc + _obj(sh) * int(kc[o, cb, d])) % q[0]
        return acc

    for o in range(3):
        for sp in range(plan.n_sp):
            assert (_obj(got[o * plan.n_sp + sp, 1, 0]) == product(o, sp, 1)).all()
            c0 = product(o, sp, 0)
            assert (_obj(got[o * plan.n_sp + sp, 0, 0]) == c0).all()
            u = useful[sp]
            assert (_obj(part[o * plan.n_sp + sp, 0, 0, u]) == c0[u]).all()
            assert np.array_equal(part[o * plan.n_sp + sp, 1], got[o * plan.n_sp + sp, 1])
    assert km.l1_max == int(np.abs(w).sum(axis=(1, 2, 3)).max())


@pytest.mark.parametrize("ell", [32, 40])
def test_seeded_encryptions_decrypt_with_seals_own_decryptor(ell: int) -> None:
    """c1 expanded from the seed by anyone, c0 from the client: a valid BFV ciphertext of m."""
    hp = he_params(ell)
    kg = seal.KeyGenerator(hp.ctx)
    dec = seal.Decryptor(hp.ctx, kg.secret_key())
    enc = SeededEncryptor(hp, kg.secret_key())
    m = PRG().ring((3, N), ell)  # odd count: one SEAL product carries an input twice
    seed = bytes(range(16))
    c0 = enc.encrypt(uniform_residues(PRG(seed), hp.q, 3), m, PRG())
    a = uniform_residues(PRG(seed), hp.q, 3)  # what the server derives
    for i in range(3):
        ct = ct_from_array(hp, np.stack([c0[i], a[i]]))
        assert np.array_equal(coeffs_from_plain(dec.decrypt(ct)), m[i])
        assert dec.invariant_noise_budget(ct) > 100
    assert (a < np.asarray(hp.q, np.uint64)[:, None]).all()
    assert not np.array_equal(a, uniform_residues(PRG(bytes(16)), hp.q, 3))
    assert he.packed_c0_size(hp) == sum(-(-N * q.bit_length() // 8) for q in hp.q)
