"""CLI: compile --list-passes, simulate on a bundle (schema, overflow, atomic out), inspect DIR."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fixedpoint_graphs import small_cnn

from twofold.cli import cli
from twofold.compiler import CompileError
from twofold.toolchain import compile_model, inspect_bundle


def _bundle(tmp_path):
    x = np.clip(np.random.default_rng(3).normal(0, 1, (1, 3, 16, 16)), -3, 3)
    np.save(tmp_path / "x.npy", x)
    calib = tmp_path / "calib.npy"
    np.save(calib, x)
    out = tmp_path / "b"
    compile_model(None, out, graph=small_cnn(), preprocess="none", calibrate=[calib], bitlength=32)
    return out, x


def test_list_passes():
    res = CliRunner().invoke(cli, ["compile", "--list-passes"])
    assert res.exit_code == 0
    assert "quantize" in res.output and "bitwidth" in res.output


def test_simulate_writes_shared_schema(tmp_path):
    out, x = _bundle(tmp_path)
    res = CliRunner().invoke(
        cli,
        ["simulate", str(out), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o.json")],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o.json").read_text())
    (name,) = doc["outputs"]
    probs = np.array(doc["outputs"][name]["values"])
    logits = np.array(doc["logits"][name]["values"])
    assert doc["outputs"][name]["shape"] == [1, 5]
    assert np.allclose(probs, 1 / (1 + np.exp(-logits)))


def test_simulate_overflow_is_one_line_and_leaves_no_file(tmp_path):
    _, x = _bundle(tmp_path)
    out = tmp_path / "wide"  # declared range wide enough for x·500, calibrated on x
    compile_model(None, out, graph=small_cnn(), preprocess="none", input_range=(-1500, 1500),
                  calibrate=[tmp_path / "calib.npy"], bitlength=32,
                  range_model="calibrated")  # fmt: skip
    np.save(tmp_path / "big.npy", x * 500)
    target = tmp_path / "o.json"
    res = CliRunner().invoke(
        cli, ["simulate", str(out), "--input", str(tmp_path / "big.npy"), "-o", str(target)]
    )
    assert res.exit_code == 1
    assert res.output.startswith("twofold: error: fixed-point overflow at %")
    assert res.output.count("\n") == 1 and not target.exists()


def test_simulate_bad_input_shape(tmp_path):
    out, _ = _bundle(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 8, 8)))
    res = CliRunner().invoke(cli, ["simulate", str(out), "--input", str(tmp_path / "bad.npy")])
    assert res.exit_code == 1 and "shape" in res.output and "Traceback" not in res.output


def test_inspect_bundle_text(tmp_path):
    out, _ = _bundle(tmp_path)
    text = inspect_bundle(out)
    assert "fix<32," in text and "# range [" in text and "ReLU elements:" in text
    assert "truncations: faithful" in text and "msb0" in text


def test_compile_refuses_small_bitlength_leaves_no_bundle(tmp_path):
    with pytest.raises(CompileError, match="needs"):
        compile_model(None, tmp_path / "c", graph=small_cnn(), preprocess="none", bitlength=16)
    assert not (tmp_path / "c").exists()


def test_cli_inspect_bundle_dir(tmp_path):
    out, _ = _bundle(tmp_path)
    res = CliRunner().invoke(cli, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "= trunc(" in res.output and "ReLU elements:" in res.output
    res = CliRunner().invoke(cli, ["inspect", str(out), "--format", "json"])
    assert json.loads(res.output)["totals"]["relu_elements"] > 0
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path)])  # a directory, not a bundle
    assert res.exit_code == 1 and "not a compiled bundle" in res.output


def test_labels_recorded_and_checked(tmp_path):
    g, _ = compile_model(None, None, graph=small_cnn(), preprocess="none", labels=list("abcde"))
    x = np.zeros((1, 3, 16, 16))
    from twofold.backends.cleartext import simulate

    assert simulate(g, x)["labels"] == list("abcde")
    with pytest.raises(CompileError, match="2 labels given for 5 model outputs"):
        compile_model(None, None, graph=small_cnn(), preprocess="none", labels=["a", "b"])


def test_compile_says_when_the_ring_is_too_wide_for_he(zoo_onnx, tmp_path):
    """A ring the HE linear layers cannot use is said at compile time (run would fall back to
    OT for every conv/gemm), not discovered as hours of traffic."""
    path = zoo_onnx("vgg", 16)
    args = ["compile", str(path), "--preprocess", "none"]
    for ell, noted in ((40, False), (44, True)):
        res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / f"b{ell}"), "--bitlength",
                                       str(ell)])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert ("above the 40 bits the HE linear layers support" in res.output) == noted


def _linear_only(size: int = 8):
    """conv -> flatten -> gemm: no ReLU, so nothing the checked range model can check."""
    from twofold.ir import Graph

    rng = np.random.default_rng(5)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 2, size, size]}, name="x")
    w = g.add_param("c.w", rng.normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32))
    y = g.add("conv2d", [x, w], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, name="c")
    f = g.add("flatten", [y], name="flat")
    n = 3 * (size // 2) ** 2
    fw = g.add_param("fc.w", rng.normal(0, 0.2, (n, 4)).astype(np.float32))
    g.outputs = [g.add("gemm", [f, fw], name="fc")]
    return g


def test_compile_says_when_nothing_can_flag_an_overflow(tmp_path):
    """The checked range model needs ReLUs: a calibrated program without one is said to be
    unchecked (report.json and a note), so nobody takes its silence for a guarantee."""
    x = np.random.default_rng(1).uniform(-1, 1, (1, 2, 8, 8))
    np.save(tmp_path / "c.npy", x)
    cal = [tmp_path / "c.npy"]
    _, rep = compile_model(None, None, graph=_linear_only(), preprocess="none", calibrate=cal)
    assert rep["unchecked"] and rep["range_model"] == "calibrated"
    _, rep = compile_model(None, None, graph=_linear_only(), preprocess="none")
    assert not rep["unchecked"]  # interval ranges are sound without any check
    np.save(tmp_path / "s.npy", np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16)))
    _, rep = compile_model(
        None, None, graph=small_cnn(), preprocess="none", calibrate=[tmp_path / "s.npy"]
    )
    assert not rep["unchecked"] and rep["range_model"] == "checked"
    _, rep = compile_model(
        None, None, graph=_linear_only(), preprocess="none", calibrate=cal,
        range_model="calibrated",
    )  # fmt: skip
    assert not rep["unchecked"]  # asked for the calibrated model: nothing promised


def test_cli_notes_an_unchecked_program(tmp_path):
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.Flatten(), torch.nn.Linear(64, 2)
    ).eval()
    path = tmp_path / "lin.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), input_names=["image"],
                      dynamo=False)  # fmt: skip
    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)))
    args = ["compile", str(path), "--preprocess", "none", "--input-range", "-1", "1"]
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b"), "--calibrate",
                                   str(tmp_path / "c.npy")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "cannot flag an overflow" in res.output
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b2")])
    assert res.exit_code == 0, res.output
    assert "cannot flag an overflow" not in res.output


def test_cli_notes_a_calibrated_range_model(tmp_path):
    """--range-model calibrated drops the in-protocol checks: compile says the program cannot
    flag an overflow and that `run client` refuses it without --allow-unchecked (it said
    nothing, while the client refuses it)."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(64, 2),
    ).eval()  # fmt: skip
    path = tmp_path / "relu.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), input_names=["image"],
                      dynamo=False)  # fmt: skip
    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)))
    args = ["compile", str(path), "--preprocess", "none", "--input-range", "-1", "1",
            "--calibrate", str(tmp_path / "c.npy")]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b"), "--range-model", "calibrated"])
    assert res.exit_code == 0, res.output
    assert "note: --range-model calibrated: this program cannot flag an overflow" in res.output
    assert "--allow-unchecked" in res.output
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "b2")])  # checked: no note
    assert res.exit_code == 0, res.output
    assert "cannot flag an overflow" not in res.output
