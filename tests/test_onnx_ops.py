"""Issue 17's ONNX ops as vendors' files have them: each compiles, simulates within 1e-2 of
onnxruntime, and runs in 2PC bit for bit equal to simulate (DESIGN.md §6).

Local ops (Neg, Sum, Slice, Split, Tile, ReduceSum/Mean, Pad reflect/edge, 1-D conv/pool as
2-D with a unit axis) and the comparison ops lowered onto ReLU (Max, Min, Abs, PRelu, Clip).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from twofold.backends.cleartext import Cleartext, simulate
from twofold.compiler import CompileError
from twofold.runtime.executor import Executor
from twofold.runtime.program import Program
from twofold.runtime.ring import to_signed
from twofold.runtime.session import run_parties
from twofold.toolchain import compile_model

RNG = np.random.default_rng(5)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.normal(0, 0.5, shape).astype(np.float32), name)


def _i64(name: str, values) -> onnx.TensorProto:  # noqa: ANN001
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _save(tmp_path, nodes, x_shape, y_name, inits=(), opset=17):  # noqa: ANN001, ANN202
    """The model, its output's shape taken from ONNX shape inference."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    probe = helper.make_graph(nodes, "ops", [x], [], list(inits))
    probe = helper.make_model(probe, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True).graph.value_info
    (y,) = [vi for vi in inferred if vi.name == y_name]
    graph = helper.make_graph(nodes, "ops", [x], [y], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def _two_party(g, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Both parties walk the public IR (runtime.program), as ``twofold run`` does."""
    mod = Program(g)
    weights = dict(g.params)

    def server(party):  # noqa: ANN001, ANN202
        return mod.run(Executor(party, mod.ELL, weights=weights, steps=mod.STEPS))

    def client(party):  # noqa: ANN001, ANN202
        return mod.run(Executor(party, mod.ELL, inputs={"x": x}, steps=mod.STEPS))

    _, out = run_parties(server, client, program_hash=mod.PROGRAM_HASH)
    return out[g.outputs[0]]


def _check(path, x: np.ndarray, two_party: bool = True) -> None:  # noqa: ANN001
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"x": x.astype(np.float32)})
    np.save(path.with_suffix(".npy"), x)
    g, _ = compile_model(
        path, None, preprocess="none", input_range=(-4, 4), calibrate=[path.with_suffix(".npy")]
    )
    (got,) = simulate(g, x)["outputs"].values()
    assert got["shape"] == list(want.shape)
    assert np.abs(np.asarray(got["values"]) - want.ravel()).max() <= 1e-2 * max(
        1, np.abs(want).max()
    )
    if two_party:
        o = g.outputs[0]
        ref = to_signed(Cleartext(g).run(x)[o], g.meta["ell"])
        assert np.array_equal(_two_party(g, x), ref)


def test_local_ops_two_party(tmp_path):
    """Neg, Sum, Slice, Split, Tile, ReduceSum, ReduceMean over one axis, Pad reflect and
    edge: data movement and sums on shares, no messages beyond the ReLU's."""
    nodes = [
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Sum", ["x", "r", "n"], ["s"]),
        helper.make_node("Slice", ["s", "st", "en", "ax", "sp"], ["sl"]),
        helper.make_node("Split", ["sl", "sz"], ["a", "b"], axis=1),
        helper.make_node("Tile", ["b", "rep"], ["t"]),
        helper.make_node("Concat", ["a", "t"], ["c"], axis=1),
        helper.make_node("Pad", ["c", "pr"], ["p1"], mode="reflect"),
        helper.make_node("Pad", ["p1", "pe"], ["p2"], mode="edge"),
        helper.make_node("ReduceSum", ["p2", "rs"], ["q"], keepdims=1),
        helper.make_node("ReduceMean", ["q", "ax3"], ["y"], keepdims=0),
    ]
    inits = [
        _i64("st", [0, 1]), _i64("en", [99, 6]), _i64("ax", [1, 3]), _i64("sp", [1, 2]),
        _i64("sz", [1, 2]), _i64("rep", [1, 2, 1, 1]), _i64("pr", [0, 0, 1, 1, 0, 0, 1, 1]),
        _i64("pe", [0, 0, 2, 0, 0, 0, 0, 1]), _i64("rs", [1]), _i64("ax3", [3]),
    ]  # fmt: skip
    path = _save(tmp_path, nodes, [1, 3, 6, 6], "y", inits, opset=18)
    _check(path, RNG.uniform(-2, 2, (1, 3, 6, 6)))


def test_comparison_ops_two_party(tmp_path):
    """Max/Min (with a tensor and a weight), Abs, PRelu (per-channel slope), Clip with both
    bounds: lowered to ReLUs (+ the slope's product), exact in 2PC."""
    nodes = [
        helper.make_node("Abs", ["x"], ["a"]),
        helper.make_node("Max", ["x", "lo"], ["mx"]),
        helper.make_node("Min", ["mx", "a", "hi"], ["mn"]),
        helper.make_node("PRelu", ["mn", "slope"], ["pr"]),
        helper.make_node("Clip", ["pr", "cmin", "cmax"], ["y"]),
    ]
    inits = [
        _w("lo", 1, 2, 1, 1), _w("hi", 2, 1, 1), _w("slope", 2, 1, 1),
        numpy_helper.from_array(np.array(-0.7, np.float32), "cmin"),
        numpy_helper.from_array(np.array(1.3, np.float32), "cmax"),
    ]  # fmt: skip
    path = _save(tmp_path, nodes, [1, 2, 4, 4], "y", inits)
    _check(path, RNG.uniform(-3, 3, (1, 2, 4, 4)))


def test_conv1d_pool1d_and_gemm_with_computed_c(tmp_path):
    """1-D Conv and MaxPool run as 2-D with a unit axis; Gemm whose C is computed (the
    addmm traceback of issue 17) becomes gemm + add."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "bias"], ["c"], pads=[1, 1], strides=[2]),
        helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2], strides=[1]),
        helper.make_node("Flatten", ["m"], ["f"]),
        helper.make_node("Gemm", ["f", "B", "f2"], ["y"]),
        helper.make_node("Slice", ["f", "s0", "s1", "s2"], ["f2"]),
    ]
    inits = [_w("w", 4, 3, 3), _w("bias", 4), _w("B", 12, 3), _i64("s0", [0]),
             _i64("s1", [3]), _i64("s2", [1])]  # fmt: skip
    nodes = nodes[:3] + [nodes[4], nodes[3]]
    path = _save(tmp_path, nodes, [1, 3, 7], "y", inits)
    _check(path, RNG.uniform(-2, 2, (1, 3, 7)))


def test_softmax_before_reshape_is_the_output_function(tmp_path):
    """SqueezeNet's ending: softmax over channels of [1, C, 1, 1], then a reshape."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Softmax", ["g"], ["s"], axis=1),
        helper.make_node("Reshape", ["s", "shape"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [1, 3, 4, 4], "y", [_w("w", 5, 3, 1, 1), _i64("shape", [1, 5])])
    _check(path, RNG.uniform(-2, 2, (1, 3, 4, 4)), two_party=False)
    g, _ = compile_model(path, None, preprocess="none", input_range=(-4, 4))
    assert list(g.meta["output_function"].values()) == ["softmax"]


def test_prelu_slope_varying_within_a_channel_is_refused(tmp_path):
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["y"])]
    path = _save(tmp_path, nodes, [1, 2, 3], "y", [_w("slope", 2, 3)])
    with pytest.raises(CompileError, match="one slope per channel"):
        compile_model(path, None, preprocess="none", input_range=(-4, 4))


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [2, 2], "pads": [1, 0, 1, 0], "output_padding": [1, 0]},
        {"strides": [3, 1], "pads": [3, 0, 3, 1], "dilations": [1, 2], "group": 2},
    ],
)
def test_conv_transpose_on_the_conv_protocols(tmp_path, attrs):
    """ConvTranspose = zero insertion + padding + conv2d with the flipped kernel; in 2PC it
    is the conv2d protocol on a data-moved share (pads larger than the kernel crop)."""
    g = attrs.get("group", 1)
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)]
    path = _save(tmp_path, nodes, [1, 4, 3, 4], "y", [_w("w", 4, 6 // g, 3, 3), _w("b", 6)])
    _check(path, RNG.uniform(-2, 2, (1, 4, 3, 4)))


def test_math_functions_two_party(tmp_path):
    """Tanh, a sigmoid inside the network (SiLU), Exp, ELU, SELU, Softplus: table lookups
    over 1-out-of-N OT, bit-exact with simulate and within 1e-2 of onnxruntime."""
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Sigmoid", ["x"], ["sg"]),
        helper.make_node("Add", ["t", "sg"], ["a"]),  # sigmoid not final: a lut
        helper.make_node("Exp", ["a"], ["e"]),
        helper.make_node("Elu", ["x"], ["el"], alpha=0.7),
        helper.make_node("Selu", ["el"], ["se"]),
        helper.make_node("Softplus", ["se"], ["sp"]),
        helper.make_node("Sum", ["e", "sp"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [1, 2, 3, 3], "y")
    _check(path, RNG.uniform(-3, 3, (1, 2, 3, 3)))


@pytest.mark.parametrize("fn", sorted(__import__("twofold.ir.lut").ir.lut.FUNCTIONS))
def test_lut_error_within_its_stated_bound(fn):
    """Over a fine grid of the domain, |f(x) − table| ≤ the documented bound (ir/lut.py)."""
    from twofold.ir import lut

    m, s, alpha = lut.spec(fn), 12, 0.7
    q = np.arange(m.lo << s, min(m.hi, 6 if fn == "exp" else m.hi) << s, 7, dtype=np.int64)
    got = lut.evaluate(q, fn, alpha, s) / 2.0**s
    want = m.f(q / 2.0**s, alpha)
    err = np.abs(got - want)
    if fn == "exp":  # |e^x − lut| ≤ e^x·e^δ·δ²/8 + 1.5·2^-s
        delta = (m.hi - m.lo) / 2**m.bits
        assert np.all(err <= want * np.exp(delta) * delta**2 / 8 + 1.5 * 2.0**-s + 1e-12)
    else:
        assert err.max() <= lut.error_bound(fn, alpha, s) + 1e-12


def test_product_of_two_shared_tensors_silu_and_gating(tmp_path):
    """SiLU x·sigmoid(x) and a squeeze-excitation style gate (a per-channel shared tensor
    broadcast over a feature map): products of two shared tensors by correlated OT."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["silu"]),
        helper.make_node("GlobalAveragePool", ["silu"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["gate"]),
        helper.make_node("Mul", ["silu", "gate"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [1, 2, 4, 4], "y")
    _check(path, RNG.uniform(-3, 3, (1, 2, 4, 4)))
