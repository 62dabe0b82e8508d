"""Issue 13: inputs and options that cannot give a right answer end in one clear line and a
non-zero exit, before any traffic and without writing anything (DESIGN.md §6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fixedpoint_graphs import small_cnn

from twofold.cli import cli
from twofold.compiler import CompileError
from twofold.inputcheck import InputOutOfRange, check_input_range
from twofold.toolchain import PREPROCESS_RANGES, compile_model, load_input

LO, HI = PREPROCESS_RANGES["chexnet"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_cnn compiled for the chexnet range, calibrated on an in-range image."""
    d = tmp_path_factory.mktemp("inputs")
    x = np.random.default_rng(5).uniform(LO, HI, (1, 3, 16, 16))
    np.save(d / "x.npy", x)
    compile_model(None, d / "b", graph=small_cnn(), calibrate=[d / "x.npy"])
    return d


def _bad_inputs(d: Path) -> dict[str, Path]:
    x = np.load(d / "x.npy")
    one = x.copy()
    one[0, 0, 3, 4] = 1e9
    raw = np.random.default_rng(6).integers(0, 255, x.shape).astype(np.float64)
    cases = {"pixel_1e9": one, "times_10": x * 10, "raw_0_254": raw}
    for k, v in cases.items():
        np.save(d / f"{k}.npy", v)
    return {k: d / f"{k}.npy" for k in cases}


def _one_line(res, *needles: str) -> str:  # noqa: ANN001
    assert res.exit_code != 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twofold: error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", ["pixel_1e9", "times_10", "raw_0_254"])
def test_simulate_refuses_out_of_range_input(bundle: Path, case: str) -> None:
    f = _bad_inputs(bundle)[case]
    out = bundle / f"{case}.json"
    res = CliRunner().invoke(
        cli, ["simulate", str(bundle / "b"), "--input", str(f), "-o", str(out)]
    )
    line = _one_line(res, str(f), "outside the range", f"expected [{LO:.6g}, {HI:.6g}]")
    assert "values span [" in line and not out.exists()
    # --no-check does not bypass it: the input check is not an overflow check
    res = CliRunner().invoke(cli, ["simulate", str(bundle / "b"), "--input", str(f), "--no-check"])
    _one_line(res, "outside the range")


@pytest.mark.parametrize("case", ["pixel_1e9", "times_10", "raw_0_254"])
def test_run_client_refuses_before_connecting(bundle: Path, case: str) -> None:
    """The port has no server: the range error (not a connection error) proves the check runs
    before any traffic; no out.json is written."""
    f = _bad_inputs(bundle)[case]
    out = bundle / f"client_{case}.json"
    res = CliRunner().invoke(
        cli, ["run", "client", str(bundle / "b"), "--connect", "127.0.0.1:9", "--input", str(f),
              "-o", str(out), "--quiet"],
    )  # fmt: skip
    _one_line(res, str(f), "outside the range", "refused before any traffic")
    assert not out.exists()


def test_in_range_input_passes_and_boundaries_are_inclusive(bundle: Path) -> None:
    meta = {"range": [LO, HI], "scale": 12, "preprocess": "chexnet"}
    check_input_range(np.array([LO, HI, 0.0]), meta, "edge")
    with pytest.raises(InputOutOfRange) as e:
        check_input_range(np.array([LO, HI + 1e-3]), meta, "edge")
    assert e.value.reason == "input_out_of_range" and e.value.expected == (LO, HI)
    with pytest.raises(ValueError, match="non-finite"):
        check_input_range(np.array([0.0, np.nan]), meta, "nan")
    x = load_input(bundle / "x.npy", {"shape": [1, 3, 16, 16], "range": [LO, HI], "scale": 12})
    assert x.shape == (1, 3, 16, 16)


# ------------------------------------------------------------------------------ options


@pytest.fixture()
def compile_cli(tmp_path: Path, zoo_onnx):  # noqa: ANN001, ANN201
    onnx = zoo_onnx("resnet", 16)

    def go(*opts: str):  # noqa: ANN202
        return CliRunner().invoke(cli, ["compile", str(onnx), "-o", str(tmp_path / "b"), *opts])

    return go


