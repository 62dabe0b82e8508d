"""ReLU fused with the truncation after it (runtime/fusion.py, protocols/relu_trunc.py): bit-exact
against the cleartext semantics and the fixed-point interpreter, and fewer rounds and bytes than
running the pair apart."""

from __future__ import annotations

import numpy as np
import pytest
from fixedpoint_graphs import small_cnn

from twofold.backends.cleartext import Cleartext
from twofold.compiler.pipeline import CompileOptions, run_pipeline
from twofold.ir import Graph
from twofold.runtime import protocols as P
from twofold.runtime.executor import Executor
from twofold.runtime.fusion import relu_trunc_plan
from twofold.runtime.net import run_pair
from twofold.runtime.prg import PRG
from twofold.runtime.program import Program
from twofold.runtime.ring import from_signed, to_signed
from twofold.runtime.session import OT_SOURCES, Party, run_parties

CASES = [(8, 1), (8, 6), (16, 4), (31, 12), (32, 11), (37, 13), (64, 20), (64, 62)]


def _values(ell: int, shift: int, n: int = 600) -> np.ndarray:
    lim = 1 << (ell - 1)
    rng = np.random.default_rng(ell * 97 + shift)
    v = rng.integers(-lim, lim - 1, n, dtype=np.int64, endpoint=True)
    edges = [0, 1, -1, lim - 1, -lim, -lim + 1, 1 << shift, (1 << shift) - 1, -(1 << shift)]
    v[: len(edges)] = edges
    return v


@pytest.mark.parametrize("source", OT_SOURCES)
def test_relu_trunc_protocol_exact_on_every_ring(source):
    xs = {c: from_signed(_values(*c), c[0]) for c in CASES}
    shares = {}
    for (ell, s), x in xs.items():
        r = PRG().ring(x.size, ell)
        shares[(ell, s)] = (r, (x - r) & np.uint64((1 << ell) - 1) if ell < 64 else x - r)

    def party(i: int):  # noqa: ANN202
        return lambda p: {c: P.relu_trunc(p, sh[i], c[0], c[1]) for c, sh in shares.items()}

    a, b = run_pair(
        party(0), party(1), timeout=120, make=lambda r, ch: Party(r, ch, "t", ot_source=source)
    )
    for (ell, s), y0 in a.items():
        y = to_signed(
            (y0 + b[(ell, s)]) & np.uint64((1 << ell) - 1) if ell < 64 else y0 + b[(ell, s)], ell
        )
        want = np.maximum(_values(ell, s), 0) >> s
        assert np.array_equal(y, want), (ell, s)


def _run(g: Graph, x: np.ndarray, fuse: frozenset[str]) -> tuple[dict, Executor]:
    mod = Program(g)
    weights = dict(g.params)

    def server(party):  # noqa: ANN001, ANN202
        mod.run(Executor(party, mod.ELL, weights=weights, steps=mod.STEPS, fuse=fuse))

    def client(party):  # noqa: ANN001, ANN202
        rt = Executor(party, mod.ELL, inputs={"image": x}, steps=mod.STEPS, fuse=fuse)
        return mod.run(rt), rt

    _, (out, rt) = run_parties(server, client, program_hash=mod.PROGRAM_HASH, timeout=120)
    return out, rt


def _compiled() -> Graph:
    g = small_cnn(size=8)
    g.meta["input"] = {"range": [-2, 2]}
    return run_pipeline(g, CompileOptions(scale=10))


def test_fused_program_equals_interpreter_with_fewer_rounds():
    g = _compiled()
    plan = relu_trunc_plan(g)
    assert plan, "small_cnn has a ReLU read only by its msb0 truncation"
    x = np.random.default_rng(3).uniform(-2, 2, (1, 3, 8, 8))
    ref = Cleartext(g).run(x)
    (o,) = g.outputs
    runs = {fuse: _run(g, x, plan if fuse else frozenset()) for fuse in (True, False)}
    for out, _ in runs.values():
        assert np.array_equal(out[o], to_signed(ref[o], g.meta["ell"]))
    fused, apart = (runs[f][1].cost for f in (True, False))
    assert [lc.op for lc in fused.layers].count("relu_trunc") == len(plan)
    nonlinear = ("relu", "truncation")

    def total(log, *what: str) -> int:  # noqa: ANN001
        kinds = log.by_kind()
        return sum(getattr(kinds[k], w) for k in nonlinear if k in kinds for w in what)

    assert total(fused, "rounds") < total(apart, "rounds")
    # both directions: on the silent source the fused output flight has the client offer a
    # 1-of-4 OT (3·ℓ bits up, 3·ℓ down) where the 1-of-8 OT and the COT took 7·ℓ down, ℓ up
    both = ("bytes_sent", "bytes_recv")
    assert total(fused, *both) < total(apart, *both)


def test_plan_fuses_only_a_relu_read_by_its_msb0_trunc_alone():
    g = _compiled()
    plan = relu_trunc_plan(g)
    (name,) = sorted(plan)[:1]
    (t,) = g.users(name)
    assert g[t].op == "trunc" and g[t].attrs["kind"] == "msb0"
    g.outputs = [*g.outputs, name]  # a revealed ReLU must exist apart
    assert name not in relu_trunc_plan(g)
    g.outputs = g.outputs[:-1]
    g[t].attrs["kind"] = "faithful"
    assert name not in relu_trunc_plan(g)
    g[t].attrs["kind"] = "msb0"
    g.add("add", [name, name], name="second_reader")  # two readers: the ReLU itself is needed
    assert name not in relu_trunc_plan(g)


def test_one_pass_per_tensor_costs_the_rounds_of_one():
    """A tensor of 4 passes (party.chunk) pays 4x the rounds of one pass for the same bytes."""
    ell, s, n = 31, 12, 4096
    v = _values(ell, s, n)
    x = from_signed(v, ell)
    r = PRG().ring(n, ell)
    shares = (r, (x - r) & np.uint64((1 << ell) - 1))

    def party(i: int, chunk: int):  # noqa: ANN202
        def run(p):  # noqa: ANN001, ANN202
            p.chunk = chunk
            r0 = p.chan.rounds
            return P.relu_trunc(p, shares[i], ell, s), p.chan.rounds - r0

        return run

    rounds = {}
    for chunk in (n // 4, n):
        (y0, _), (y1, rounds[chunk]) = run_parties(party(0, chunk), party(1, chunk))
        y = to_signed((y0 + y1) & np.uint64((1 << ell) - 1), ell)
        assert np.array_equal(y, np.maximum(v, 0) >> s)
    assert rounds[n] * 3 < rounds[n // 4], rounds
