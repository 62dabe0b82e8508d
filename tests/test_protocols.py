"""Non-linear 2PC protocols against the cleartext fixed-point semantics, bit for bit.

Each ring size runs every protocol in ONE two-party session (threads over a socketpair, real
OT extension) so the suite stays fast; the individual tests check the recorded outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from twofold.ir.ops import pool_out_dim
from twofold.runtime import protocols as P
from twofold.runtime.net import run_pair
from twofold.runtime.ot.otpack import SOURCES, OTPack
from twofold.runtime.prg import PRG
from twofold.runtime.protocols.maxpool import pool_output_size
from twofold.runtime.protocols.millionaire import _count_ands, _eq_plan
from twofold.runtime.protocols.triples import corr_triples
from twofold.runtime.session import Party

ELLS = [8, 16, 32, 37, 64]
SHIFTS = {
    8: [1, 3, 4, 7],
    16: [1, 4, 7, 12],
    32: [1, 11, 12, 31],
    37: [5, 13, 36],
    64: [12, 33, 63],
}
POOLS = [
    ((3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 2), (2, 2), (0, 0, 0, 0)),
    ((3, 2), (1, 2), (1, 0, 2, 1)),
    ((3, 3), (1, 1), (1, 1, 1, 1)),
    ((2, 3), (3, 1), (0, 2, 1, 0)),  # stride above the kernel: rows no window uses
]


def make_party(role: str, chan, source: str | None = None):  # noqa: ANN001, ANN201
    """A Party whose OTPack uses ``source`` (default: OTPack's default)."""
    p = Party(role, chan, setup_ot=False)
    p.ot = OTPack(chan, role, source=source)
    return p


def mask(ell: int) -> int:
    return (1 << ell) - 1


def to_ring(vals, ell: int) -> np.ndarray:  # noqa: ANN001
    return np.array([int(v) & mask(ell) for v in np.ravel(vals)], dtype=np.uint64).reshape(
        np.shape(vals)
    )


def signed(x: np.ndarray, ell: int) -> np.ndarray:
    """Python-int (object) array of the signed values."""
    return np.array(
        [int(v) - (1 << ell) if int(v) >> (ell - 1) else int(v) for v in x.ravel()], dtype=object
    ).reshape(x.shape)


def edge_values(ell: int) -> list[int]:
    """0, +-1, the extremes, and values around every 4-bit digit boundary."""
    vals = {0, 1, -1, -(1 << (ell - 1)), (1 << (ell - 1)) - 1, -(1 << (ell - 1)) + 1}
    for j in range(4, ell, 4):
        for d in (-1, 0, 1):
            vals |= {(1 << j) + d, -(1 << j) + d}
    lo, hi = -(1 << (ell - 1)), (1 << (ell - 1)) - 1
    return sorted(v for v in vals if lo <= v <= hi)


def sample_values(ell: int) -> np.ndarray:
    """Edge values followed by random ring elements, as an odd-shaped ring tensor."""
    edges = edge_values(ell)
    rnd = PRG(bytes(16)).ring(3 * 5 * 7 * 2 - len(edges) % 2, ell)
    vals = np.concatenate([to_ring(edges, ell), rnd])
    n = vals.size - vals.size % 7
    return vals[:n].reshape(-1, 7)


def split(x: np.ndarray, ell: int) -> tuple[np.ndarray, np.ndarray]:
    r = PRG().ring(x.shape, ell)
    return r, (x - r) & np.uint64(mask(ell))


def _run_all(party, ell: int, shares: dict):  # noqa: ANN001, ANN202
    """Every protocol on this party's shares; returns {name: output share}."""
    me = 0 if party.is_server else 1
    x = shares["x"][me]
    out = {}
    out["millionaire"] = P.millionaire(party, shares["mill"][me], ell)
    out["millionaire_gt"] = P.millionaire(party, shares["mill"][me], ell, greater=True)
    out["millionaire_split"] = P.millionaire(party, shares["mill"][me], ell, split=ell // 2)
    out["millionaire_eq"] = P.millionaire(party, shares["mill"][me], ell, return_eq=True)
    out["drelu"] = P.drelu(party, x, ell)
    out["relu"] = P.relu(party, x, ell, return_drelu=True)
    out["and"] = P.and_(party, shares["u"][me], shares["v"][me])
    out["triples"] = P.bit_triples(party, 101)
    out["corr_triples"] = corr_triples(party, 99)
    out["b2a"] = P.b2a(party, shares["u"][me], ell)
    out["mux"] = P.mux(party, shares["u"][me], x, ell)
    out["mul_const"] = P.mul_const(party, x, -3, ell)
    out["add_const"] = P.add_const(party, x, 5, ell)
    for s in SHIFTS[ell]:
        out[("faithful", s)] = P.trunc(party, x, ell, s)
        out[("msb0", s)] = P.trunc(party, shares["pos"][me], ell, s, kind="msb0")
        out[("reduce", s)] = P.trunc(party, x, ell, s, kind="reduce")
        if ell - s > 2:
            out[("reduce_to", s)] = P.trunc(party, x, ell, s, kind="reduce", out_ell=ell - s - 2)
    if ell < 64:
        out["extend"] = P.extend(party, x, ell, 64)
        out["extend_u"] = P.extend(party, x, ell, ell + 5, signed=False)
    for i, (k, st, pads) in enumerate(POOLS):
        for sep in (None, False, True):  # the plan maxpool picks, and both plans forced
            out[("maxpool", i, sep)] = P.maxpool(
                party, shares["img"][me], ell, k, st, pads, separable=sep
            )
    return out


@pytest.fixture(scope="module", params=[(e, s) for s in SOURCES for e in ELLS], ids=str)
def session(request):  # noqa: ANN001, ANN201
    ell, source = request.param
    x = sample_values(ell)
    sx = signed(x, ell)
    edges = to_ring([abs(v) for v in edge_values(ell)], ell)
    pos = np.concatenate([edges, x.ravel()]) & np.uint64(mask(ell - 1))
    mill_c = np.concatenate([edges, np.roll(edges, 1), edges + np.uint64(1)])
    mill_c &= np.uint64(mask(ell))
    mill_s = np.concatenate([edges, edges, edges])
    rb = PRG().bits(2 * x.size).reshape((2,) + x.shape)
    lim = 1 << (ell - 2)
    img = to_ring([int(v) % (2 * lim) - lim for v in PRG().ring(2 * 3 * 7 * 9, 62)], ell)
    img = img.reshape(2, 3, 7, 9)
    u, v = rb[0], rb[1]
    u_r = PRG().bits(u.size).reshape(u.shape)
    v_r = PRG().bits(v.size).reshape(v.shape)
    shares = {
        "x": split(x, ell),
        "pos": split(pos, ell),
        "mill": (mill_s, mill_c),
        "u": (u_r, u ^ u_r),
        "v": (v_r, v ^ v_r),
        "img": split(img, ell),
    }
    srv, cli = run_pair(
        lambda p: _run_all(p, ell, shares),
        lambda p: _run_all(p, ell, shares),
        make=lambda role, ch: make_party(role, ch, source),
        timeout=300,
    )
    clear = {"x": x, "sx": sx, "pos": pos, "ms": mill_s, "mc": mill_c, "u": u, "v": v, "img": img}
    return ell, clear, srv, cli


def add(a: np.ndarray, b: np.ndarray, ell: int) -> np.ndarray:
    return (a + b) & np.uint64(mask(ell))


def test_millionaire(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    assert ((s["millionaire"] ^ k["millionaire"]) == (c["ms"] < c["mc"])).all()
    assert ((s["millionaire_gt"] ^ k["millionaire_gt"]) == (c["ms"] > c["mc"])).all()
    lo_s, all_s = s["millionaire_split"]
    lo_c, all_c = k["millionaire_split"]
    m = np.uint64(mask(ell // 2))
    assert ((lo_s ^ lo_c) == ((c["ms"] & m) < (c["mc"] & m))).all()
    assert ((all_s ^ all_c) == (c["ms"] < c["mc"])).all()
    lt_s, eq_s = s["millionaire_eq"]
    lt_c, eq_c = k["millionaire_eq"]
    assert ((lt_s ^ lt_c) == (c["ms"] < c["mc"])).all()
    assert ((eq_s ^ eq_c) == (c["ms"] == c["mc"])).all()


def test_drelu_and_relu(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    sx = c["sx"]
    assert ((s["drelu"] ^ k["drelu"]) == (sx >= 0).astype(np.uint8)).all()
    y = add(s["relu"][0], k["relu"][0], ell)
    expect = np.where((sx > 0).astype(bool), c["x"], np.uint64(0))
    assert (y == expect).all()
    assert ((s["relu"][1] ^ k["relu"][1]) == (sx >= 0).astype(np.uint8)).all()


def test_triples(session) -> None:  # noqa: ANN001
    _, _, s, k = session
    a, b, c = (x ^ y for x, y in zip(s["triples"], k["triples"], strict=True))
    assert a.size == 101 and ((a & b) == c).all()
    a, b1, b2, c1, c2 = (x ^ y for x, y in zip(s["corr_triples"], k["corr_triples"], strict=True))
    assert a.size == 99 and ((a & b1) == c1).all() and ((a & b2) == c2).all()
    assert 0 < a.sum() < 99 and 0 < b1.sum() < 99  # random, not constant


def test_and_b2a_mux_const(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    assert ((s["and"] ^ k["and"]) == (c["u"] & c["v"])).all()
    assert (add(s["b2a"], k["b2a"], ell) == c["u"]).all()
    assert (add(s["mux"], k["mux"], ell) == np.where(c["u"] == 1, c["x"], np.uint64(0))).all()
    assert (add(s["mul_const"], k["mul_const"], ell) == to_ring(c["sx"] * -3, ell)).all()
    assert (add(s["add_const"], k["add_const"], ell) == to_ring(c["sx"] + 5, ell)).all()


def test_trunc_faithful_is_arithmetic_shift(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    for sh in SHIFTS[ell]:
        expect = to_ring(c["sx"] >> sh, ell)
        assert (add(s[("faithful", sh)], k[("faithful", sh)], ell) == expect).all(), sh
        got = add(s[("msb0", sh)], k[("msb0", sh)], ell)
        assert (got == to_ring(signed(c["pos"], ell) >> sh, ell)).all(), sh
        o = ell - sh
        assert (add(s[("reduce", sh)], k[("reduce", sh)], o) == to_ring(c["sx"] >> sh, o)).all()
        if ell - sh > 2:
            got = add(s[("reduce_to", sh)], k[("reduce_to", sh)], o - 2)
            assert (got == to_ring(c["sx"] >> sh, o - 2)).all(), sh


def test_extend(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    if ell == 64:
        return
    assert (add(s["extend"], k["extend"], 64) == to_ring(c["sx"], 64)).all()
    assert (add(s["extend_u"], k["extend_u"], ell + 5) == c["x"]).all()


def _maxpool_ref(x: np.ndarray, kernel, strides, pads) -> np.ndarray:  # noqa: ANN001
    """Signed max over each window, padding = -infinity (never wins)."""
    n, ch, h, w = x.shape
    pt, pl, pb, pr = pads
    oh = pool_out_dim(h, kernel[0], strides[0], pt, pb, 1, False)
    ow = pool_out_dim(w, kernel[1], strides[1], pl, pr, 1, False)
    big = np.full((n, ch, h + pt + pb, w + pl + pr), None, dtype=object)
    big[:, :, pt : pt + h, pl : pl + w] = x
    out = np.empty((n, ch, oh, ow), dtype=object)
    for i in range(oh):
        for j in range(ow):
            win = big[:, :, i * strides[0] : i * strides[0] + kernel[0],
                      j * strides[1] : j * strides[1] + kernel[1]]  # fmt: skip
            win = win.reshape(n, ch, -1)
            out[:, :, i, j] = [[max(v for v in win[a, b] if v is not None) for b in range(ch)]
                               for a in range(n)]  # fmt: skip
    return out


def test_maxpool(session) -> None:  # noqa: ANN001
    ell, c, s, k = session
    sx = signed(c["img"], ell)
    for i, (kern, st, pads) in enumerate(POOLS):
        want = to_ring(_maxpool_ref(sx, kern, st, pads), ell)
        for sep in (None, False, True):
            got = add(s[("maxpool", i, sep)], k[("maxpool", i, sep)], ell)
            assert (got == want).all(), (kern, st, pads, sep)


def test_separable_maxpool_plan() -> None:
    """Rows then columns where it takes fewer comparisons in no more rounds (public shapes)."""
    from twofold.runtime.protocols.maxpool import _axis_windows, _separable_is_cheaper

    def plan(size, k, s, p):  # noqa: ANN001, ANN202
        out = pool_output_size(size, k, s, p, p)
        return _separable_is_cheaper(*(_axis_windows(size, k, s, p, 1, out),) * 2)

    assert plan(112, 3, 2, 1)  # DenseNet's pool: 25% fewer comparisons, 4 rounds either way
    assert plan(16, 3, 1, 1)  # stride 1: half
    assert not plan(16, 2, 2, 0)  # 2x2/2: as many comparisons
    assert not plan(20, 5, 1, 2)  # 5x5: 3 + 3 rounds against 5


def test_pool_size_matches_ir() -> None:
    for args in [(7, 3, 2, 1, 1, 1, False), (9, 2, 2, 0, 0, 1, True), (8, 3, 1, 1, 2, 2, False)]:
        assert pool_output_size(*args) == pool_out_dim(*args)


def test_and_tree_is_pruned() -> None:
    """Only eq values a later level reads are computed: 8 digits need 7 lt + 4 eq ANDs."""
    assert _count_ands(8, False) == 11
    assert _count_ands(8, True) == 14
    assert _count_ands(1, False) == 0
    assert _eq_plan(3, False) == [[False], [False]]


def test_shares_look_uniform() -> None:
    """Each party's output shares of DReLU are (close to) uniform bits: no leak via shares."""
    x = PRG().ring(4096, 16)
    x0, x1 = split(x, 16)
    s, k = run_pair(lambda p: P.drelu(p, x0, 16), lambda p: P.drelu(p, x1, 16), make=make_party)
    for sh in (s, k):
        assert abs(float(sh.mean()) - 0.5) < 0.05


def test_bad_inputs_are_named() -> None:
    def bad(p):  # noqa: ANN001, ANN202
        with pytest.raises(TypeError, match="relu input"):
            P.relu(p, np.zeros(3, dtype=np.int32), 16)
        with pytest.raises(ValueError, match="not reduced mod 2"):
            P.drelu(p, np.full(3, 1 << 20, dtype=np.uint64), 16)
        with pytest.raises(ValueError, match="shift 16"):
            P.trunc(p, np.zeros(3, dtype=np.uint64), 16, 16)
        with pytest.raises(ValueError, match="unknown truncation kind"):
            P.trunc(p, np.zeros(3, dtype=np.uint64), 16, 3, kind="round")
        with pytest.raises(ValueError, match="out_ell"):
            P.trunc(p, np.zeros(3, dtype=np.uint64), 16, 3, kind="reduce", out_ell=14)
        with pytest.raises(ValueError, match="pads"):
            P.maxpool(p, np.zeros((1, 1, 4, 4), dtype=np.uint64), 16, (2, 2), (1, 1), (2, 0, 0, 0))
        return True

    assert run_pair(bad, bad, make=make_party) == (True, True)


def test_empty_and_scalar_shapes_are_kept() -> None:
    def f(p):  # noqa: ANN001, ANN202
        return [
            P.relu(p, np.zeros((0,), np.uint64), 16).shape,
            P.relu(p, np.zeros((), np.uint64), 16).shape,
            P.trunc(p, np.zeros((2, 0, 3), np.uint64), 16, 4).shape,
            P.maxpool(p, np.zeros((1, 1, 1, 1), np.uint64), 16, (1, 1)).shape,
            P.b2a(p, np.zeros((0,), np.uint8), 8).shape,
        ]

    s, _ = run_pair(f, f, make=make_party)
    assert s == [(0,), (), (2, 0, 3), (1, 1, 1, 1), (0,)]


def test_chunked_paths() -> None:
    """Tensors larger than the party's pass size (``party.chunk``) are processed pass by pass
    with the same results."""

    def make_small_passes(role: str, chan):  # noqa: ANN001, ANN202
        p = make_party(role, chan)
        p.chunk = 7
        return p

    ell = 16
    x = to_ring(edge_values(ell), ell).reshape(-1)
    x0, x1 = split(x, ell)
    mine = {"server": (x0, x), "client": (x1, np.roll(x, 3))}

    def f(p):  # noqa: ANN001, ANN202
        share, own = mine[p.role]
        return (
            P.relu(p, share, ell, return_drelu=True),
            P.trunc(p, share, ell, 5),
            P.millionaire(p, own, ell, split=6),
            P.millionaire(p, own, ell, return_eq=True),
        )

    s, k = run_pair(f, f, make=make_small_passes)
    sx = signed(x, ell)
    assert (add(s[0][0], k[0][0], ell) == np.where((sx > 0).astype(bool), x, 0)).all()
    assert ((s[0][1] ^ k[0][1]) == (sx >= 0).astype(np.uint8)).all()
    assert (add(s[1], k[1], ell) == to_ring(sx >> 5, ell)).all()
    y = np.roll(x, 3)
    m6 = np.uint64(63)
    assert ((s[2][0] ^ k[2][0]) == ((x & m6) < (y & m6))).all()
    assert ((s[2][1] ^ k[2][1]) == (x < y)).all()
    assert ((s[3][0] ^ k[3][0]) == (x < y)).all()
    assert ((s[3][1] ^ k[3][1]) == (x == y)).all()
