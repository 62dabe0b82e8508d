"""Per-channel affine by OT (random OTs with long messages): exactness, wire size, layout, the
streams, and which protocol ``--linear auto`` picks."""

from __future__ import annotations

import numpy as np
import pytest

from twofold.runtime.errors import PeerError
from twofold.runtime.executor import Private
from twofold.runtime.linear import linear as L  # noqa: N812
from twofold.runtime.linear import linear_ot_cot as aff
from twofold.runtime.linear_ops import LinearError, LinearOps, he_supports, pick
from twofold.runtime.prg import PRG
from twofold.runtime.session import run_parties

RNG = np.random.default_rng(6)  # public test data only


def _share(x: np.ndarray, ell: int) -> tuple[np.ndarray, np.ndarray]:
    xs = PRG().ring(x.shape, ell)
    return xs, (x - xs) & np.uint64((1 << ell) - 1)


def _ref(x: np.ndarray, g: np.ndarray, a: np.ndarray | None, ell: int) -> np.ndarray:
    shp = (1, -1) + (1,) * (x.ndim - 2)
    y = x.astype(object) * g.astype(object).reshape(shp)
    if a is not None:
        y = y + a.astype(object).reshape(shp)
    return (y % (1 << ell)).astype(np.uint64)


def _run_affine(x: np.ndarray, g: np.ndarray, a: np.ndarray | None, ell: int):  # noqa: ANN202
    xs, xc = _share(x, ell)
    ys, yc = run_parties(
        lambda p: L.affine(p, xs, g, a, ell=ell, method="ot"),
        lambda p: L.affine(p, xc, None, None, ell=ell, method="ot"),
        timeout=120,
    )
    return (ys + yc) & np.uint64((1 << ell) - 1)


@pytest.mark.parametrize("ell", [32, 37])
@pytest.mark.parametrize("shape", [(3, 5, 7, 3), (2, 7, 13), (1, 1), (5, 3)])
def test_exact_odd_shapes_batches(ell: int, shape: tuple[int, ...]) -> None:
    x = PRG().ring(shape, ell)
    g = RNG.integers(-(1 << 14), 1 << 14, shape[1])
    a = RNG.integers(-(1 << 20), 1 << 20, shape[1])
    assert np.array_equal(_run_affine(x, g, a, ell), _ref(x, g, a, ell))


@pytest.mark.parametrize("ell", [1, 8, 16, 31, 33, 64])
def test_exact_other_ring_widths(ell: int) -> None:
    x = PRG().ring((2, 3, 5), ell)
    g = RNG.integers(-(1 << 40), 1 << 40, 3)
    assert np.array_equal(_run_affine(x, g, None, ell), _ref(x, g, None, ell))


@pytest.mark.parametrize("shape", [(1, 0, 3), (1, 2, 0), (0, 3, 2)])
def test_empty_tensors(shape: tuple[int, ...]) -> None:
    x = np.zeros(shape, np.uint64)
    g = np.arange(shape[1], dtype=np.int64) + 1
    y = _run_affine(x, g, None, 32)
    assert y.shape == shape


@pytest.mark.parametrize("ell", [32, 37])
def test_exact_extreme_values(ell: int) -> None:
    """Scales 0, +-1, +-2^(ell-1)-ish and full-range inputs (every choice bit both ways)."""
    half = 1 << (ell - 1)
    g = np.array([0, 1, -1, half - 1, -half, 12345, -(1 << 30), 7], np.int64)
    x = PRG().ring((2, g.size, 3, 5), ell)
    x[0, :, 0, 0] = (1 << ell) - 1
    x[1, :, 1, 1] = 0
    assert np.array_equal(_run_affine(x, g, None, ell), _ref(x, g, None, ell))


@pytest.mark.parametrize("per", [4, 8, 30, 64])
@pytest.mark.parametrize("ell", [32, 37])
def test_exact_across_chunk_boundaries(per: int, ell: int, monkeypatch) -> None:  # noqa: ANN001
    """Tiny chunks: several channels per chunk, and one channel cut into several slices."""
    monkeypatch.setattr(aff, "CHUNK", per)
    x = PRG().ring((2, 6, 3, 7), ell)  # 42 elements per channel
    g = RNG.integers(-(1 << 16), 1 << 16, 6)
    assert np.array_equal(_run_affine(x, g, None, ell), _ref(x, g, None, ell))


def test_chunks_cover_everything_once() -> None:
    for C, d, per in [(5, 42, 30), (5, 42, 100), (3, 1000, 64), (1, 7, 4), (7, 1, 3)]:  # noqa: N806
        seen = np.zeros((C, d), int)
        for c0, c1, e0, e1 in aff.chunks(C, d, per):
            assert e0 % 16 == 0 and (c1 - c0) * (e1 - e0) <= max(per, d if d <= per else 0, 16)
            seen[c0:c1, e0:e1] += 1
        assert (seen == 1).all(), (C, d, per)


