"""Average pools whose 1/count is not a power of two keep the scale's precision: the mean is
``mul_const(2^-t)`` then ``mul_const(2^t / count)`` (compiler/lower.py: _mean_of_sum). One
factor 1/count rounded at scale s was 0 for EfficientNet-B0's 112² squeeze-excitation pools at
s = 11, so its 224² logits were unrelated to onnxruntime's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from twofold.backends.cleartext import Cleartext, simulate
from twofold.runtime.executor import Executor
from twofold.runtime.program import Program
from twofold.runtime.ring import to_signed
from twofold.runtime.session import run_parties
from twofold.toolchain import compile_model


def _pool_model(tmp_path, side: int):  # noqa: ANN001, ANN202
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, side, side])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], "p", [x], [y])
    path = tmp_path / f"pool{side}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _compiled(path, x: np.ndarray, scale: int):  # noqa: ANN001, ANN202
    np.save(path.with_suffix(".npy"), x)
    g, _ = compile_model(
        path, None, scale=scale, preprocess="none", input_range=(-4, 4),
        calibrate=[path.with_suffix(".npy")],
    )  # fmt: skip
    return g


@pytest.mark.parametrize("side", [7, 112])
def test_global_mean_keeps_precision(tmp_path, side):
    """|mean − onnxruntime| within a few units in the last place at s = 11 (112²: 1/12544;
    7²: 1/49, which one factor rounded to 42/2048, 0.5 % off)."""
    path = _pool_model(tmp_path, side)
    x = np.random.default_rng(side).uniform(0.5, 3.0, (1, 2, side, side))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"x": x.astype(np.float32)})
    g = _compiled(path, x, scale=11)
    (got,) = simulate(g, x)["outputs"].values()
    assert np.abs(np.asarray(got["values"]) - want.ravel()).max() <= 4 * 2.0**-11


def test_global_mean_two_party_equals_simulate(tmp_path):
    """The extra power-of-two truncation runs in 2PC bit for bit like the interpreter."""
    path = _pool_model(tmp_path, 7)
    x = np.random.default_rng(1).uniform(-3.0, 3.0, (1, 2, 7, 7))
    g = _compiled(path, x, scale=11)
    mod = Program(g)

    def server(party):  # noqa: ANN001, ANN202
        return mod.run(Executor(party, mod.ELL, weights=dict(g.params), steps=mod.STEPS))

    def client(party):  # noqa: ANN001, ANN202
        return mod.run(Executor(party, mod.ELL, inputs={"x": x}, steps=mod.STEPS))

    _, out = run_parties(server, client, program_hash=mod.PROGRAM_HASH)
    o = g.outputs[0]
    assert np.array_equal(out[o], to_signed(Cleartext(g).run(x)[o], g.meta["ell"]))
