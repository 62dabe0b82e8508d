"""Results log (append, torn-line recovery, identity check) and the report from records."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from twofold.eval.datasets import BadRow, Dataset, Sample
from twofold.eval.labels import CHEXNET_LABELS, LabelMap
from twofold.eval.report import write_report
from twofold.eval.results import ResultsError, ResultsLog

ID = {"model_sha256": "ab", "mode": "simulate"}


def test_results_log_resume_drops_torn_line_and_checks_identity(tmp_path):
    p = tmp_path / "results.jsonl"
    with ResultsLog(p, ID, resume=False) as log:
        log.append({"id": "a", "plain": [0.1]})
        log.append({"id": "b", "plain": [0.2]})
    with p.open("a") as f:
        f.write('{"id":"c","pla')  # killed mid-write
    with pytest.raises(ResultsError, match="pass --resume"):
        ResultsLog(p, ID, resume=False)
    with pytest.raises(ResultsError, match="differs in: the ONNX model"):
        ResultsLog(p, {**ID, "model_sha256": "cd"}, resume=True)
    with ResultsLog(p, ID, resume=True) as log:
        assert log.torn and set(log.done) == {"a", "b"}
        log.append({"id": "c", "plain": [0.3]})
    lines = p.read_text().splitlines()
    assert len(lines) == 4 and [json.loads(x)["id"] for x in lines[1:]] == ["a", "b", "c"]
    with ResultsLog(p, ID, resume=True) as log, pytest.raises(ResultsError, match="already has"):
        log.append({"id": "a", "plain": [0.9]})  # never two records for one image
    with p.open("a") as f:
        f.write('{"plain":[0.4]}\n')
    with pytest.raises(ResultsError, match=":5: corrupt record"):
        ResultsLog(p, ID, resume=True)


def _synthetic(n=30, noise=3e-4, seed=0, bias=0.0):
    rng = np.random.default_rng(seed)
    labels = CHEXNET_LABELS[:3]
    samples, recs = [], {}
    for i in range(n):
        y = {lab: float(i % (k + 2) == 0) for k, lab in enumerate(labels)}
        samples.append(Sample(i + 2, f"i{i}.png", Path(f"i{i}.png"), y))
        p = 1 / (1 + np.exp(-rng.normal(0, 1, 14)))
        for k, lab in enumerate(labels):
            p[k] = np.clip(0.5 * y[lab] + 0.5 * rng.random(), 0, 1)
        recs[f"i{i}.png"] = {
            "id": f"i{i}.png",
            "plain": p.tolist(),
            "secure": (p + bias + rng.normal(0, noise, 14)).tolist(),
            "time_plain_s": 0.01,
            "time_secure_s": 2.0,
        }
    recs["i3.png"] = {"id": "i3.png", "line": 5, "error": "unreadable image: truncated"}
    ds = Dataset(samples, [BadRow(40, "gone.png", "missing file gone.png")], list(labels))
    return ds, recs


def test_report_files_and_summary(tmp_path):
    ds, recs = _synthetic()
    cfg = SimpleNamespace(
        out=tmp_path,
        margin=0.01,
        jobs=2,
        title="t",
        note="synthetic",
        mode="simulate",
        model="m.onnx",
        bundle="b",
    )
    s = write_report(cfg, ds, LabelMap(CHEXNET_LABELS), recs, {})
    for f in (
        "report.md",
        "report.html",
        "summary.json",
        "roc.png",
        "bland_altman.png",
        "differences.png",
    ):
        assert (tmp_path / f).stat().st_size > 0
    assert s["dataset"]["evaluated"] == 29 and s["dataset"]["pending"] == 0
    assert [b["id"] for b in s["dataset"]["bad_rows"]] == ["i3.png", "gone.png"]
    row = s["labels"][0]
    assert row["n"] == 29 and abs(row["auc_secure"]["auc"] - row["auc_plain"]["auc"]) < 0.05
    assert s["verdicts"]["equivalent"] and s["overall"]["max_abs_diff"] < 0.01
    # 30 rows naming a file, i3.png unreadable: the cost is extrapolated to the 29 usable
    assert s["cost"]["extrapolated_total"]["wall_secure_s"] == pytest.approx(29 * 2.0 / 2)
    md = (tmp_path / "report.md").read_text()
    assert "unreadable image: truncated" in md and "![ROC curves per finding](roc.png)" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and 'src="roc.png"' not in html
    assert json.loads((tmp_path / "summary.json").read_text())["labels"][0]["label"] == (
        "Atelectasis"
    )


def test_report_flags_non_equivalence(tmp_path):
    ds, recs = _synthetic(noise=0.01, seed=1, bias=0.012)
    cfg = SimpleNamespace(
        out=tmp_path,
        margin=0.01,
        jobs=1,
        title="t",
        note="",
        mode="simulate",
        model="m.onnx",
        bundle="b",
    )
    s = write_report(cfg, ds, LabelMap(CHEXNET_LABELS), recs, {})
    assert not s["labels"][0]["agreement"]["tost"]["equivalent"]
    assert not s["verdicts"]["equivalent"]
    assert "Equivalence NOT shown" in (tmp_path / "report.md").read_text()


def test_report_with_a_single_image(tmp_path):
    ds, recs = _synthetic(n=2)
    recs.pop("i1.png")
    cfg = SimpleNamespace(
        out=tmp_path, margin=0.01, jobs=1, title="t", note="", mode="simulate",
        model="m.onnx", bundle="b",
    )  # fmt: skip
    s = write_report(cfg, ds, LabelMap(CHEXNET_LABELS), recs, {})
    assert s["dataset"]["evaluated"] == 1 and s["dataset"]["pending"] == 1
    assert s["labels"][0]["auc_note"] == "AUROC not computed: all 1 labelled cases are positive"
    assert "tost" not in s["labels"][0]["agreement"] and s["overall"]["images"] == 1
    assert "n = 1 < 30" in s["labels"][0]["warnings"]
    assert "incomplete run" in (tmp_path / "report.md").read_text()
