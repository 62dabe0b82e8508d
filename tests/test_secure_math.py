"""Secure math inside the network (issue 17 deliverable 4; SIRNN §4–5): reciprocal and rsqrt
(ir/newton.py), softmax inside the network, LayerNorm, InstanceNorm, GELU (Erf table).

* each function's fixed-point result (the interpreter's) is within its stated error bound of
  float over a dense sweep;
* the protocols equal the interpreter bit for bit, on edge inputs (below the floor, negative,
  the top of the admitted range) and on torch-exported models run by ``twofold run`` as two
  processes over TCP.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from test_onnx_ops import _check
from test_run_cli import Server, client

from twofold.backends.cleartext import simulate
from twofold.compiler import CompileError
from twofold.ir import newton
from twofold.runtime.protocols.newton import newton_fn
from twofold.runtime.ring import from_signed, to_signed
from twofold.runtime.session import run_parties
from twofold.toolchain import compile_model, simulate_bundle

RNG = np.random.default_rng(17)

# (ℓ, input scale, output scale): the default ring, LayerNorm's variance at s + s/2, wider rings
RINGS = [(32, 12, 12), (35, 18, 12), (37, 12, 12), (40, 16, 11)]


@pytest.mark.parametrize("kind", newton.KINDS)
@pytest.mark.parametrize(("ell", "s_in", "s_out"), RINGS)
def test_newton_within_its_stated_bound(kind, ell, s_in, s_out):
    """Every input from 1 ulp to 2^(ℓ−3) (all of [1, 2^17), then a geometric grid): |out −
    g(X)| ≤ ε·g(X) + 2^-(t−1), ε = 2^-(p−2), for 1/x and 1/√x; ≤ 2^-(M+1) + 2^-t for ln x
    (ir/newton.py), where the result fits the ring."""
    top = 1 << (ell - 3)
    x = np.unique(np.concatenate([np.arange(1, 1 << 17), np.geomspace(1, top - 1, 200_000)]))
    x = x.astype(np.int64)
    got = newton.evaluate(x, kind, ell, s_in, s_out, 0.0) / 2.0**s_out
    want = newton.function(kind, x / 2.0**s_in)
    fits = want * 2.0**s_out < 2.0 ** (ell - 2)
    err = np.abs(got - want)[fits]
    assert np.all(err <= newton.error_bound(kind, ell, s_out, want[fits]))
    if kind != "log":  # and the relative part is far below 1% where the result has many digits
        big = want[fits] * 2.0**s_out > 2**16
        assert np.max(err[big] / want[fits][big]) < 4 * 2.0 ** -(newton.precision(ell) - 2)


def _shares(x: np.ndarray, ell: int) -> tuple[np.ndarray, np.ndarray]:
    ring = from_signed(x, ell)
    r = RNG.integers(0, 1 << ell, x.shape, dtype=np.uint64)  # test shares only, no secret
    return r, (ring - r) & np.uint64((1 << ell) - 1)


@pytest.mark.parametrize("kind", newton.KINDS)
@pytest.mark.parametrize(("ell", "s_in", "s_out", "floor"), [(32, 12, 12, 0.0), (37, 18, 12, 0.5)])
def test_newton_protocol_equals_interpreter(kind, ell, s_in, s_out, floor):
    """2PC (socketpair) == ir.newton.evaluate bit for bit: negatives and values below the
    floor (clamped), every small value, random values, the top of the range."""
    top = 1 << (ell - 3)
    x = np.concatenate([np.arange(-5, 70), RNG.integers(0, top, 200), [top - 1, top // 2]])
    x = x.astype(np.int64)
    a, b = _shares(x, ell)

    def run(mine: np.ndarray):  # noqa: ANN202
        return lambda party: newton_fn(party, mine, ell, kind, s_in, s_out, floor)

    s0, s1 = run_parties(run(a), run(b))
    got = to_signed((s0 + s1) & np.uint64((1 << ell) - 1), ell)
    assert np.array_equal(got, newton.evaluate(x, kind, ell, s_in, s_out, floor))


def _model(tmp_path, nodes, shape, inits=(), opset=17):  # noqa: ANN001, ANN202
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    g = helper.make_graph(nodes, "t", [x], [y], list(inits))
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _simulate(g, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    (out,) = simulate(g, x)["outputs"].values()
    return np.asarray(out["values"]).reshape(x.shape)


def test_softmax_inside_within_its_stated_bound(tmp_path):
    """A softmax followed by another op (so inside the network, compiler/softmax.py) over 10
    classes, 1,536 rows with logits spread from ±0.4 to ±8: |y − softmax| ≤ 2^-7·softmax +
    2^-(s−2) (table 2^-9, reciprocal 2^-12, the product's and sum's floors)."""
    k = numpy_helper.from_array(np.array(2.0, np.float32), "k")
    nodes = [helper.make_node("Softmax", ["x"], ["p"]), helper.make_node("Mul", ["p", "k"], ["y"])]
    path = _model(tmp_path, nodes, [1, 256, 10], [k])
    g, _ = compile_model(path, None, preprocess="none", input_range=(-8, 8))
    assert not {"softmax", "exp"} & {n.op for n in g.nodes}
    for _ in range(6):
        spread = RNG.uniform(0.05, 1, (1, 256, 1))
        x = (RNG.uniform(-8, 8, (1, 256, 10)) * spread).astype(np.float32)
        e = np.exp(x - x.max(-1, keepdims=True))
        want = e / e.sum(-1, keepdims=True)
        err = np.abs(_simulate(g, x) / 2 - want)
        assert np.all(err <= 2.0**-7 * want + 2.0**-10)


def test_log_softmax_inside_within_its_stated_bound(tmp_path):
    """A LogSoftmax followed by another op (compiler/softmax.py: d − log Σ e^d) over 10
    classes: |y − log_softmax| ≤ 2^-7·(1 + 1/p_max) + 2^-(s−2) (the exp table's relative
    error in the sum, the log table's 2^-9, floors)."""
    k = numpy_helper.from_array(np.array(2.0, np.float32), "k")
    nodes = [helper.make_node("LogSoftmax", ["x"], ["p"]),
             helper.make_node("Mul", ["p", "k"], ["y"])]  # fmt: skip
    path = _model(tmp_path, nodes, [1, 256, 10], [k])
    g, _ = compile_model(path, None, preprocess="none", input_range=(-8, 8))
    assert "log" in {n.op for n in g.nodes}
    for _ in range(4):
        x = RNG.uniform(-8, 8, (1, 256, 10)) * RNG.uniform(0.05, 1, (1, 256, 1))
        x = x.astype(np.float32)
        z = x.astype(np.float64) - x.max(-1, keepdims=True)
        want = z - np.log(np.exp(z).sum(-1, keepdims=True))
        err = np.abs(_simulate(g, x) / 2 - want)
        assert np.all(err <= 2.0**-7 + 2.0**-10)


def test_layer_norm_within_its_stated_bound(tmp_path):
    """LayerNormalization over 16 features, rows with σ from 0.05 to 3 and offsets ±2:
    |y − LN(x)| ≤ 2^-(s−1)/σ + 2^-9·|LN(x)| + 2^-(s−1) (the deviation's ulp magnified by
    1/σ; rsqrt's ε; the variance at scale s + s/2)."""
    d = 16
    inits = [numpy_helper.from_array(np.ones(d, np.float32), "g"),
             numpy_helper.from_array(np.zeros(d, np.float32), "b")]  # fmt: skip
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], epsilon=1e-5)]
    path = _model(tmp_path, nodes, [1, 256, d], inits)
    g, _ = compile_model(path, None, preprocess="none", input_range=(-8, 8))
    for sd in (0.05, 0.2, 1.0, 3.0):
        x = RNG.normal(0, sd, (1, 256, d)) + RNG.uniform(-2, 2, (1, 256, 1))
        x = x.clip(-8, 8).astype(np.float32)
        x64 = x.astype(np.float64)
        sigma = np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
        want = (x64 - x64.mean(-1, keepdims=True)) / sigma
        err = np.abs(_simulate(g, x) - want)
        assert np.all(err <= 2.0**-11 / sigma + 2.0**-9 * np.abs(want) + 2.0**-11), sd


