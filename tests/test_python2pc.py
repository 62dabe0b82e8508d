"""Python 2PC emitter and executor: the generated program, run by two parties over real OT,
equals the cleartext fixed-point backend bit for bit (DESIGN.md §6)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from twofold.backends.cleartext import Cleartext
from twofold.backends.python2pc import emit_program
from twofold.backends.python2pc.emit import EmitError
from twofold.compiler.pipeline import CompileOptions, run_pipeline
from twofold.ir import Graph
from twofold.runtime.executor import Executor
from twofold.runtime.ring import to_signed
from twofold.runtime.session import run_parties


def local_ops_graph(size: int = 8) -> Graph:
    """No linear layers: pad, public and server addends, ReLU, MaxPool, concat, avg pool, trunc."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 2, size, size]}, name="x")
    p = g.add("pad", [x], {"pads": [0, 0, 1, 1, 0, 0, 1, 1]}, name="pad")
    c = g.add_param("shift", rng.normal(size=(1, 2, 1, 1)).astype(np.float32), public=True)
    a = g.add("add", [p, c], name="addc")
    r = g.add("relu", [a], name="r")
    m = g.add("maxpool", [r], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    w = g.add_param("wsub", rng.normal(size=(1, 2, 1, 1)).astype(np.float32))
    s = g.add("sub", [m, w], name="subw")
    cc = g.add("concat", [m, s], {"axis": 1}, name="cat")
    av = g.add("avgpool", [cc], {"kernel": [2, 2], "strides": [1, 1]}, name="avg")
    mc = g.add("mul_const", [av], {"value": -0.75}, name="mc")
    f = g.add("flatten", [mc], name="flat")
    g.outputs = [g.add("sigmoid", [f])]
    g.meta["input"] = {"range": [-3, 3]}
    return g


def compiled() -> Graph:
    return run_pipeline(local_ops_graph(), CompileOptions(scale=10))


def load(src: str) -> types.ModuleType:
    mod = types.ModuleType("program")
    exec(compile(src, "program.py", "exec"), mod.__dict__)  # noqa: S102 - our own output
    return mod


def test_program_is_deterministic_readable_and_weightless():
    g = compiled()
    src = emit_program(g, "m")
    assert src == emit_program(compiled(), "m")  # byte-identical on regeneration
    mod = load(src)
    assert mod.ELL == g.meta["ell"] and mod.STEPS > 0
    # one runtime call per op, with the IR line and scales as comments above it
    for node in g.nodes:
        assert f"# %{node.name} " in src
        assert f"rt.{node.op}({node.name!r}" in src
    assert "# scales: %" in src
    assert "del " in src
    for line in src.splitlines():
        if "rt.weight(" in line:
            assert "[" not in line.split("rt.weight(")[1]  # a key and shape, never values


def test_every_tensor_deleted_after_last_use():
    g = compiled()
    src = emit_program(g, "m")
    body = src.split("def run(rt):")[1]
    deleted = set()
    for line in body.splitlines():
        s = line.strip()
        if s.startswith("del "):
            deleted |= {v.strip() for v in s[4:].split(",")}
    live = {n.name.replace(".", "_") for n in g.nodes} - deleted
    assert live <= {o.replace(".", "_") for o in g.outputs}


def test_uncompiled_or_unsupported_graph_named():
    g = local_ops_graph()  # float IR, not compiled
    with pytest.raises(EmitError, match="%x: .*not fixed point"):
        emit_program(g)
    g = compiled()
    g["r_post"].op = "sigmoid"
    with pytest.raises(EmitError, match="%r_post: op 'sigmoid' has no 2PC form"):
        emit_program(g)


def test_two_party_run_equals_cleartext():
    g = compiled()
    mod = load(emit_program(g, "m"))
    x = np.random.default_rng(1).uniform(-3, 3, (1, 2, 8, 8))
    ref = Cleartext(g).run(x)
    weights = dict(g.params)

    def server(party):  # noqa: ANN001
        return mod.run(Executor(party, mod.ELL, weights=weights, steps=mod.STEPS))

    def client(party):  # noqa: ANN001
        rt = Executor(party, mod.ELL, inputs={"image": x}, steps=mod.STEPS)
        return mod.run(rt), rt

    srv, (out, rt) = run_parties(server, client, program_hash=mod.PROGRAM_HASH)
    o = g.outputs[0]
    assert srv == {o: None}
    assert np.array_equal(out[o], to_signed(ref[o], mod.ELL))
    kinds = rt.cost.by_kind()
    assert kinds["relu"].bytes_sent > 0 and kinds["pooling"].rounds > 0
    assert kinds["local"].bytes_sent == 0  # local ops on shares send nothing


def test_compile_writes_identical_program_twice(tmp_path):
    from twofold.ir import graph_from_json, program_hash
    from twofold.toolchain import compile_model

    for d in ("a", "b"):
        compile_model(None, tmp_path / d, graph=local_ops_graph(), preprocess="none",
                      input_range=(-3, 3))  # fmt: skip
    a, b = (tmp_path / d / "server" / "program.py" for d in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert not (tmp_path / "a" / "client" / "program.py").exists()  # the client runs the IR
    mod = load(a.read_text())
    for part in ("server", "client"):  # one hash: the public view of the IR
        ir = graph_from_json((tmp_path / "a" / part / "ir.json").read_text())
        assert mod.PROGRAM_HASH == program_hash(ir)
