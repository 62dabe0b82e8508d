"""ReLU and its overflow check in one millionaire (protocols/twin.py, protocols/relu_check.py):
exact on random shares and on the edge values, with and without the fused truncation, on both
OT sources; and cheaper than the ReLU plus the standalone check (protocols/overflow.py)."""

from __future__ import annotations

import numpy as np
import pytest
from fixedpoint_graphs import small_cnn

from twofold.backends.cleartext import Cleartext, simulate
from twofold.runtime import protocols as P
from twofold.runtime.executor import Executor
from twofold.runtime.fusion import relu_trunc_plan
from twofold.runtime.net import run_pair
from twofold.runtime.prg import PRG
from twofold.runtime.program import Program
from twofold.runtime.protocols import overflow
from twofold.runtime.protocols.overflow import exceeds
from twofold.runtime.protocols.relu_check import checked_relu, mergeable
from twofold.runtime.protocols.twin import split_at, twin_millionaire
from twofold.runtime.ring import from_signed, to_signed
from twofold.runtime.session import OT_SOURCES, Party
from twofold.toolchain import compile_model

# (ell, grain, shift): grain 0 (any limit), grain = shift (the fused case), grain > shift,
# a plain ReLU with a grain, and the DenseNet-121 224² rings (at ℓ = 40 the split is lowered
# to whole digits: twin.split_at)
CASES = [(8, 0, None), (8, 3, 3), (16, 9, 4), (32, 8, None), (32, 20, 12), (39, 18, 11),
         (40, 18, 11), (39, 0, None), (64, 40, 20)]  # fmt: skip
CH = 4  # channels: one limit each


