"""ONNX frontend: op coverage against onnxruntime, folding of shape chains, metadata, errors."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from twofold.backends.float_ref import run_float
from twofold.backends.onnxruntime_ref import run_onnxruntime
from twofold.frontends.onnx import FrontendError, load_onnx

RNG = np.random.default_rng(7)


def _agree(path, shape, input_shape=None, tol=1e-4):
    x = RNG.standard_normal(shape).astype(np.float32)
    g = load_onnx(path, input_shape)
    ours = run_float(g, {g.inputs()[0].name: x}, np.float64)
    ref = run_onnxruntime(path, {g.inputs()[0].name: x})
    for o, r in zip(g.outputs, ref.values(), strict=True):
        err = np.abs(ours[o] - r).max() / max(np.abs(r).max(), 1e-6)
        assert err <= tol, (o, err)
    return g


class _KitchenSink(nn.Module):
    """Ops torch emits beyond the zoo: pads, ceil-mode pools, dilation, view chains, MatMul..."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=(1, 2), dilation=2)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.LeakyReLU(0.1)
        self.avg = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True)
        self.avg2 = nn.AvgPool2d(2, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.mp = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.w = nn.Parameter(torch.randn(8, 5))
        self.offset = nn.Parameter(torch.randn(1, 8, 1, 1))
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = nn.functional.pad(x, (1, 0, 2, 1), value=0.25)
        x = self.act(self.bn(self.conv(x)))
        x = self.mp(self.avg(x) - self.offset) / 2.0
        x = self.avg2(x) * 3.0
        x = x.permute(0, 2, 3, 1)  # NHWC
        x = torch.matmul(x.reshape(x.size(0), -1, 8), self.w)  # Shape/Gather chain
        x = x.view(x.size(0), -1)
        return torch.softmax(x, dim=1)


def _export(model, path, size, opset):
    model.eval()
    torch.onnx.export(
        model, (torch.randn(1, 3, size, size),), str(path), input_names=["image"],
        output_names=["logits"], opset_version=opset, dynamo=False,
        dynamic_axes={"image": {0: "batch"}},
    )  # fmt: skip
    return path


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_kitchen_sink_matches_onnxruntime(tmp_path, opset):
    torch.manual_seed(0)
    path = _export(_KitchenSink(), tmp_path / "k.onnx", 21, opset)
    g = _agree(path, (1, 3, 21, 21))
    ops = {n.op for n in g.nodes}
    assert {"pad", "leaky_relu", "avgpool", "maxpool", "transpose", "gemm", "mul_const"} <= ops
    assert g.meta["output_function"] == {"logits": "softmax"}
    assert g.meta["onnx_opset"] == opset


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_gemm_attributes_and_auto_pad(tmp_path):
    """Gemm alpha/beta/transA/transB fold into the weights; SAME_UPPER/LOWER pads computed."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal((6, 36)).astype(np.float32), "b")
    c = numpy_helper.from_array(RNG.standard_normal((6,)).astype(np.float32), "c")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Conv", ["y", "w2"], ["y2"], auto_pad="SAME_LOWER"),
        helper.make_node("Flatten", ["y2"], ["f"], axis=0),
        helper.make_node("Transpose", ["f"], ["ft"], perm=[1, 0]),
        helper.make_node("Gemm", ["ft", "b", "c"], ["out"], alpha=0.5, beta=2.0, transA=1,
                         transB=1),
    ]  # fmt: skip
    w2 = numpy_helper.from_array(RNG.standard_normal((4, 4, 2, 2)).astype(np.float32), "w2")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6])
    path = _save(_model(nodes, [x], [out], [w, w2, b, c]), tmp_path / "g.onnx")
    g = _agree(path, (1, 3, 5, 5))
    convs = [n for n in g.nodes if n.op == "conv2d"]
    assert convs[0].attrs["pads"] == [1, 1, 1, 1] and convs[1].attrs["pads"] == [1, 1, 0, 0]
    gemm = next(n for n in g.nodes if n.op == "gemm")
    np.testing.assert_allclose(
        g.params[g[gemm.inputs[1]].attrs["key"]], 0.5 * numpy_helper.to_array(b).T
    )
    assert g.meta["output_function"] == {"out": None}


def test_input_shape_override_and_symbolic_batch(tmp_path, zoo_onnx):
    g = load_onnx(zoo_onnx("squeezenet", 32))
    assert g.inputs()[0].type.shape == (1, 3, 32, 32)  # symbolic batch -> 1
    assert str(g.inputs()[0].type) == "float32[1,3,32,32] @client"
    assert all(g[n.name].type.vis.value == "server" for n in g.nodes if n.op == "weight")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]), tmp_path / "r.onnx")
    with pytest.raises(FrontendError, match="symbolic dimension 'H'.*--input-shape"):
        load_onnx(path)
    assert load_onnx(path, (1, 3, 8, 6))["y"].type.shape == (1, 3, 8, 6)


def test_wrong_input_shape_says_what_the_model_expects(zoo_onnx):
    with pytest.raises(FrontendError, match=r"\[1, 3, 64, 64\].*'image' expects \[batch,3,32,32\]"):
        load_onnx(zoo_onnx("vgg", 32), (1, 3, 64, 64))
    with pytest.raises(FrontendError, match="expects"):
        load_onnx(zoo_onnx("vgg", 32), (1, 3, 32))
    g = load_onnx(zoo_onnx("vgg", 32), (2, 3, 32, 32))  # a batch of 2 is one program
    assert g[g.outputs[0]].type.shape == (2, 10)


def test_unsupported_op_names_op_node_and_supported_list(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Round", ["r"], ["y"],
                                                                      name="my_round")]  # fmt: skip
    path = _save(_model(nodes, [x], [y]), tmp_path / "round.onnx")
    with pytest.raises(FrontendError) as e:
        load_onnx(path)
    msg = str(e.value)
    assert "unsupported op 'Round'" in msg and "'my_round'" in msg
    assert "supported ops: " in msg and "Conv" in msg and "BatchNormalization" in msg


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\x01this is not a protobuf\xff" * 10)
    with pytest.raises(FrontendError, match="garbage.onnx is not a valid ONNX model"):
        load_onnx(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(FrontendError, match="not a valid ONNX model"):
        load_onnx(empty)
    with pytest.raises(FrontendError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_opset_out_of_range(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=22),
                 tmp_path / "o22.onnx")  # fmt: skip
    with pytest.raises(FrontendError, match="opset 22 is not supported"):
        load_onnx(path)


def test_old_opset_is_raised_by_the_version_converter(tmp_path):
    """Opset 7..10 models (the model zoo's) load through onnx.version_converter, and the
    compile report says so."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    path = _save(_model(nodes, [x], [y], opset=9), tmp_path / "o9.onnx")
    g = load_onnx(path)
    assert g.meta["onnx_opset"] == 13 and g.meta["onnx_opset_converted_from"] == 9
    from twofold.compiler.report import format_summary
    from twofold.toolchain import compile_model

    _, report = compile_model(path, None, preprocess="none")
    assert report["onnx"] == {"opset": 13, "converted_from": 9}
    assert "ONNX opset 9 raised to 13 by onnx.version_converter" in format_summary(report)


@pytest.mark.parametrize("opset", [18, 21])
def test_new_opset_forms(tmp_path, opset):
    """Opset ≥ 18: axes/pads as inputs; Clip bounds as inputs; Mul/Div/Sub by constants."""

    def const(name, arr):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr))

    scale = numpy_helper.from_array(RNG.uniform(0.5, 2, (1, 3, 1, 1)).astype(np.float32), "s")
    mat = numpy_helper.from_array(RNG.standard_normal((3, 4)).astype(np.float32), "m")
    nodes = [
        const("zero", np.array(0.0, np.float32)),
        const("six", np.array(6.0, np.float32)),
        const("two", np.array(2.0, np.float32)),
        const("pads", np.array([1, 2, 0, 1], np.int64)),
        const("pad_axes", np.array([2, 3], np.int64)),
        const("red_axes", np.array([-2, -1], np.int64)),
        const("unsq", np.array([0], np.int64)),
        helper.make_node("Clip", ["x", "zero"], ["r"]),  # min only: a ReLU
        helper.make_node("Pad", ["r", "pads", "", "pad_axes"], ["p"], mode="constant"),
        helper.make_node("Div", ["p", "two"], ["d"]),
        helper.make_node("Mul", ["s", "d"], ["ms"]),
        helper.make_node("Sub", ["ms", "s"], ["sb"]),
        helper.make_node("Clip", ["sb", "", "six"], ["c"]),
        helper.make_node("ReduceMean", ["c", "red_axes"], ["gap"], keepdims=0),
        helper.make_node("Unsqueeze", ["gap", "unsq"], ["u"]),
        helper.make_node("MatMul", ["u", "m"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["out"], axis=-1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 5])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4])
    path = _save(_model(nodes, [x], [out], [scale, mat], opset=opset), tmp_path / "n.onnx")
    g = _agree(path, (1, 3, 6, 5))
    ops = [n.op for n in g.nodes if n.op not in ("input", "weight")]
    assert ops == [
        "relu", "pad", "mul_const", "mul", "sub", "clip", "global_avgpool", "flatten", "reshape",
        "reshape", "gemm", "reshape", "softmax",
    ]  # fmt: skip
    assert g["out"].type.shape == (1, 1, 4)


def test_two_outputs_one_value_and_passthrough(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("a", "b", "c")]
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Identity", ["a"], ["b"]),
        helper.make_node("Identity", ["x"], ["c"]),
    ]
    g = _agree(_save(_model(nodes, [x], outs), tmp_path / "two.onnx"), (1, 4))
    assert g.outputs == ["a", "a", "x"]
    assert g.meta["output_function"] == {"a": None, "x": None}


def test_input_names_that_are_not_identifiers(tmp_path):
    x = helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("out/prob", TensorProto.FLOAT, [1, 4])
    path = _save(_model([helper.make_node("Sigmoid", ["input:0"], ["out/prob"])], [x], [y]),
                 tmp_path / "names.onnx")  # fmt: skip
    g = load_onnx(path)
    (inp,) = g.inputs()
    assert inp.attrs["name"] == "input:0" and g.meta["output_function"] == {g.outputs[0]: "sigmoid"}
    v = np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32)
    (out,) = run_float(g, {"input:0": v}).values()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-v)), rtol=1e-6)
