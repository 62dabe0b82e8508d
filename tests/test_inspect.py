"""``twofold inspect``: DenseNet-121 figures, JSON keys, and one-line errors for bad input."""

import json
import re
import subprocess
import sys

from click.testing import CliRunner
from onnx import TensorProto, helper, save

from twofold.cli import cli
from twofold.frontends.onnx import load_onnx
from twofold.inspect import summarize


def _run(*args):
    return CliRunner().invoke(cli, ["inspect", *map(str, args)])


def test_densenet121_figures(zoo_onnx):
    path = zoo_onnx("densenet121", 224)
    r = _run(path, "--format", "json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["ops"]["conv2d"] == 120 and s["ops"]["relu"] == 121
    assert abs(s["macs"] - 2.83e9) / 2.83e9 < 0.01
    assert s["relu_count"] == 15_667_456
    assert s["inputs"] == [
        {"name": "image", "shape": [1, 3, 224, 224], "type": "float32[1,3,224,224] @client"}
    ]
    assert s["outputs"][0]["shape"] == [1, 14] and s["outputs"][0]["output_function"] == "sigmoid"
    assert s["params"] > 6_900_000
    text = _run(path).stdout
    assert re.search(r"^%image +: float32\[1,3,224,224\] @client = input", text, re.M)
    assert "ReLU count  15,667,456 elements" in text and "2.83 GMAC" in text


def test_summary_of_small_model(zoo_onnx):
    s = summarize(load_onnx(zoo_onnx("vgg", 32)))
    # 3 convs: 32*32*8*27 + 32*32*8*72 + 16*16*16*72; 2 gemms: 1024*32 + 32*10
    assert s["macs"] == 221184 + 589824 + 294912 + 32768 + 320
    assert s["relu_count"] == 8192 * 2 + 4096 + 32
    assert s["ops"] == {"conv2d": 3, "flatten": 1, "gemm": 2, "maxpool": 2, "relu": 4}


def _one_error_line(r, *fragments):
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twofold: error: "), r.stderr
    for f in fragments:
        assert f in lines[0]
    assert "Traceback" not in r.output


def test_cli_errors_are_one_line(tmp_path, zoo_onnx):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07junk" * 50)
    _one_error_line(_run(garbage), "garbage.onnx is not a valid ONNX model")
    _one_error_line(
        _run(zoo_onnx("vgg", 32), "--input-shape", "1,3,64,64"),
        "input shape [1, 3, 64, 64] does not fit the model",
        "expects [batch,3,32,32]",
    )
    _one_error_line(_run(zoo_onnx("vgg", 32), "--input-shape", "a,b"), "is not like 1,3,224,224")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Cos", ["x"], ["y"], name="cos0")], "t", [x], [y])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "e.onnx")
    _one_error_line(
        _run(tmp_path / "e.onnx"), "unsupported op 'Cos'", "'cos0'", "supported ops: ", "Conv"
    )
    _one_error_line(_run(tmp_path / "missing.onnx"), "does not exist")


def test_console_script_exit_status(tmp_path):
    """The installed entry point: one stderr line, exit 1, no traceback."""
    garbage = tmp_path / "g.onnx"
    garbage.write_text("hello")
    r = subprocess.run(
        [sys.executable, "-m", "twofold.cli", "inspect", str(garbage), "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "not a valid ONNX model" in r.stderr
