"""Compiler passes and the cleartext backend on hand-built float graphs."""

import json

import numpy as np
import pytest
from fixedpoint_graphs import activations, small_cnn

from twofold.backends.cleartext import Cleartext, FixedPointOverflow, observe_ranges, simulate
from twofold.backends.float_ref import run_float
from twofold.compiler import CompileError, CompileOptions, run_pipeline
from twofold.compiler.bundle import read_bundle, write_bundle
from twofold.compiler.fold_bn import fold_bn
from twofold.compiler.report import build_report
from twofold.compiler.swap_relu_maxpool import swap_relu_maxpool
from twofold.ir import Graph, graph_from_json, verify


def _with_input(g: Graph, lo: float = -3.0, hi: float = 3.0) -> Graph:
    g.meta["input"] = {"name": "image", "range": [lo, hi]}
    return g


def _float64(g: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """The float reference (checked against onnxruntime in test_float_ref) in float64."""
    return run_float(g, {g.inputs()[0].name: x}, np.float64)


def _image(seed: int = 1, size: int = 16) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).normal(0, 1, (1, 3, size, size)), -3, 3)


@pytest.mark.parametrize(("scale", "bitlength"), [(12, "auto"), (11, 32), (8, "auto")])
def test_simulate_matches_float(scale, bitlength):
    g = _with_input(small_cnn())
    x = _image()
    sg = run_pipeline(g, CompileOptions(scale=scale, bitlength=bitlength))
    want = _float64(g, x)["prob"].ravel()
    got = np.array(simulate(sg, x)["outputs"][sg.outputs[0]]["values"])
    assert np.abs(got - want).max() <= 1e-2
    assert got.argmax() == want.argmax()
    if bitlength != "auto":
        assert sg.meta["ell"] == bitlength


def test_bn_folds_into_conv_else_affine():
    g = fold_bn(small_cnn())
    ops = [n.op for n in g.nodes]
    assert "batchnorm" not in ops
    assert ops.count("affine") == 1  # the BN after maxpool cannot fold
    assert len(g[g["c1"].inputs[1]].type.shape) == 4 and len(g["c1"].inputs) == 3


def test_relu_maxpool_swap_only_single_use():
    g = swap_relu_maxpool(small_cnn())
    pool = next(n for n in g.nodes if n.op == "maxpool")
    assert g[pool.inputs[0]].op in ("batchnorm", "conv2d")
    assert [g[u].op for u in g.users(pool.name)] == ["relu"]
    g2 = small_cnn()
    g2.outputs.append("r1")  # ReLU output now has a second reader
    g2 = swap_relu_maxpool(g2)
    assert g2[g2["pool1"].inputs[0]].op == "relu"


def test_truncation_kinds_and_placement():
    sg = run_pipeline(_with_input(small_cnn()), CompileOptions())
    truncs = [n for n in sg.nodes if n.op == "trunc"]
    kinds = {sg[t.inputs[0]].op: t.attrs["kind"] for t in truncs}
    assert kinds.get("relu") == "msb0"  # conv -> maxpool -> relu -> trunc
    relu6 = sg["relu6_relu"]  # ReLU6 = r - relu(r - 6), r = relu(x): x's trunc sinks below r
    assert sg[relu6.inputs[0]].op == "affine" and sg.users(relu6.name)[0].endswith("_t")
    for t in truncs:
        if t.attrs["kind"] == "faithful":
            assert sg[t.inputs[0]].op != "relu"
    assert any(n.type.dtype.scale == 24 for n in sg.nodes if n.op == "relu")  # lazy: ReLU at 2s
    verify(sg)


def test_too_small_bitlength_is_refused_naming_the_tensor():
    with pytest.raises(
        CompileError, match=r"bitlength 20 too small: tensor %\S+ .* needs \d+ bits"
    ):
        run_pipeline(_with_input(small_cnn()), CompileOptions(bitlength=20))


def test_out_of_range_input_reports_overflow():
    g = _with_input(small_cnn())
    x = _image()
    sg = run_pipeline(
        g, CompileOptions(scale=12, bitlength=32, observe=lambda q: observe_ranges(q, [x]))
    )
    simulate(sg, x)  # in range: fine
    with pytest.raises(FixedPointOverflow, match=r"overflow at %\S+"):
        simulate(sg, x * 400)