@pytest.mark.parametrize("margin", ["0", "0.5", "-1", "inf", "nan"])
def test_calibration_margin_must_be_finite_and_at_least_one(tmp_path, compile_cli, margin):
    res = compile_cli("--calibration-margin", margin)
    _one_line(res, "--calibration-margin must be a finite number >= 1")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("lo", "hi", "what"), [("-inf", "inf", "finite"), ("0", "nan", "finite"), ("1", "1", "empty")]
)
def test_input_range_must_be_finite_and_nonempty(tmp_path, compile_cli, lo, hi, what):
    res = compile_cli("--input-range", lo, hi)
    _one_line(res, "--input-range", what)
    assert not (tmp_path / "b").exists()


def test_calibration_input_outside_declared_range_is_refused(tmp_path, compile_cli):
    np.save(tmp_path / "big.npy", np.full((1, 3, 16, 16), 7.5))
    res = compile_cli("--preprocess", "none", "--calibrate", str(tmp_path / "big.npy"))
    _one_line(res, "calibration input", str(tmp_path / "big.npy"), "expected [-3, 3]",
              "--input-range")  # fmt: skip
    assert not (tmp_path / "b").exists()
    with pytest.raises(CompileError, match="calibration input"):
        compile_model(None, None, graph=small_cnn(), preprocess="none",
                      calibrate=[tmp_path / "big.npy"])  # fmt: skip
    # declaring the range the data really has is the way out
    _, rep = compile_model(None, None, graph=small_cnn(), preprocess="none",
                           input_range=(-8.0, 8.0), calibrate=[tmp_path / "big.npy"])  # fmt: skip
    assert rep["ell"] >= 8


def test_simulate_out_json_untouched_on_refusal(bundle: Path) -> None:
    f = _bad_inputs(bundle)["times_10"]
    out = bundle / "keep.json"
    out.write_text(json.dumps({"old": True}))
    res = CliRunner().invoke(
        cli, ["simulate", str(bundle / "b"), "--input", str(f), "-o", str(out)]
    )
    _one_line(res, "outside the range")
    assert json.loads(out.read_text()) == {"old": True}


def small_eval(tmp_path: Path, onnx: Path, images: dict[str, np.ndarray], cal: str) -> dict:
    """``run_eval`` (simulate) of ``onnx`` compiled with calibration image ``cal`` on the
    ``images`` (one label column); results.jsonl records by image id."""
    from twofold.eval.runner import EvalConfig, run_eval

    img = tmp_path / "img"
    img.mkdir()
    for name, x in images.items():
        np.save(img / name, x)
    compile_model(onnx, tmp_path / "b", calibrate=[img / cal])
    rows = "".join(f"{name},{i % 2}\n" for i, name in enumerate(images))
    (tmp_path / "d.csv").write_text("path,Cardiomegaly\n" + rows)
    cfg = EvalConfig(bundle=tmp_path / "b", model=onnx, dataset=tmp_path / "d.csv", fmt="plain",
                     images=img, out=tmp_path / "out", labels=[f"o{i}" for i in range(10)],
                     label_map={"Cardiomegaly": "o0"})  # fmt: skip
    run_eval(cfg)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines) if "id" in r}


def test_eval_records_out_of_range_image_as_refused(tmp_path: Path, zoo_onnx) -> None:  # noqa: ANN001
    """In an evaluation, an out-of-range image is a secure failure with a machine-readable
    reason, kept in results.jsonl, not a silently dropped bad row."""
    good = np.random.default_rng(9).uniform(LO, HI, (1, 3, 16, 16))
    by_id = small_eval(tmp_path, zoo_onnx("resnet", 16),
                       {"good.npy": good, "big.npy": good * 10}, "good.npy")  # fmt: skip
    assert "plain" in by_id["good.npy"]
    assert by_id["big.npy"]["failure"] == "input out of range"
    assert "outside the range" in by_id["big.npy"]["secure_error"]
