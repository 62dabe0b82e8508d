"""Linear layers with server-private weights: packings, exactness of both protocols, flooding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from twofold.runtime import bitpack
from twofold.runtime.errors import PeerError
from twofold.runtime.linear import linear as L
from twofold.runtime.linear import linear_he as he
from twofold.runtime.linear import linear_he_pack as pk
from twofold.runtime.linear.linear_he_seal import N, coeffs_from_plain, ct_from_array, he_params
from twofold.runtime.prg import PRG
from twofold.runtime.session import run_parties

RNG = np.random.default_rng(20240611)  # public test data only


# ---- references in Python integers ------------------------------------------------------------
def ref_conv(x, w, b, strides, pads, dil, group, ell):  # noqa: ANN001, ANN201
    B, C, H, W = x.shape  # noqa: N806
    O, cg, kh, kw = w.shape  # noqa: N806
    t, lft, bot, rgt = pads
    xp = np.zeros((B, C, H + t + bot, W + lft + rgt), object)
    xp[:, :, t : t + H, lft : lft + W] = x.astype(object)
    Ho = (H + t + bot - (kh - 1) * dil[0] - 1) // strides[0] + 1  # noqa: N806
    Wo = (W + lft + rgt - (kw - 1) * dil[1] - 1) // strides[1] + 1  # noqa: N806
    og = O // group
    y = np.zeros((B, O, Ho, Wo), object)
    for n in range(B):
        for o in range(O):
            g = o // og
            for i in range(Ho):
                for j in range(Wo):
                    s = 0 if b is None else int(b[o])
                    for c in range(cg):
                        for a in range(kh):
                            for e in range(kw):
                                xv = xp[
                                    n,
                                    g * cg + c,
                                    i * strides[0] + a * dil[0],
                                    j * strides[1] + e * dil[1],
                                ]  # noqa: E501
                                s += int(xv) * int(w[o, c, a, e])
                    y[n, o, i, j] = s % (1 << ell)
    return y.astype(np.uint64)


def ref_gemm(x, w, b, ell):  # noqa: ANN001, ANN201
    y = x.astype(object) @ w.T.astype(object) + b.astype(object)[None, :]
    return (y % (1 << ell)).astype(np.uint64)


def ref_affine(x, g, a, ell):  # noqa: ANN001, ANN201
    shp = (1, -1) + (1,) * (x.ndim - 2)
    y = x.astype(object) * g.astype(object).reshape(shp) + a.astype(object).reshape(shp)
    return (y % (1 << ell)).astype(np.uint64)


def share(x: np.ndarray, ell: int) -> tuple[np.ndarray, np.ndarray]:
    xs = PRG().ring(x.shape, ell)
    return xs, (x - xs) & np.uint64((1 << ell) - 1)


def rand_ring(shape, ell):  # noqa: ANN001, ANN201
    return PRG().ring(shape, ell)


def wts(shape, bits=14):  # noqa: ANN001, ANN201
    return RNG.integers(-(1 << bits), 1 << bits, shape)


# name, x shape, w shape, strides, pads, dilations, group
CONVS = [
    ("3x3_pad_stride2", (1, 3, 7, 6), (4, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ("dilated_asym_pad", (1, 2, 6, 7), (3, 2, 2, 3), (1, 2), (0, 2, 1, 0), (2, 1), 1),
    ("grouped", (1, 4, 5, 5), (6, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    ("depthwise", (1, 3, 6, 6), (3, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),
    ("1x1_stride2", (2, 5, 6, 6), (4, 5, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ("7x7_tiled", (1, 1, 100, 100), (2, 1, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),
    # 3 channels per block: NTT plaintexts, except where zeros leave <= 2 terms (monomials)
    ("1x1_mixed_sparse", (1, 6, 50, 50), (2, 6, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    # 24 channels x 9 taps per kernel polynomial: SEAL's NTT products, not the coefficient path
    ("3x3_many_terms", (1, 24, 5, 5), (3, 24, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    # polyphase form: stride (2, 3) with a 5x4 kernel, odd sizes, asymmetric pads, groups
    ("phase_asym_grouped", (2, 4, 11, 13), (4, 2, 5, 4), (2, 3), (2, 1, 1, 2), (1, 1), 2),
]


def test_both_he_conv_paths_are_exercised() -> None:
    """The shape classes above reach both server paths: BLAS on shifted ciphertexts for kernels
    with few terms per polynomial, SEAL NTT products for many."""
    from twofold.runtime.linear import linear_he_coef as coef

    paths = set()
    for _, xs, ws, st, pd, dl, g in CONVS:
        lay = L.conv_he_layout(xs, ws, st, pd, dl, g)
        paths.add(coef.prefer_coef(lay.plan, lay.kh, lay.kw))
    assert paths == {True, False}


def _cases(ell: int, method: str):  # noqa: ANN202
    cases = []
    for name, xs, ws, st, pd, dl, g in CONVS:
        if name == "7x7_tiled":
            continue  # too slow for the Python-int reference; covered by test_tiled_conv
        if name == "1x1_mixed_sparse" and method == "ot":
            continue  # exercises the HE plaintext kinds; OT is covered by the other shapes
        w = wts(ws)
        if name == "1x1_mixed_sparse":
            w[0, 3:5] = 0
        cases.append(("conv", name, rand_ring(xs, ell), w, wts(ws[:1], 20), st, pd, dl, g))
    cases.append(("gemm", "fc", rand_ring((2, 33), ell), wts((5, 33)), wts((5,), 30)))
    cases.append(("affine", "bn4d", rand_ring((1, 6, 3, 4), ell), wts((6,)), wts((6,), 25)))
    cases.append(("affine", "bn2d", rand_ring((2, 3), ell), wts((3,), ell - 2), wts((3,), 25)))
    cases.append(("affine", "bn_big_hw", rand_ring((1, 2, 50, 60), ell), wts((2,)), wts((2,))))
    return cases


def _run(p, case, x, ell, method, cache=None):  # noqa: ANN001, ANN202
    kind, name, _, w, b, *rest = case
    srv = p.role == "server"
    if kind == "conv":
        st, pd, dl, g = rest
        return L.conv2d(p, x, w if srv else None, b if srv else None, w_shape=w.shape,
                        strides=st, pads=pd, dilations=dl, group=g, ell=ell, method=method,
                        cache=cache, name=name)  # fmt: skip
    if kind == "gemm":
        return L.gemm(p, x, w if srv else None, b if srv else None, w_shape=w.shape, ell=ell,
                      method=method, cache=cache, name=name)  # fmt: skip
    return L.affine(p, x, w if srv else None, b if srv else None, ell=ell, method=method,
                    cache=cache, name=name)  # fmt: skip


@pytest.mark.parametrize("ell", [32, 40])
@pytest.mark.parametrize("method", ["he", "ot"])
def test_exact_every_shape_class(method: str, ell: int) -> None:
    cases = _cases(ell, method)
    sh = [share(c[2], ell) for c in cases]

    def side(i: int):  # noqa: ANN202
        return lambda p: [_run(p, c, s[i], ell, method) for c, s in zip(cases, sh, strict=True)]

    ys, yc = run_parties(side(0), side(1), timeout=120)
    m = np.uint64((1 << ell) - 1)
    for c, a, b in zip(cases, ys, yc, strict=True):
        kind, name, x, w, bias, *rest = c
        if kind == "conv":
            ref = ref_conv(x, w, bias, *rest, ell)
        elif kind == "gemm":
            ref = ref_gemm(x, w, bias, ell)
        else:
            ref = ref_affine(x, w, bias, ell)
        assert a.shape == ref.shape, name
        assert np.array_equal((a + b) & m, ref), f"{method} {name} ell={ell}"


def test_tiled_conv_and_cache_reuse() -> None:
    """A 7x7/stride-2 conv whose 106x106 padded input needs spatial tiles with halos; the
    server's plaintexts are built once and reused for a second image."""
    ell = 32
    name, xsh, wsh, st, pd, dl, g = CONVS[-1]
    w, b = wts(wsh, 12), wts(wsh[:1], 20)
    xs = [rand_ring(xsh, ell) for _ in range(2)]
    shares = [share(x, ell) for x in xs]
    caches = [L.LinearCache(), L.LinearCache()]

    def side(i: int):  # noqa: ANN202
        def fn(p):  # noqa: ANN001, ANN202
            srv = p.role == "server"
            return [
                L.conv2d(
                    p,
                    s[i],
                    w if srv else None,
                    b if srv else None,
                    w_shape=wsh,
                    strides=st,
                    pads=pd,
                    dilations=dl,
                    group=g,
                    ell=ell,
                    method="he",
                    cache=caches[i],
                    name=name,
                )  # fmt: skip
                for s in shares
            ]

        return fn

    ys, yc = run_parties(side(0), side(1), timeout=120)
    assert len(caches[0]) == 1
    m = np.uint64((1 << ell) - 1)
    for x, a, c in zip(xs, ys, yc, strict=True):
        ref = L.conv2d_mod(x, w, strides=st, pads=pd, dilations=dl, group=g, ell=ell)
        ref = (ref + b.astype(np.uint64)[None, :, None, None]) & m
        assert np.array_equal((a + c) & m, ref)
    plan = pk.plan_conv(1, 106, 106, 2, 7, 7, (2, 2))
    assert plan.n_sp > 1  # really tiled