def test_calibration_tightens_the_ring():
    g = _with_input(small_cnn())
    x = _image()
    loose = run_pipeline(g, CompileOptions())
    tight = run_pipeline(g, CompileOptions(observe=lambda q: observe_ranges(q, [x])))
    assert tight.meta["ell"] <= loose.meta["ell"]
    # checked model (default): bits include the spare bit MaxPool / checked ReLU inputs need
    assert all(n.meta["bits"] <= tight.meta["ell"] for n in tight.nodes)
    old = run_pipeline(g, CompileOptions(observe=lambda q: observe_ranges(q, [x]),
                                         range_model="calibrated"))  # fmt: skip
    assert all(n.meta["bits"] <= old.meta["ell"] - 1 for n in old.nodes)


def test_liveness_frees_every_dead_tensor_once():
    sg = run_pipeline(_with_input(small_cnn()), CompileOptions())
    freed = [f for n in sg.nodes for f in n.meta["free"]]
    assert len(freed) == len(set(freed))
    runtime = [n.name for n in sg.nodes if n.op not in ("weight", "const")]
    assert set(freed) == set(runtime) - set(sg.outputs)
    order = {n.name: i for i, n in enumerate(sg.nodes)}
    for n in sg.nodes:
        for f in n.meta["free"]:
            assert all(order[u] <= order[n.name] for u in sg.users(f))


def test_output_function_recorded_and_removed():
    sg = run_pipeline(_with_input(small_cnn()), CompileOptions())
    assert not any(n.op == "sigmoid" for n in sg.nodes)
    assert sg.meta["output_function"] == {sg.outputs[0]: "sigmoid"}


def test_disable_pass_and_unknown_pass():
    with pytest.raises(CompileError, match="unknown pass nope"):
        run_pipeline(_with_input(small_cnn()), CompileOptions(disabled={"nope"}))
    with pytest.raises(CompileError, match="batchnorm has no fixed-point form|op batchnorm"):
        run_pipeline(_with_input(small_cnn()), CompileOptions(disabled={"fold_bn"}))
    sg = run_pipeline(_with_input(small_cnn()), CompileOptions(disabled={"swap_relu_maxpool"}))
    assert sum(n.type.size for n in sg.nodes if n.op == "relu") > 0


def test_bundle_round_trip(tmp_path):
    g = _with_input(small_cnn())
    sg = run_pipeline(g, CompileOptions())
    write_bundle(sg, tmp_path / "b", build_report(sg))
    text = (tmp_path / "b" / "server" / "ir.json").read_text()
    w = sg.params["c1.w_bn"] if "c1.w_bn" in sg.params else next(iter(sg.params.values()))
    assert str(int(np.asarray(w).ravel()[3])) not in json.dumps(graph_from_json(text).meta)
    back = read_bundle(tmp_path / "b")
    x = _image()
    assert simulate(back, x) == simulate(sg, x)
    rep = json.loads((tmp_path / "b" / "server" / "report.json").read_text())
    assert rep["totals"]["relu_elements"] == sum(n.type.size for n in sg.nodes if n.op == "relu")


def test_cleartext_semantics_signed():
    g = Graph()
    x = g.add("input", attrs={"name": "x", "shape": [1, 1, 2, 2]}, name="x")
    g.outputs = [x]
    g.meta["input"] = {"name": "x", "range": [-4, 4]}
    sg = run_pipeline(g, CompileOptions(scale=4, bitlength=8))
    it = Cleartext(sg)
    out = it.run(np.array([[[[-1.03, 0.5], [1.0, -4.0]]]]))[sg.outputs[0]]
    assert out.dtype == np.uint64 and out.max() < 256
    assert it.decode(sg.outputs[0], out).ravel().tolist() == [-1.0, 0.5, 1.0, -4.0]


def test_lowered_activations_and_padded_avgpool():
    g = _with_input(activations())
    x = np.random.default_rng(5).uniform(-3, 3, (1, 2, 8, 8))
    sg = run_pipeline(g, CompileOptions(scale=12))
    ops = {n.op for n in sg.nodes}
    assert not ops & {"leaky_relu", "clip", "avgpool"} and "mul_const" in ops
    want = _float64(g, x)["flat"].ravel()
    got = np.array(simulate(sg, x)["outputs"][sg.outputs[0]]["values"])
    assert np.abs(got - want).max() < 5e-3


