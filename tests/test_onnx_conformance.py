"""The `onnx` package's own test models (pytorch-converted, pytorch-operator, light) through
compile + simulate: never a wrong answer or a traceback, and each outcome as the table in
docs/ONNX_CONFORMANCE.md records it (tests/onnx_suite.py says how a case is run)."""

from __future__ import annotations

from pathlib import Path

import onnx_suite
import pytest

TABLE = Path(__file__).resolve().parents[1] / "docs" / "ONNX_CONFORMANCE.md"
CASES = [c for c in onnx_suite.cases() if c.name not in onnx_suite.SLOW]


def test_table_covers_every_case_and_meets_the_target():
    recorded = onnx_suite.read_table(TABLE)
    assert set(recorded) == {c.name for c in onnx_suite.cases()}
    statuses = list(recorded.values())
    applicable = len(statuses) - statuses.count("n/a")
    assert statuses.count("wrong") == statuses.count("traceback") == 0
    assert statuses.count("pass") >= 85, f"{statuses.count('pass')} of {applicable} pass"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_outcome_as_recorded(case):
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    o = onnx_suite.run_case(case)
    assert o.status not in ("wrong", "traceback"), o.detail
    assert o.status == onnx_suite.read_table(TABLE)[case.name], o.detail


def test_every_zoo_model_inspects():
    """The light model-zoo models (opset 9) all inspect (issue 17): the LRN ones, which the
    compiler refuses, here; the others compile and simulate in the cases above."""
    from click.testing import CliRunner

    from twofold.cli import cli

    lrn = ("light_bvlc_alexnet", "light_inception_v1", "light_zfnet512")
    for case in (c for c in onnx_suite.cases() if c.name in lrn):
        res = CliRunner().invoke(cli, ["inspect", str(case.model)])
        assert res.exit_code == 0, res.output
        assert "ReLU count" in res.output
