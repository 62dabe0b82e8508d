"""The compile report's HE estimate of a grouped (depthwise) convolution counts each group's own
ciphertexts (runtime/linear/linear.py packs every group apart): 8 channels of 4×4 are 8
ciphertexts in and 8 out, not one each way."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from twofold.compiler.report import HE_LOGQ, HE_SLOTS
from twofold.toolchain import compile_model


def test_depthwise_estimate_counts_a_ciphertext_per_channel(tmp_path):
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w"
    )
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=8, pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "dw", [x], [y], [w])
    path = tmp_path / "dw.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    _, report = compile_model(path, None, preprocess="none", input_range=(-2, 2))
    (row,) = [r for r in report["layers"] if r["op"] == "conv2d"]
    ct = 2 * HE_SLOTS * HE_LOGQ // 8
    assert 16 * ct <= row["comm_bytes"] < 17 * ct