def test_packings_are_exact_polynomial_products() -> None:
    ell = 37
    m = np.uint64((1 << ell) - 1)
    x = rand_ring((3, 5, 6), ell)
    w = wts((2, 3, 2, 3))
    p = pk.plan_conv(3, 5, 6, 2, 3, 3, (1, 1))
    xi, wp = pk.conv_pack_input(p, x), pk.conv_pack_weights(p, w, (2, 1), ell)
    y = np.zeros((2, p.Ho * p.Wo), np.uint64)
    for o in range(2):
        for sp, (coef, flat) in enumerate(pk.conv_useful(p)):
            acc = np.zeros(N, np.uint64)
            for cb in range(p.n_cb):
                acc = (acc + pk.negacyclic_mul(xi[cb, sp], wp[o, cb], ell)) & m
            y[o, flat] = acc[coef]
    ref = ref_conv(x[None], w, None, (1, 1), (0, 0, 0, 0), (2, 1), 1, ell)
    assert np.array_equal(y.reshape(ref.shape[1:]), ref[0])


def _secret_coeffs(hp, dec) -> np.ndarray:  # noqa: ANN001
    """The client's own secret key in coefficient form: decrypting (0, Delta) gives s mod t."""
    data = np.zeros((2, 1, N), np.uint64)
    data[1, 0, 0] = hp.q_last // (1 << hp.ell)
    raw = coeffs_from_plain(dec.decrypt(ct_from_array(hp, data, level="last")))
    t = 1 << hp.ell
    return np.where(raw > t // 2, raw.astype(np.int64) - t, raw.astype(np.int64))


def _phase_noise(hp, s: np.ndarray, c0: np.ndarray, c1: np.ndarray, idx, m) -> np.ndarray:  # noqa: ANN001
    """noise_i = [c0 + c1*s]_q - round(q*m/t) at the wanted coefficients (centred)."""
    q = hp.q_last
    acc = np.zeros(N, np.int64)
    c1i = c1.astype(np.int64)
    for j in np.nonzero(s)[0]:  # s is ternary: add or subtract c1 * X^j (negacyclic)
        rolled = np.roll(c1i, j)
        rolled[:j] = q - rolled[:j]
        acc = (acc + rolled) % q if s[j] > 0 else (acc - rolled) % q
    ph = (c0.astype(object) + acc) % q
    t = 1 << hp.ell
    e = (ph[idx] - (np.asarray(m, object) * q + t // 2) // t) % q
    return np.array([int(v) - q if v > q // 2 else int(v) for v in e], np.float64)


def test_reply_noise_carries_no_weight_signal() -> None:
    """Decrypted noise of the returned ciphertext (4096 coefficients of one 1x1 conv output):
    the same distribution for all-one weights and for 30-bit random weights."""
    ell = 32
    hp = he_params(ell)
    x = rand_ring((1, 16, 64, 64), ell)
    plan = pk.plan_conv(16, 64, 64, 1, 1, 1, (1, 1))
    idx = pk.conv_useful(plan)[0][0]
    assert idx.size == 4096
    b1, b0 = he.reply_bits(hp)
    noises = {}
    for label, w in (("ones", np.ones((1, 16, 1, 1), np.int64)), ("big", wts((1, 16, 1, 1), 30))):

        def server(p, w=w):  # noqa: ANN001, ANN202
            return L.conv2d(p, np.zeros_like(x), w, None, w_shape=w.shape, ell=ell)

        def client(p, w=w):  # noqa: ANN001, ANN202
            frames, real = [], p.chan.recv_array

            def rec(dtype, shape):  # noqa: ANN001, ANN202
                frames.append(real(dtype, shape))
                return frames[-1]

            p.chan.recv_array = rec  # record the raw reply (the client's own view)
            y = L.conv2d(p, x, None, None, w_shape=w.shape, ell=ell)
            return y, frames, he.keys(p, ell).decryptor

        _, (yc, frames, dec) = run_parties(server, client, timeout=120, setup_ot=False)
        c1 = bitpack.unpack(frames[-2], N, b1) << np.uint64(he.C1_DROP)
        c0 = np.zeros(N, np.uint64)
        c0[idx] = bitpack.unpack(frames[-1], idx.size, b0) << np.uint64(he.C0_DROP)
        m = yc.reshape(-1)[pk.conv_useful(plan)[0][1]]
        noises[label] = _phase_noise(hp, _secret_coeffs(hp, dec), c0, c1, idx, m)
    a, b = noises["ones"], noises["big"]
    budget = hp.q_last / (1 << (ell + 1))
    for v in (a, b):
        assert np.abs(v).max() < budget / 8  # decryption margin
        assert v.std() > 1  # the mod-switch rounding is there
    assert stats.ks_2samp(a, b).pvalue > 1e-4
    assert abs(a.std() - b.std()) < 0.1 * a.std()


def test_sparse_weight_polynomials_become_monomials() -> None:
    hp = he_params(32)
    polys = np.zeros((3, N), np.uint64)
    polys[1, [4, 9]] = [5, (1 << 32) - 3]
    polys[2, :3] = 1
    pts = he.weight_plaintexts(hp, polys)
    assert pts[0] is None
    assert isinstance(pts[1], he.Monomials) and len(pts[1]) == 2
    assert not isinstance(pts[2], he.Monomials)


def test_round_low_bits_stays_within_half_a_step() -> None:
    q = he_params(32).q_last
    rand = PRG().fill(np.empty(4096, np.uint64)) % np.uint64(q)
    edges = [np.arange(q - 40, q, dtype=np.uint64), np.arange(40, dtype=np.uint64)]
    x = np.concatenate([rand, *edges])
    for k in (he.C1_DROP, he.C0_DROP):
        y = he.round_low_bits(x, k, q)
        assert int(y.max()) < 1 << (q.bit_length() - k)
        back = (y << np.uint64(k)).astype(object)
        err = [(int(a) - int(b) + q // 2) % q - q // 2 for a, b in zip(back, x, strict=True)]
        assert max(map(abs, err)) <= 1 << (k - 1)


def test_flooding_premise_is_enforced() -> None:
    hp = he_params(32)
    he.check_flooding(hp, 1 << 40, "ok layer")
    with pytest.raises(ValueError, match="huge layer"):
        he.check_flooding(hp, 1 << 60, "huge layer")


def test_bad_inputs_are_named() -> None:
    x = rand_ring((1, 4), 32)
    with pytest.raises(ValueError, match="method"):
        run_parties(
            lambda p: L.gemm(p, x, np.ones((2, 4)), None, w_shape=(2, 4), ell=32, method="x"),
            lambda p: L.gemm(p, x, None, None, w_shape=(2, 4), ell=32, method="x"),
            setup_ot=False,
        )
    with pytest.raises(ValueError, match="client must not hold"):
        run_parties(
            lambda p: L.gemm(p, x, np.ones((2, 4)), None, w_shape=(2, 4), ell=32),
            lambda p: L.gemm(p, x, np.ones((2, 4)), None, w_shape=(2, 4), ell=32),
            setup_ot=False,
        )
    with pytest.raises(TypeError, match="uint64"):
        L.affine(type("P", (), {"role": "client"})(), x.astype(np.int64), None, None, ell=32)


def test_malformed_ciphertext_from_client_is_a_peer_error() -> None:
    hp = he_params(32)

    def server(p):  # noqa: ANN001, ANN202
        return L.gemm(p, rand_ring((1, 4), 32), np.ones((2, 4), np.int64), None, w_shape=(2, 4),
                      ell=32)  # fmt: skip

    def client(p):  # noqa: ANN001, ANN202
        he.keys(p, 32)  # sends the public key
        p.chan.send(bytes(16))  # the seed of the c1s
        p.chan.send(np.full(he.packed_c0_size(hp), 255, np.uint8))  # residues >= q
        p.chan.recv_bytes()

    with pytest.raises(PeerError, match="invalid ciphertext"):
        run_parties(server, client, setup_ot=False, timeout=60)


def test_degenerate_public_key_is_refused() -> None:
    """The active-client attack on re-randomisation: a public key (0, 0) would make the
    returned c1 = sum a_j * P_j; a comes from the shared PRG now, and p0 = 0 is refused."""
    hp = he_params(32)

    def server(p):  # noqa: ANN001, ANN202
        return L.gemm(p, rand_ring((1, 4), 32), np.ones((2, 4), np.int64), None, w_shape=(2, 4),
                      ell=32)  # fmt: skip

    def client(p):  # noqa: ANN001, ANN202
        p.chan.send(np.zeros(he.packed_c0_size(hp), np.uint8))  # p0 = 0
        p.chan.recv_bytes()

    with pytest.raises(PeerError, match="degenerate public key"):
        run_parties(server, client, setup_ot=False, timeout=60)
    a1 = run_parties(lambda p: he.public_a(p, hp), lambda p: he.public_a(p, hp), setup_ot=False)
    a2 = run_parties(lambda p: he.public_a(p, hp), lambda p: he.public_a(p, hp), setup_ot=False)
    assert np.array_equal(*a1) and not np.array_equal(a1[0], a2[0])  # shared, fresh per session


@pytest.mark.parametrize("setup_ot", [True, False])
def test_auto_method_is_exact_with_and_without_ot(setup_ot: bool) -> None:
    ell = 32
    x = rand_ring((1, 3, 2, 2), ell)
    g, a = wts((3,)), wts((3,))
    xs, xc = share(x, ell)
    ys, yc = run_parties(
        lambda p: L.affine(p, xs, g, a, ell=ell, method="auto"),
        lambda p: L.affine(p, xc, None, None, ell=ell, method="auto"),
        setup_ot=setup_ot,
    )
    assert np.array_equal((ys + yc) & np.uint64((1 << ell) - 1), ref_affine(x, g, a, ell))


def test_auto_takes_ot_for_conv_and_gemm_where_he_has_no_parameters() -> None:
    ell = 44  # BFV parameters exist for ell <= 40 only
    x = rand_ring((2, 5), ell)
    w, b = wts((3, 5)), wts((3,))
    xs, xc = share(x, ell)
    ys, yc = run_parties(
        lambda p: L.gemm(p, xs, w, b, w_shape=w.shape, ell=ell, method="auto"),
        lambda p: L.gemm(p, xc, None, None, w_shape=w.shape, ell=ell, method="auto"),
    )
    assert np.array_equal((ys + yc) & np.uint64((1 << ell) - 1), ref_gemm(x, w, b, ell))
