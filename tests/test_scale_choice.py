"""Issue 13: ``compile --fidelity EPS`` picks the cheapest (ℓ, s) within EPS of the float model
on the calibration and held-out inputs, and says what it chose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from twofold.cli import cli


@pytest.fixture()
def inputs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(4):
        np.save(tmp_path / f"c{i}.npy", np.clip(rng.normal(0, 1, (1, 3, 16, 16)), -2.1, 2.6))
        out.append(tmp_path / f"c{i}.npy")
    return out


def test_fidelity_picks_cheapest_scale_meeting_target(tmp_path, zoo_onnx, inputs) -> None:  # noqa: ANN001
    onnx = zoo_onnx("resnet", 16)
    cal = [a for f in inputs for a in ("--calibrate", str(f))]
    res = CliRunner().invoke(
        cli, ["compile", str(onnx), "-o", str(tmp_path / "b"), "--fidelity", "2e-3", *cal]
    )
    assert res.exit_code == 0, res.output
    assert "--fidelity 0.002: chose s=" in res.output and "held-out" in res.output
    assert "were chosen by --fidelity from the weights and calibration inputs" in res.output
    rep = json.loads((tmp_path / "b" / "server" / "report.json").read_text())
    fid = rep["fidelity"]
    c = fid["chosen"]
    assert rep["scale"] == c["scale"] and rep["ell"] == c["ell"]
    assert c["max_dprob_calibration"] <= 2e-3 and c["max_dprob_holdout"] <= 2e-3
    assert fid["holdout_inputs"] == 1  # every 4th calibration input is held out
    # every cheaper (smaller) scale tried before it missed the target
    for t in fid["tried"][:-1]:
        assert (
            "refused" in t
            or t["ell"] > 40
            or max(t["max_dprob_calibration"], t["max_dprob_holdout"]) > 2e-3
        )
    # the bundle works and reproduces the measured fidelity on a held-out input
    sim = CliRunner().invoke(cli, ["simulate", str(tmp_path / "b"), "--input", str(inputs[3])])
    assert sim.exit_code == 0 and json.loads(sim.output)["valid"] is True


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--fidelity", "-1"], "--fidelity must be a positive number"),
        (["--fidelity", "1e-3", "--bitlength", "32"], "leave --bitlength at auto"),
        (["--fidelity", "1e-3", "--no-cal"], "--fidelity needs --calibrate"),
        (["--fidelity", "1e-12"], "not reached by any scale"),
    ],
)
def test_fidelity_bad_requests_are_one_line(tmp_path, zoo_onnx, inputs, extra, needle) -> None:  # noqa: ANN001
    onnx = zoo_onnx("resnet", 16)
    cal = [] if "--no-cal" in extra else ["--calibrate", str(inputs[0]), "--calibrate",
                                          str(inputs[1])]  # fmt: skip
    extra = [e for e in extra if e != "--no-cal"]
    res = CliRunner().invoke(cli, ["compile", str(onnx), "-o", str(tmp_path / "b"), *extra, *cal])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert needle in res.output and not (tmp_path / "b").exists()


def test_he_ring_limit_is_the_runtime_s():
    """The scale chooser ranks rings by what the HE linear layers accept: the same bound."""
    from twofold.runtime.linear.linear_he_seal import MAX_ELL
    from twofold.scale_choice import HE_MAX_ELL

    assert HE_MAX_ELL == MAX_ELL