def test_gelu_within_its_stated_bound(tmp_path):
    """GELU as torch exports it (Div by √2, Erf, Add 1, Mul x, Mul ½) over [−6, 6] in steps
    of 2^-10: |y − GELU(x)| ≤ |x|·β/2 + 2^-(s−2), β the erf table's bound (ir/lut.py)."""
    from twofold.ir import lut

    c = [numpy_helper.from_array(np.array(v, np.float32), k)
         for k, v in (("r2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))]  # fmt: skip
    nodes = [
        helper.make_node("Div", ["x", "r2"], ["u"]),
        helper.make_node("Erf", ["u"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["x", "p"], ["q"]),
        helper.make_node("Mul", ["q", "half"], ["y"]),
    ]
    x = np.arange(-6, 6, 2.0**-10).reshape(1, -1).astype(np.float32)
    g, _ = compile_model(_model(tmp_path, nodes, list(x.shape), c), None, preprocess="none",
                         input_range=(-6, 6))  # fmt: skip
    x64 = x.astype(np.float64)
    want = x64 * (1 + np.vectorize(math.erf)(x64 / math.sqrt(2))) / 2
    err = np.abs(_simulate(g, x) - want)
    assert np.all(err <= np.abs(x64) * lut.error_bound("erf", 1.0, 12) / 2 + 2.0**-10)


def test_torch_layer_norm_below_opset_17_and_tanh_gelu_two_party(tmp_path):
    """torch's LayerNorm at opset 13 (ReduceMean, Sub, Pow 2, Add ε, Sqrt, Div: the Div by a
    Sqrt becomes one rsqrt) and GELU's tanh form (Pow 3, Tanh), plus Reciprocal, Div by a
    positive computed value and a LogSoftmax inside the network: within 1e-2 of onnxruntime
    and bit-exact in 2PC."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln = torch.nn.LayerNorm(6)
            self.fc = torch.nn.Linear(6, 6)

        def forward(self, x):  # noqa: ANN001, ANN202
            y = torch.nn.functional.gelu(self.fc(self.ln(x)), approximate="tanh")
            y = y / (1.5 + torch.sigmoid(y)) + torch.reciprocal(2 + torch.relu(x))
            return torch.log_softmax(y, -1) * 0.5

    torch.manual_seed(0)
    path = tmp_path / "ln13.onnx"
    torch.onnx.export(Net().eval(), (torch.zeros(1, 4, 6),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=13, dynamo=False)  # fmt: skip
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Sqrt", "Div", "Pow", "Tanh", "Reciprocal", "ReduceMean", "LogSoftmax"} <= ops
    _check(path, RNG.uniform(-3, 3, (1, 4, 6)))


def test_torch_group_norm_batch_two_party(tmp_path):
    """GroupNorm as torch exports it (Reshape, InstanceNormalization, Reshape, Mul, Add) and
    SiLU on a batch of 2: within 1e-2 of onnxruntime and bit-exact in 2PC."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.g = torch.nn.GroupNorm(2, 8)
            self.o = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.o(torch.nn.functional.silu(self.g(self.c(x))))

    torch.manual_seed(0)
    path = tmp_path / "gn.onnx"
    torch.onnx.export(Net().eval(), (torch.zeros(2, 3, 6, 6),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)  # fmt: skip
    assert "InstanceNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    _check(path, RNG.uniform(-2, 2, (2, 3, 6, 6)))


def test_refusals_name_the_node(tmp_path):
    """A divisor that may be negative, a Pow exponent without a secure form: one clear
    error each."""
    nodes = [helper.make_node("Div", ["x", "x"], ["y"], name="div0")]
    with pytest.raises(CompileError, match="may be negative"):
        compile_model(_model(tmp_path, nodes, [1, 4]), None, preprocess="none",
                      input_range=(-1, 1))  # fmt: skip
    nodes = [helper.make_node("Pow", ["x", "k"], ["y"], name="pow0")]
    k = numpy_helper.from_array(np.array(1.7, np.float32), "k")
    with pytest.raises(ValueError, match="'pow0'.*exponent 1.7"):
        compile_model(_model(tmp_path, nodes, [1, 4], [k]), None, preprocess="none",
                      input_range=(-1, 1))  # fmt: skip


class MathNet(torch.nn.Module):
    """InstanceNorm, GELU (Erf), a softmax gate over channels, LayerNorm over tokens' features,
    a division by a computed value."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.InstanceNorm2d(8, affine=True)
        self.b = torch.nn.Conv2d(3, 8, 1)
        self.ln = torch.nn.LayerNorm(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):  # noqa: ANN001, ANN202
        gate = torch.softmax(self.b(x), dim=1)
        h = torch.nn.functional.gelu(self.norm(self.a(x))) * gate
        t = self.ln(h.flatten(2).transpose(1, 2))
        t = t / (1 + torch.sigmoid(t))
        return self.fc(t).mean(1)


def test_math_model_two_processes_over_tcp_equal_simulate(tmp_path):
    """The torch-exported MathNet (opset 17: InstanceNormalization, Erf, Softmax inside,
    LayerNormalization, Div) compiles, simulates within 1e-2 of onnxruntime and runs as
    ``twofold run server`` + ``twofold run client`` over TCP bit for bit equal to simulate."""
    torch.manual_seed(3)
    net = MathNet().eval()
    with torch.no_grad():
        net.norm.weight.uniform_(0.5, 1.5)
        net.norm.bias.uniform_(-0.5, 0.5)
    path = tmp_path / "math.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 6, 6),), str(path), input_names=["x"],
                      output_names=["logits"], opset_version=17, dynamo=False)  # fmt: skip
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"InstanceNormalization", "Erf", "Softmax", "LayerNormalization", "Div"} <= ops
    x = RNG.normal(0, 1, (1, 3, 6, 6)).clip(-3, 3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    bundle = tmp_path / "bundle"
    g, _ = compile_model(path, bundle, preprocess="none", input_range=(-3, 3),
                         calibrate=[tmp_path / "x.npy"])  # fmt: skip
    used = {n.op for n in g.nodes}
    assert {"reciprocal", "rsqrt", "lut", "mul"} <= used
    (want,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )
    sim = json.loads(json.dumps(simulate_bundle(bundle, tmp_path / "x.npy")))
    (out,) = sim["logits"].values()
    assert np.abs(np.asarray(out["values"]) - want.ravel()).max() <= 1e-2
    srv = Server(bundle, "--once")
    try:
        res = client(bundle, srv.addr, tmp_path / "x.npy", tmp_path / "out.json", "--quiet")
    finally:
        _, err = srv.stop()
    assert res.returncode == 0, res.stderr + err
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["logits"] == sim["logits"] and got["outputs"] == sim["outputs"]
    math_bytes = got["cost"]["by_kind"]["math"]["bytes_sent"]
    assert math_bytes > 0 and math.isfinite(math_bytes)


def test_lut_range_holds_every_result():
    """compiler/ranges.py's bound for a table contains every value the table produces (the
    pieces are moved off their chords, so the endpoints of f alone would not bound them)."""
    from twofold.compiler.ranges import _lut_range
    from twofold.ir import Fix, Graph, TensorType, Visibility, lut

    for fn in lut.FUNCTIONS:
        m, s = lut.spec(fn), 12
        g = Graph()
        x = g.add("input", attrs={"name": "x", "shape": [1, 4]},
                  type=TensorType((1, 4), Fix(32, s), Visibility.CLIENT))  # fmt: skip
        node = g[g.add("lut", [x], {"fn": fn, "alpha": 0.7}, name="t")]
        for lo, hi in ((m.lo - 1.0, min(m.hi, 7.0)), (-0.75, -0.25)):
            q = np.arange(int(lo * 2**s), int(hi * 2**s))
            vals = lut.evaluate(q, fn, 0.7, s) / 2.0**s
            (rlo,), (rhi,) = _lut_range(node, (np.array([lo]), np.array([hi])))
            assert rlo <= vals.min() and vals.max() <= rhi, fn