def test_cleartext_matches_integer_reference_with_negatives():
    """conv (+ rounding bias) -> maxpool (signed, padding never wins) -> trunc (floor)."""
    from test_exact_linalg import _ref_conv

    rng = np.random.default_rng(7)
    g = Graph()
    x = g.add("input", attrs={"name": "x", "shape": [1, 2, 5, 5]}, name="x")
    w = g.add_param("w", rng.normal(0, 1, (3, 2, 3, 3)).astype(np.float32))
    y = g.add("conv2d", [x, w], {"strides": [1, 1], "pads": [1, 1, 1, 1]}, name="y")
    y = g.add("maxpool", [y], {"kernel": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    g.outputs = [y]
    g.meta["input"] = {"name": "x", "range": [-4, 4]}
    sg = run_pipeline(g, CompileOptions(scale=6, bitlength=24))
    xin = rng.uniform(-4, 4, (1, 2, 5, 5))
    out = Cleartext(sg).run(xin)[sg.outputs[0]]
    xq = np.rint(xin * 64).astype(np.int64)
    wq = np.asarray(sg.params["w"], np.int64)
    conv = _ref_conv(xq % (1 << 24), wq % (1 << 24), 1, 1, 1, 24).astype(object)
    conv = np.where(conv >= 1 << 23, conv - (1 << 24), conv)  # signed
    trunc = (conv + 32) // 64  # floor of the signed value; +2^5 is the rounding folded in a bias
    pad = np.full((1, 3, 7, 7), None, dtype=object)
    pad[:, :, 1:6, 1:6] = trunc
    want = np.empty((1, 3, 3, 3), dtype=object)
    for i in range(3):
        for j in range(3):
            win = pad[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(3, -1)
            want[0, :, i, j] = [max(v for v in row if v is not None) for row in win]
    assert (np.asarray(want, np.int64) % (1 << 24)).tolist() == out.tolist()
    assert (np.asarray(want, np.int64) < 0).any()  # negative values were exercised


def test_canonicalize_folds_parameters_and_drops_noops():
    from twofold.backends.float_ref import run_float
    from twofold.compiler.canonicalize import canonicalize

    rng = np.random.default_rng(2)
    g = Graph()
    x = g.add("input", attrs={"name": "x", "shape": [1, 4]}, name="x")
    same = g.add("reshape", [x], {"shape": [1, 4]}, name="same")
    w = g.add_param("w", rng.normal(0, 1, (2, 2, 3)).astype(np.float32))
    w2 = g.add("reshape", [w], {"shape": [4, 3]}, name="w_flat")  # server-only: folds
    c = g.add_param("c", np.ones(3, np.float32), public=True)
    c2 = g.add("mul_const", [c], {"value": 0.5}, name="c_half")  # public-only: folds
    y = g.add("gemm", [same, w2, c2], name="y")
    g.outputs = [y]
    h = canonicalize(g)
    verify(h)
    assert {n.op for n in h.nodes} == {"input", "weight", "const", "gemm"}
    assert h[h["y"].inputs[1]].op == "weight" and h[h["y"].inputs[2]].op == "const"
    xin = {"x": rng.normal(0, 1, (1, 4))}
    assert np.allclose(run_float(g, xin)["y"], run_float(h, xin)["y"])


def test_bn_folds_into_gemm_exactly():
    from twofold.backends.float_ref import run_float

    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add("input", attrs={"name": "x", "shape": [1, 6]}, name="x")
    w = g.add_param("w", rng.normal(0, 1, (6, 3)).astype(np.float32))
    b = g.add_param("b", rng.normal(0, 1, 3).astype(np.float32))
    y = g.add("gemm", [x, w, b], name="y")
    bn = [
        g.add_param(k, v.astype(np.float32))
        for k, v in [
            ("g", rng.uniform(0.5, 2, 3)),
            ("be", rng.normal(0, 1, 3)),
            ("m", rng.normal(0, 1, 3)),
            ("v", rng.uniform(0.5, 2, 3)),
        ]
    ]
    g.outputs = [g.add("batchnorm", [y, *bn], name="bn")]
    h = fold_bn(g)
    assert [n.op for n in h.nodes if n.op not in ("weight", "const")] == ["input", "gemm"]
    xin = {"x": rng.normal(0, 1, (1, 6))}
    want = run_float(g, xin, np.float64)["bn"]
    assert np.allclose(next(iter(run_float(h, xin, np.float64).values())), want)
