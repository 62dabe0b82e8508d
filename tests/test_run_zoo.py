"""The zoo models of [1/7] compiled from torch-exported ONNX and run by ``twofold run server``
and ``twofold run client`` as two OS processes: logits equal ``twofold simulate`` bit for bit
(``simulate_bundle`` is the function behind ``twofold simulate``; the CLI path is compared
in test_run_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_run_cli import Server, client

from twofold.toolchain import compile_model, simulate_bundle

# Reduced input sizes. DenseNet-121 (at 32², ~3 min here) is checked bit for bit by
# benchmarks/e2e.py instead, to keep the suite fast.
SIZES = {"resnet": 16, "mobilenet": 16, "squeezenet": 16, "vgg": 16}


def run_and_simulate(bundle: Path, inp: Path, out: Path) -> tuple[dict, dict]:
    """out.json of ``run server --once`` / ``run client`` as two processes on ``inp``, and the
    document ``twofold simulate`` writes for it."""
    srv = Server(bundle, "--once")
    try:
        res = client(bundle, srv.addr, inp, out, "--quiet")
    finally:
        _, err = srv.stop()
    assert res.returncode == 0, res.stderr + err
    want = json.loads(json.dumps(simulate_bundle(bundle, inp)))  # = simulate -o
    return json.loads(out.read_text()), want


@pytest.mark.parametrize("name", list(SIZES))
def test_zoo_model_two_processes_equal_simulate(name, zoo_onnx, tmp_path):
    size = SIZES[name]
    onnx_path = zoo_onnx(name, size)
    bundle = tmp_path / "bundle"
    rng = np.random.default_rng(7)
    x, cal = rng.normal(0, 1, (2, 1, 3, size, size)).clip(-3, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "cal.npy", cal)
    # calibrated ranges give a ring the HE linear layers support (ℓ <= 40); the test input is
    # among the calibration inputs so that simulate's overflow check cannot trip on it
    compile_model(
        onnx_path, bundle, preprocess="none", input_range=(-3.0, 3.0),
        calibrate=[tmp_path / "x.npy", tmp_path / "cal.npy"],
    )  # fmt: skip
    got, want = run_and_simulate(bundle, tmp_path / "x.npy", tmp_path / "out.json")
    assert got["logits"] == want["logits"]
    assert got["outputs"] == want["outputs"]
    assert got["cost"]["by_kind"]["linear"]["bytes_sent"] > 0
    # the ReLUs read only by their truncation ran fused with it (runtime/fusion.py)
    fused = {r["name"] for r in got["cost"]["layers"] if r["op"] == "relu_trunc"}
    assert fused and got["cost"]["settings"]["fuse"] is True