def _case(ell: int, grain: int, n: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """Signed values x (n // CH per channel) and per-channel limits (multiples of 2^grain,
    0 < L ≤ 2^(ell−2)) with x in [−2^(ell−2), 2^(ell−2)], edge values first."""
    rng = np.random.default_rng(ell * 131 + grain)
    q = 1 << (ell - 2)
    units = rng.integers(1, max(2, q >> grain), CH, endpoint=True)
    lim = np.minimum(units << grain, q).astype(np.int64)
    lim[0] = q  # the largest limit the compiler allows
    lim[1] = 1 << grain  # the smallest
    x = rng.integers(-q, q, (n // CH, CH), dtype=np.int64, endpoint=True)
    for c in range(CH):
        L = int(lim[c])
        edges = [0, 1, -1, L, -L, L - 1, L + 1, q, -q, q - 1, 1 - q, (1 << grain) - 1]
        x[: len(edges), c] = np.clip(edges, -q, q)
    return x.T.reshape(1, CH, -1), lim.reshape(1, CH, 1)


def _share(x: np.ndarray, ell: int) -> tuple[np.ndarray, np.ndarray]:
    v = from_signed(x, ell)
    r = PRG().ring(v.size, ell).reshape(v.shape)
    m = np.uint64((1 << ell) - 1) if ell < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return r, (v - r) & m


def _pair(fn0, fn1, source: str):  # noqa: ANN001, ANN202
    return run_pair(fn0, fn1, timeout=120, make=lambda r, ch: Party(r, ch, "t", ot_source=source))


@pytest.mark.parametrize("source", OT_SOURCES)
def test_checked_relu_exact_with_edges(source: str) -> None:
    data = {c: _case(c[0], c[1]) for c in CASES}
    shares = {c: _share(x, c[0]) for c, (x, _) in data.items()}
    assert all(mergeable(*c) for c in CASES)

    def party(i: int):  # noqa: ANN202
        return lambda p: {
            c: checked_relu(p, sh[i], c[0], data[c][1] if i == 0 else None, c[1], c[2])
            for c, sh in shares.items()
        }

    a, b = _pair(party(0), party(1), source)
    for c, (x, lim) in data.items():
        ell, _, shift = c
        m = np.uint64((1 << ell) - 1) if ell < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
        y = to_signed((a[c][0] + b[c][0]) & m, ell)
        want = np.maximum(x, 0) >> (shift or 0)
        assert np.array_equal(y, want), c
        flags = a[c][1] ^ b[c][1]
        assert np.array_equal(flags, (x >= lim).astype(np.uint8)), c
        assert flags.any() and not flags.all(), c  # the edges reach both sides


def test_split_lowered_only_where_it_saves_a_digit() -> None:
    assert split_at(39, 18, 11) == 15  # ℓ = 40: 3 + 1 + 6 digits instead of 3 + 2 + 6
    assert split_at(38, 18, 11) == 18  # ℓ = 39: already whole digits above the grain
    assert split_at(31, 20, 12) == 20 and split_at(38, 7) == 7


@pytest.mark.parametrize("source", OT_SOURCES)
def test_twin_millionaire_is_two_comparisons(source: str) -> None:
    bits, grain, split = 23, 9, 5
    rng = np.random.default_rng(7)
    n = 700
    x = rng.integers(0, 1 << bits, n, dtype=np.uint64)
    hi2 = rng.integers(0, 1 << (bits - grain), n, dtype=np.uint64)
    x2 = (hi2 << np.uint64(grain)) | (x & np.uint64((1 << grain) - 1))
    y = rng.integers(0, 1 << bits, n, dtype=np.uint64)
    y[:4] = [0, x[1], x2[2], (1 << bits) - 1]  # y = 0, ties with either server value
    y[4] = x[4] ^ np.uint64(1 << grain)  # differs from x only above the grain

    a, b = _pair(lambda p: twin_millionaire(p, x, bits, grain, x2=x2, split=split),
                 lambda p: twin_millionaire(p, y, bits, grain, split=split), source)  # fmt: skip
    m = np.uint64((1 << split) - 1)
    assert np.array_equal(a[0] ^ b[0], ((x & m) < (y & m)).astype(np.uint8))
    assert np.array_equal(a[1] ^ b[1], (x < y).astype(np.uint8))
    assert np.array_equal(a[2] ^ b[2], (x2 < y).astype(np.uint8))


def test_server_refuses_a_limit_off_the_grain() -> None:
    x, lim = _case(16, 4, 64)
    s0, s1 = _share(x, 16)
    bad = lim + 1

    with pytest.raises(Exception, match="multiple of 2"):
        _pair(lambda p: checked_relu(p, s0, 16, bad, 4), lambda p: checked_relu(p, s1, 16, None, 4),
              "silent")  # fmt: skip


def _costs(steps0: list, steps1: list) -> list[tuple[int, int]]:
    """(bytes, rounds) of each step, run in order in one pair on the silent source, without
    the Ferret iterations a step happened to start (channel section ``ot-silent``: which step
    refills a direction's pool depends on where earlier steps left it, not on the step); the
    first step warms its lazy bootstrap up and is not reported."""

    def traffic(p):  # noqa: ANN001, ANN202
        fe = p.chan.stats.get("ot-silent")
        b, r = p.chan.bytes_sent + p.chan.bytes_recv, p.chan.rounds
        return (b, r) if fe is None else (b - fe.bytes_sent - fe.bytes_recv, r - fe.rounds)

    def run(steps):  # noqa: ANN001, ANN202
        def go(p):  # noqa: ANN001, ANN202
            out = []
            for fn in steps:
                b0, r0 = traffic(p)
                fn(p)
                b1, r1 = traffic(p)
                out.append((b1 - b0, r1 - r0))
            return out[1:]

        return go

    a, _ = _pair(run(steps0), run(steps1), "silent")
    return a


def test_merged_check_costs_less_than_relu_plus_check() -> None:
    ell, grain, shift = 39, 18, 11
    x, lim = _case(ell, grain, 1 << 14)
    s0, s1 = _share(x, ell)

    def new(i: int):  # noqa: ANN202
        return lambda p: checked_relu(p, (s0, s1)[i], ell, (lim, None)[i], grain, shift)

    def old(i: int):  # noqa: ANN202
        sh = (s0, s1)[i]
        return lambda p: (P.relu_trunc(p, sh, ell, shift), exceeds(p, sh, (lim, None)[i], ell))

    (b_old, r_old), (b_new, r_new) = _costs([new(0), old(0), new(0)], [new(1), old(1), new(1)])
    print(b_new * 8 / x.size, b_old * 8 / x.size, r_new, r_old)
    # without Ferret's iterations: 767 against 926 bits per element, 6 against 10 rounds (the
    # check apart is a whole DReLU; merged it costs the doubled digits' second leaves)
    assert b_new < 0.85 * b_old and r_new < r_old, (b_new, b_old, r_new, r_old)


# ---------------------------------------------------------------- end to end, forced overflow
@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """small_cnn in the checked range model, and an ordinary input that the calibration
    admits; the second checked ReLU's limits are then cut to 0 and its grain (server weights
    only: a forced overflow at a ReLU that is not the first)."""
    d = tmp_path_factory.mktemp("relucheck")
    rng = np.random.default_rng(1)
    cal = rng.uniform(-0.3, 0.3, (1, 3, 16, 16))
    np.save(d / "cal.npy", cal)
    g, _ = compile_model(None, None, graph=small_cnn(), calibrate=[d / "cal.npy"])
    relus = [n for n in g.nodes if n.op == "relu" and len(n.inputs) == 2]
    assert len(relus) >= 2 and all("grain" in n.attrs for n in relus)
    forced = g.copy()
    last = relus[1]
    key = g[last.inputs[1]].attrs["key"]
    forced.params = dict(g.params)
    lim = np.zeros_like(g.params[key])  # 0 is on every grain: flags x ≥ 0
    lim.reshape(-1)[::2] = 1 << last.attrs["grain"]
    forced.params[key] = lim
    return g, forced, last.name, cal * 0.9


class _Flags(Cleartext):
    """The cleartext interpreter, also keeping 1{x ≥ limit} per element of every checked ReLU."""

    def __init__(self, g) -> None:  # noqa: ANN001
        super().__init__(g)
        self.flags: dict[str, np.ndarray] = {}

    def run_node(self, node, args):  # noqa: ANN001, ANN201
        if node.op == "relu" and len(args) == 2:
            x, lim = (self.sig(node, a) for a in args)
            self.flags[node.name] = np.broadcast_to(x >= lim, x.shape).astype(np.uint8)
        return super().run_node(node, args)


def _two_party(g, x: np.ndarray, fuse: bool, source: str):  # noqa: ANN001, ANN202
    mod = Program(g)
    plan = relu_trunc_plan(g) if fuse else frozenset()

    def server(p):  # noqa: ANN001, ANN202
        rt = Executor(p, mod.ELL, weights=dict(g.params), steps=mod.STEPS, fuse=plan)
        mod.run(rt)
        rt.verdict()
        return rt

    def client(p):  # noqa: ANN001, ANN202
        rt = Executor(p, mod.ELL, inputs={"image": x}, steps=mod.STEPS, fuse=plan)
        out = mod.run(rt)
        return rt, out, rt.verdict()

    make = lambda r, ch: Party(r, ch, mod.PROGRAM_HASH, ot_source=source)  # noqa: E731
    srv, (cli, out, verdict) = run_pair(server, client, timeout=120, make=make)
    flags = {n: f0 ^ f1 for (n, f0), (_, f1) in zip(srv.checks, cli.checks, strict=True)}
    return out, verdict, flags, cli


@pytest.mark.parametrize(("source", "fuse", "merged"),
                         [("silent", True, True), ("iknp", True, True), ("silent", False, True),
                          ("silent", True, False)])  # fmt: skip
def test_two_parties_flag_like_simulate(checked, source: str, fuse: bool, merged: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Valid run: outputs equal simulate's; forced overflow: the same ReLU reported by both,
    and every per-element flag equal to the cleartext comparison, on every path."""
    g, forced, last, x = checked
    monkeypatch.setattr(overflow, "MERGED", merged)
    for graph, want_valid in ((g, True), (forced, False)):
        doc = simulate(graph, x)
        assert doc["valid"] is want_valid
        out, verdict, flags, cli = _two_party(graph, x, fuse, source)
        assert verdict == {"valid": want_valid, "overflow_at": None if want_valid else last}
        assert doc.get("overflow_at") == (None if want_valid else f"%{last}")
        ref = _Flags(graph)
        ref.run(x)
        assert flags.keys() == ref.flags.keys()
        for name, f in flags.items():
            assert np.array_equal(f.reshape(ref.flags[name].shape), ref.flags[name]), name
        if want_valid:
            (o,) = out.values()
            res = ref.run(x)[g.outputs[0]]
            assert np.array_equal(np.asarray(o).ravel(), ref.sig(g[g.outputs[0]], res).ravel())
        apart = [lc.name for lc in cli.cost.layers if lc.name.endswith(".check")]
        assert bool(apart) == (not merged)  # the merged path runs no check of its own


@pytest.mark.parametrize("source", OT_SOURCES)
def test_kkot_parts_one_flight_exact_widths(source: str) -> None:
    """Tables of one N and different widths in one OT batch (ot/parts.py): every receiver gets
    its chosen entries, cut to its part's width, in one flight, each part packed at its own
    width (the same bytes as separate batches, minus their flights)."""
    rng = np.random.default_rng(3)
    sizes, ks = [37, 0, 50, 5], [2, 3, 4, 33]
    tables = [
        rng.integers(0, 1 << k, (n, 16), dtype=np.uint64) for n, k in zip(sizes, ks, strict=True)
    ]
    choices = [rng.integers(0, 16, n).astype(np.uint8) for n in sizes]

    def run(fn):  # noqa: ANN001, ANN202
        def go(p):  # noqa: ANN001, ANN202
            p.ot.kkot_send([np.zeros((1, 16), np.uint64)], [1]) if p.is_server else None
            _ = None if p.is_server else p.ot.kkot_recv([np.zeros(1, np.uint8)], 16, [1])
            b0, r0 = p.chan.bytes_sent + p.chan.bytes_recv, p.chan.rounds
            out = fn(p)
            return out, p.chan.bytes_sent + p.chan.bytes_recv - b0, p.chan.rounds - r0

        return go

    def one(p):  # noqa: ANN001, ANN202
        if p.is_server:
            return p.ot.kkot_send(tables, ks)
        return p.ot.kkot_recv(choices, 16, ks)

    def apart(p):  # noqa: ANN001, ANN202
        if p.is_server:
            return [p.ot.kkot_send(t, k) for t, k in zip(tables, ks, strict=True) if len(t)]
        return [p.ot.kkot_recv(c, 16, k) for c, k in zip(choices, ks, strict=True) if len(c)]

    (_, b1, r1), (got, _, rc1) = _pair(run(one), run(one), source)
    (_, b2, _), (_, _, rc2) = _pair(run(apart), run(apart), source)
    for g, t, c in zip(got, tables, choices, strict=True):
        assert np.array_equal(g, t[np.arange(len(c)), c])
    assert rc1 == 1 and rc2 == 3
    assert b1 <= b2  # never more bytes; on IKNP less (each batch pads to 64 OTs)
    assert source != "silent" or b2 - b1 <= 128  # silent: the frames and sizes saved, no more


def test_compiler_rounds_limits_up_to_the_public_grain(checked) -> None:  # noqa: ANN001
    """Every checked ReLU has a grain from scales and structure alone, its limits are positive
    multiples of 2^grain, and the ring leaves x − limit no room to wrap."""
    g, _, _, _ = checked
    ell = g.meta["ell"]
    for n in (n for n in g.nodes if n.op == "relu" and len(n.inputs) == 2):
        src = g[n.inputs[0]]
        (user,) = g.users(n.name) if len(g.users(n.name)) == 1 else (None,)
        fused = user is not None and g[user].op == "trunc" and g[user].attrs["kind"] == "msb0"
        want = max(src.type.dtype.scale - 4, g[user].attrs["shift"] if fused else 0)
        assert n.attrs["grain"] == want, n.name
        lim = g.params[g[n.inputs[1]].attrs["key"]]
        assert np.all(lim > 0) and np.all(lim % (1 << want) == 0), n.name
        assert lim.max() <= 1 << (ell - 2) and src.meta["bits"] <= ell, n.name  # spare bit in