@pytest.mark.parametrize("ell", range(1, 65))
def test_layout_packs_every_field_once_without_gaps(ell: int) -> None:
    lay = aff.layout(ell)
    levels = []
    for fields, nb in zip(lay.words, lay.nbytes, strict=True):
        top = 0
        for i, off in fields:
            assert off == top  # fields are contiguous from bit 0
            top = off + ell - i
            levels.append(i)
        assert top <= lay.wb and nb == (top + 7) // 8
    assert sorted(levels) == list(range(ell))
    # at most one byte per element above the information-theoretic ell(ell+1)/2 bits
    exact = -(-ell * (ell + 1) // 16)
    assert exact <= lay.bytes_per_element <= exact + (ell not in (32, 37))


@pytest.mark.parametrize("ell", [32, 37])
def test_wire_bytes_are_ell_ots_per_channel_plus_packed_fields(ell: int) -> None:
    B, C, H, W = 2, 9, 5, 7  # noqa: N806
    x = PRG().ring((B, C, H, W), ell)
    g = RNG.integers(-(1 << 14), 1 << 14, C)
    xs, xc = _share(x, ell)

    def side(xx, gg):  # noqa: ANN001, ANN202
        def fn(p):  # noqa: ANN001, ANN202
            b0, r0 = p.chan.bytes_sent, p.chan.bytes_recv
            L.affine(p, xx, gg, None, ell=ell, method="ot")
            return p.chan.bytes_sent - b0, p.chan.bytes_recv - r0

        return fn

    (s_sent, s_recv), (c_sent, c_recv) = run_parties(side(xs, g), side(xc, None))
    n_ot = C * ell
    assert s_sent == c_recv and c_sent == s_recv
    assert s_sent <= 16 * max(64, -(-n_ot // 64) * 64) + 64  # IKNP columns: 128 bits per OT
    fields = B * H * W * C * aff.layout(ell).bytes_per_element
    assert fields <= c_sent <= fields + 64 * len(aff.chunks(C, B * H * W))
    assert aff.layout(ell).bytes_per_element == {32: 66, 37: 88}[ell]


def test_client_wire_is_uniform_even_for_a_zero_share() -> None:
    """The fields u_i = P0 - P1 + x_c must hide x_c: with x_c = 0 the bytes still look uniform
    (fails if the two streams coincide or the pads are not applied)."""
    ell, C, M = 32, 8, 1024
    got = {}

    def client(p):  # noqa: ANN001, ANN202
        orig = p.chan.send

        def spy(data):  # noqa: ANN001, ANN202
            got.setdefault("wire", []).append(np.frombuffer(bytes(data), np.uint8))
            return orig(data)

        p.chan.send = spy
        return L.affine(p, np.zeros((1, C, M), np.uint64), None, None, ell=ell, method="ot")

    run_parties(
        lambda p: L.affine(
            p, np.zeros((1, C, M), np.uint64), np.arange(C) - 3, None, ell=ell, method="ot"
        ),  # fmt: skip
        client,
    )
    wire = max(got["wire"], key=len)
    assert wire.size == C * M * 66
    counts = np.bincount(wire, minlength=256)
    chi2 = float((((counts - wire.size / 256) ** 2) / (wire.size / 256)).sum())
    assert chi2 < 400  # 255 degrees of freedom: p ~ 1e-8 under uniformity


def test_long_ot_streams() -> None:
    """The receiver's stream is the sender's m_c, never m_(1-c); blocks are consistent."""
    c = np.array([0, 1, 1, 0, 1], np.uint8)

    def server(p):  # noqa: ANN001, ANN202
        lot = p.ot.lrot_send(c.size)
        m0, m1 = lot.blocks(np.arange(c.size), 3, 5, both=True)
        return m0.copy(), m1.copy(), lot.blocks(np.array([2]), 5, 2, both=True)[0].copy()

    def client(p):  # noqa: ANN001, ANN202
        return p.ot.lrot_recv(c).blocks(np.arange(c.size), 3, 5).copy()

    (m0, m1, part), mc = run_parties(server, client)
    want = np.where(c[:, None, None] == 1, m1, m0)
    assert np.array_equal(mc, want)
    assert not np.any(np.where(c[:, None, None] == 1, m0, m1) == mc)
    assert np.array_equal(part[0], m0[2, 2:4])  # block index, not call, fixes the block
    assert len({bytes(b) for b in m0.reshape(-1, 2)}) == m0.size // 2


def test_truncated_wire_is_a_peer_error() -> None:
    def client(p):  # noqa: ANN001, ANN202
        p.ot.lrot_send(2 * 32)
        p.chan.send(np.zeros(10, np.uint8))
        p.chan.recv_bytes()

    with pytest.raises(PeerError):
        run_parties(
            lambda p: L.affine(
                p, np.zeros((1, 2, 4), np.uint64), np.ones(2, np.int64), None, ell=32, method="ot"
            ),  # fmt: skip
            client,
            timeout=20,
        )


# ---- --linear auto -----------------------------------------------------------------------------
def test_pick_is_public_and_per_kind() -> None:
    assert he_supports(32) and not he_supports(63)
    assert pick("auto", "affine", 32, True) == "ot"
    assert pick("auto", "conv2d", 32, True) == "he"
    assert pick("auto", "gemm", 32, True) == "he"
    assert pick("auto", "conv2d", 63, True) == "ot"
    assert pick("auto", "affine", 32, False) == "he"
    assert pick("he", "affine", 32, True) == "he" and pick("ot", "gemm", 32, True) == "ot"
    with pytest.raises(LinearError, match="%bn.*ell=63"):
        pick("auto", "affine", 63, False, "bn")


def test_linear_ops_auto_runs_the_affine_and_mul_by_ot() -> None:
    """Through the executor's adapter with ``auto``: exact, and the traffic is the OT affine's
    (ell OTs per channel + 66 bytes per element), not HE ciphertexts."""
    ell, B, C, H, W = 32, 2, 5, 4, 3  # noqa: N806
    x = PRG().ring((B, C, H, W), ell)
    g, a = RNG.integers(-(1 << 12), 1 << 12, C), RNG.integers(-(1 << 20), 1 << 20, C)
    wm = RNG.integers(-(1 << 12), 1 << 12, (1, C, 1, 1))
    xs, xc = _share(x, ell)

    def side(xx, srv):  # noqa: ANN001, ANN202
        def v(arr):  # noqa: ANN001, ANN202
            return Private(arr if srv else None, arr.shape)

        def fn(p):  # noqa: ANN001, ANN202
            ops = LinearOps(p, ell, "auto")
            b0 = p.chan.bytes_sent + p.chan.bytes_recv
            y1 = ops.affine(None, "bn", xx, v(g), v(a))
            y2 = ops.mul(None, "scale", xx, v(wm))
            return y1, y2, p.chan.bytes_sent + p.chan.bytes_recv - b0

        return fn

    (s1, s2, nb), (c1, c2, _) = run_parties(side(xs, True), side(xc, False))
    m = np.uint64((1 << ell) - 1)
    assert np.array_equal((s1 + c1) & m, _ref(x, g, a, ell))
    assert np.array_equal((s2 + c2) & m, _ref(x, wm.reshape(C), None, ell))
    per_call = x.size * 66 + 16 * 64 * 3  # fields + at most 3 padded IKNP chunks of C*ell OTs
    assert nb <= 2 * per_call + 400


# ---- the same COT products for the OT matmul (groups summed) -----------------------------------
@pytest.mark.parametrize(("per", "batch"), [(8, 1), (8, 3), (50, 2), (1 << 16, 1 << 20)])
@pytest.mark.parametrize("ell", [32, 37])
def test_ot_gemm_across_chunks_and_batches(per: int, batch: int, ell: int, monkeypatch) -> None:  # noqa: ANN001
    """x @ w.T by OT with tiny chunks and extension batches of ``batch`` groups: group sums
    that straddle chunks and batches."""
    monkeypatch.setattr(aff, "CHUNK", per)
    monkeypatch.setattr(aff, "BATCH_OTS", batch * 7 * ell)
    x = PRG().ring((3, 7), ell)
    w = RNG.integers(-(1 << 14), 1 << 14, (5, 7))
    b = RNG.integers(-(1 << 20), 1 << 20, 5)
    xs, xc = _share(x, ell)
    ys, yc = run_parties(
        lambda p: L.gemm(p, xs, w, b, w_shape=w.shape, ell=ell, method="ot"),
        lambda p: L.gemm(p, xc, None, None, w_shape=w.shape, ell=ell, method="ot"),
    )
    ref = (x.astype(object) @ w.T.astype(object) + b.astype(object)[None, :]) % (1 << ell)
    assert np.array_equal((ys + yc) & np.uint64((1 << ell) - 1), ref.astype(np.uint64))


def test_ot_method_without_an_ot_extension_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="OT extension"):
        run_parties(
            lambda p: L.affine(
                p, np.zeros((1, 2, 3), np.uint64), np.ones(2, np.int64), None, ell=32, method="ot"
            ),  # fmt: skip
            lambda p: L.affine(
                p, np.zeros((1, 2, 3), np.uint64), None, None, ell=32, method="ot"
            ),  # fmt: skip
            setup_ot=False,
            timeout=20,
        )
