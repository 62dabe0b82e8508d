"""What the report claims: per-finding ΔAUROC, TOST and Bland–Altman checked against values
computed here independently (O(m·n) DeLong from its definition, scipy's t-tests, sklearn's AUC),
and the defects of issue 14: n, one-class findings, NaN/inf, the pooled-TOST counterexample,
secure failures in the headline, per-group tables with Cochran's Q, small-sample warnings."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from twofold.eval.analysis import AnalysisError, analyse
from twofold.eval.combine import cochran_q, holm
from twofold.eval.datasets import Dataset, Sample
from twofold.eval.delong import _midrank, auc_equivalence
from twofold.eval.labels import CHEXNET_LABELS, LabelMap
from twofold.eval.report import write_report

LMAP = LabelMap(CHEXNET_LABELS)
FINDINGS = list(CHEXNET_LABELS[:3])


def _data(n=60, seed=3, noise=4e-3, missing=0.15, groups=None):
    """Images with labels (some missing), plaintext scores and secure = plaintext + noise."""
    rng = np.random.default_rng(seed)
    samples, recs = [], {}
    for i in range(n):
        y = {f: float(rng.random() < 0.4) for f in FINDINGS}
        for f in FINDINGS:
            if rng.random() < missing:
                y[f] = math.nan
        g = None if groups is None else groups[i % len(groups)]
        samples.append(Sample(i + 2, f"i{i}.png", Path(f"i{i}.png"), y, g))
        p = rng.uniform(0.05, 0.95, 14)
        for k, f in enumerate(FINDINGS):
            if not math.isnan(y[f]):
                p[k] = np.clip(0.3 * y[f] + 0.7 * rng.random(), 0, 1)
        s = p + rng.normal(0, noise, 14)
        recs[f"i{i}.png"] = {"id": f"i{i}.png", "plain": p.tolist(), "secure": s.tolist()}
    gc = None if groups is None else "site"
    return Dataset(samples, [], FINDINGS, group_column=gc), recs


def _cfg(tmp_path, **kw):
    base = dict(out=tmp_path, margin=0.01, jobs=1, title="t", note="", mode="simulate",
                model="/abs/m.onnx", bundle="/abs/b")  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


# -- independent reference implementations (not the project's code) -----------------------


def _delong_naive(y, a, b):
    """ΔAUROC = AUC(a) - AUC(b) and its variance from the DeLong placements, O(m·n)."""
    pos, neg = y == 1, y == 0

    def psi(x, z):
        return (x > z) + 0.5 * (x == z)

    comps = []
    for s in (a, b):
        k = psi(s[pos][:, None], s[neg][None, :])  # m x n kernel
        comps.append((k.mean(), k.mean(axis=1), k.mean(axis=0)))
    (a1, v10a, v01a), (a2, v10b, v01b) = comps
    m, n = pos.sum(), neg.sum()
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return a1, a2, a1 - a2, var


def test_delta_auc_tost_and_bland_altman_match_independent_computations():
    ds, recs = _data()
    s = analyse(ds, LMAP, recs, margin=0.01, auroc_margin=0.02)
    plain = np.array([recs[x.id]["plain"] for x in ds.samples])
    secure = np.array([recs[x.id]["secure"] for x in ds.samples])
    pvals = []
    for k, f in enumerate(FINDINGS):
        row = s["labels"][k]
        y = np.array([x.labels[f] for x in ds.samples])
        keep = ~np.isnan(y)
        yk = y[keep].astype(int)
        a_s, a_p, diff, var = _delong_naive(yk, secure[keep, k], plain[keep, k])
        assert a_s == pytest.approx(roc_auc_score(yk, secure[keep, k]), abs=1e-12)
        assert row["n"] == keep.sum() and row["n_pos"] == yk.sum()
        d = row["delta_auc"]
        se = math.sqrt(var)
        assert d["diff"] == pytest.approx(diff, abs=1e-12)
        assert d["se"] == pytest.approx(se, rel=1e-9)
        assert d["low"] == pytest.approx(diff - 1.959963984540054 * se, abs=1e-10)
        assert d["high"] == pytest.approx(diff + 1.959963984540054 * se, abs=1e-10)
        p = 2 * stats.norm.sf(abs(diff) / se)
        assert d["p_value"] == pytest.approx(p, rel=1e-9)
        pvals.append(p)
        # AUROC TOST: two one-sided z-tests against ±0.02
        t = row["auc_tost"]
        p_eq = max(stats.norm.sf((diff + 0.02) / se), stats.norm.cdf((diff - 0.02) / se))
        assert t["p_value"] == pytest.approx(p_eq, rel=1e-9, abs=1e-300)
        # Output agreement over ALL images (labels not needed): paired t TOST, Bland–Altman
        dd = secure[:, k] - plain[:, k]
        a = row["agreement"]
        assert a["n"] == len(ds.samples)
        lo = stats.ttest_1samp(dd, -0.01, alternative="greater").pvalue
        hi = stats.ttest_1samp(dd, 0.01, alternative="less").pvalue
        assert a["tost"]["p_value"] == pytest.approx(max(lo, hi), rel=1e-9, abs=1e-300)
        sd = dd.std(ddof=1)
        assert a["bland_altman"]["loa_low"] == pytest.approx(dd.mean() - 1.96 * sd, abs=1e-12)
        assert a["bland_altman"]["loa_high"] == pytest.approx(dd.mean() + 1.96 * sd, abs=1e-12)
        assert a["within_margin"] == pytest.approx(np.mean(np.abs(dd) < 0.01))
    # Holm by hand: sorted p times (m, m-1, ...), running max, capped at 1
    order = np.argsort(pvals)
    ref = np.empty(3)
    run = 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (3 - rank) * pvals[i]))
        ref[i] = run
    got = [r["delta_auc"]["p_holm"] for r in s["labels"]]
    assert got == pytest.approx(list(ref), rel=1e-12)


def test_cochran_q_and_holm_by_hand():
    th, v = [0.01, -0.02, 0.03], [1e-4, 4e-4, 2.5e-4]
    w = [1 / x for x in v]
    pooled = sum(a * b for a, b in zip(w, th, strict=True)) / sum(w)
    q = sum(a * (b - pooled) ** 2 for a, b in zip(w, th, strict=True))
    h = cochran_q(th, v)
    assert h.q == pytest.approx(q) and h.df == 2 and h.pooled == pytest.approx(pooled)
    assert h.p_value == pytest.approx(math.exp(-q / 2))  # chi2 sf with 2 df
    # a group with DeLong variance 0 would have infinite weight: refused, the caller leaves
    # it out (it used to decide the pooled value and make Q = ∞, p = 0 of a 0.01 difference)
    for v in ([0.0, 1e-4], [0.0, 0.0]):
        with pytest.raises(ValueError, match="positive, finite variances"):
            cochran_q([0.0, 0.01], v)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_n_counts_labelled_cases_and_agreement_counts_images():
    ds, recs = _data(n=40, missing=0.3)
    s = analyse(ds, LMAP, recs, margin=0.01)
    for k, f in enumerate(FINDINGS):
        labelled = sum(1 for x in ds.samples if not math.isnan(x.labels[f]))
        row = s["labels"][k]
        assert row["n"] == labelled < 40 and row["agreement"]["n"] == 40


def test_one_class_finding_gets_a_row_not_an_abort(tmp_path):
    ds, recs = _data(n=30, missing=0.0)
    for x in ds.samples[:10]:
        x.labels[FINDINGS[1]] = 1.0
    for x in ds.samples[10:]:
        x.labels[FINDINGS[1]] = math.nan  # 10 labelled cases, all positive
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    row = s["labels"][1]
    assert row["auc_note"] == "AUROC not computed: all 10 labelled cases are positive"
    assert "delta_auc" not in row and "delta_auc" in s["labels"][0]
    assert row["agreement"]["n"] == 30  # output agreement does not need labels
    assert "all 10 labelled cases are positive" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_output_is_rejected_naming_image_and_finding(bad):
    ds, recs = _data(n=12)
    recs["i5.png"]["secure"][2] = bad
    with pytest.raises(AnalysisError, match=r"i5\.png: secure output for Effusion is"):
        analyse(ds, LMAP, recs, margin=0.01)
    with pytest.raises(ValueError, match="finite"):
        _midrank(np.array([0.1, bad, 0.3]))  # used to loop forever on NaN


def test_pooled_tost_counterexample_is_not_called_equivalent(tmp_path):
    """|Δ| = 0.05 (5 × margin) on every output, signs alternating, n = 2000: the mean is 0,
    so a mean-only TOST passes; the report must still NOT call the outputs equivalent."""
    rng = np.random.default_rng(0)
    samples, recs = [], {}
    for i in range(2000):
        y = {f: float(i % 2) for f in FINDINGS}
        samples.append(Sample(i + 2, f"i{i}", Path(f"i{i}"), y))
        p = rng.uniform(0.2, 0.8, 14)
        d = 0.05 if (i // 2) % 2 else -0.05
        recs[f"i{i}"] = {"id": f"i{i}", "plain": p.tolist(), "secure": (p + d).tolist()}
    ds = Dataset(samples, [], FINDINGS)
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    for r in s["labels"]:
        a = r["agreement"]
        assert a["tost"]["equivalent"]  # the mean difference alone is within ±0.01 ...
        assert not a["bland_altman"]["inside_margin"] and a["within_margin"] == 0.0
        assert not a["equivalent"]  # ... but individual outputs are 5 margins apart
    assert not s["verdicts"]["equivalent"] and s["verdicts"]["not_equivalent"] == FINDINGS
    md = (tmp_path / "report.md").read_text()
    assert "Equivalence NOT shown" in md and "limits of agreement exceed the margin" in md


def test_verdicts_say_what_they_test(tmp_path):
    ds, recs = _data()
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    md = (tmp_path / "report.md").read_text()
    assert s["verdicts"]["equivalent"]
    assert "intersection–union over the 3 findings" in md
    assert "Holm-adjusted over 3 testable findings" in md and "unadjusted" in md
    assert "non-significant AUROC difference is not evidence of equivalence" in md
    assert "no AUROC equivalence is claimed" in md  # no --auroc-margin given
    assert "/abs/" not in md and "/abs/" not in (tmp_path / "summary.json").read_text()


def test_secure_failures_are_a_result_said_first(tmp_path):
    ds, recs = _data(n=20)
    recs["i3.png"] = {"id": "i3.png", "failure": "overflow", "secure_error": "overflow at %c"}
    recs["i4.png"] = {"id": "i4.png", "failure": "input out of range", "secure_error": "x"}
    recs["i5.png"] = {"id": "i5.png", "error": "unreadable image: truncated"}
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    f = s["secure_failures"]
    assert (f["attempted"], f["failed"]) == (19, 2) and f["rate"] == pytest.approx(2 / 19)
    assert f["reasons"] == {"overflow": 1, "input out of range": 1}
    assert [b["id"] for b in s["dataset"]["bad_rows"]] == ["i5.png"]  # unusable, apart
    assert s["dataset"]["evaluated"] == 17
    md = (tmp_path / "report.md").read_text()
    first = "> ⚠ **Secure inference failed on 2 of 19 images (10.5%)**"
    assert md.split("\n\n")[1].startswith(first)  # right under the title, before anything
    ok = analyse(*_data(n=20)[:1], LMAP, _data(n=20)[1], margin=0.01)
    assert ok["secure_failures"]["rate"] == 0.0


def test_no_failure_rate_is_claimed_before_any_image_ran(tmp_path):
    """A report before any secure run (--limit 0, or every image pending) said "valid output
    on all 0 images (secure failure rate 0%)": a rate nothing measured."""
    ds, _ = _data(n=20)
    s = write_report(_cfg(tmp_path), ds, LMAP, {}, {})
    f = s["secure_failures"]
    assert (f["attempted"], f["failed"], f["rate"]) == (0, 0, None)
    md = (tmp_path / "report.md").read_text()
    assert "failure rate 0%" not in md and "on all 0 images" not in md
    assert "No image has been through secure inference yet, so there is no secure failure " in md


def test_small_sample_warnings_on_every_affected_row():
    ds, recs = _data(n=25)
    s = analyse(ds, LMAP, recs, margin=0.01)
    for r in s["labels"]:
        assert any(w.startswith(f"n = {r['n']} < 30") for w in r["warnings"])
        assert (r["n_pos"] < 10) == any("positive" in w and "< 10" in w for w in r["warnings"])
        assert r["agreement"]["warnings"] == ["n = 25 < 30"]
    big = analyse(*_data(n=200)[:1], LMAP, _data(n=200)[1], margin=0.01)
    assert all(not r["warnings"] for r in big["labels"])


def test_groups_get_every_table_and_a_heterogeneity_test(tmp_path):
    ds, recs = _data(n=120, groups=["A", "B"])
    for x in ds.samples:  # site B: secure scores of the first finding reshuffled a little
        if x.group == "B":
            recs[x.id]["secure"][0] += 0.2 * (np.sin(x.line) > 0)
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    g = s["groups"]
    assert [sec["group"] for sec in g["sections"]] == ["A", "B"]
    assert sum(sec["images"] for sec in g["sections"]) == s["dataset"]["evaluated"]
    het = {h["label"]: h for h in g["heterogeneity"]}
    da = [sec["labels"][0]["delta_auc"] for sec in g["sections"]]
    ref = (da[0]["diff"] - da[1]["diff"]) ** 2 / (da[0]["se"] ** 2 + da[1]["se"] ** 2)
    assert het[FINDINGS[0]]["q"] == pytest.approx(ref)  # two groups: Q = Δ²/(v1 + v2)
    assert het[FINDINGS[0]]["p_value"] == pytest.approx(stats.chi2.sf(ref, 1))
    md = (tmp_path / "report.md").read_text()
    assert "## Per site" in md and "### site = A" in md and "### site = B" in md
    assert "Heterogeneity of ΔAUROC across sites" in md
    assert md.count("| finding | n (pos.) |") == 3  # pooled + each site


def test_auc_equivalence_zero_variance_and_bad_margin():
    with pytest.raises(ValueError, match="not testable"):  # no "p = 0, equivalent"
        auc_equivalence(0.0, 0.0, 0.02)
    assert auc_equivalence(0.0, 0.005, 0.02).equivalent()
    with pytest.raises(ValueError, match="margin"):
        auc_equivalence(0.0, 0.01, 0.0)


def test_2pc_output_that_differs_from_its_oracle_is_a_protocol_fault(tmp_path, monkeypatch):
    """DESIGN §6: 2PC equals the fixed-point simulation bit for bit. A record whose secure
    output differs from its ``simulate`` oracle (here by one ulp-sized step, as a tampered or
    faulty run would) is a secure failure, said at the top; the report no longer tells the
    reader the differences are quantisation. Judged from the records (so --resume too)."""
    ds, recs = _data(n=20)
    for r in recs.values():
        r["simulate"] = list(r["secure"])  # a 2PC run with its oracle, all bit-identical
    s = write_report(_cfg(tmp_path, mode="2pc"), ds, LMAP, recs, {})
    assert s["secure_failures"]["failed"] == 0
    assert s["overall"]["twopc_vs_simulate"]["bit_exact_images"] == 20
    md = (tmp_path / "report.md").read_text()
    assert "fixed-point quantisation, not the protocol" in md and "PROTOCOL FAULT" not in md

    recs["i7.png"]["simulate"][4] += 2.0**-12
    from twofold.eval import figures

    drawn = {}
    draw = figures.roc_figure
    monkeypatch.setattr(  # the ROC figure draws the evaluated images only
        figures,
        "roc_figure",
        lambda path, curves, name: (
            drawn.update({c[0]: len(c[1]) for c in curves}),
            draw(path, curves, name),
        ),
    )
    s = write_report(_cfg(tmp_path, mode="2pc"), ds, LMAP, recs, {})
    assert drawn == {r["label"]: r["n"] for r in s["labels"] if "auc_plain" in r}
    f = s["secure_failures"]
    assert (f["attempted"], f["failed"]) == (20, 1)
    assert f["reasons"] == {"2PC differs from the fixed-point simulation": 1}
    assert f["images"][0]["id"] == "i7.png" and "1 of 14 outputs" in f["images"][0]["reason"]
    assert s["dataset"]["evaluated"] == 19
    assert all(r["agreement"]["n"] == 19 for r in s["labels"])  # out of every statistic
    v = s["overall"]["twopc_vs_simulate"]
    assert (v["images"], v["bit_exact_images"]) == (20, 19) and v["max_abs_diff"] > 0
    md = (tmp_path / "report.md").read_text()
    assert md.split("\n\n")[1].startswith("> ⚠ **PROTOCOL FAULT")  # first, under the title
    summary = md.split("## Summary")[1]  # and the first bullet, before any claim
    assert summary.strip().startswith("- ⚠ **Protocol fault on 1 image(s): every claim below")
    assert "fixed-point quantisation, not the protocol" not in md
    assert "Secure inference failed on 1 of 20 images" in md


def _two_site_data(rerank=True, flat=True):
    """12 images at two sites; Cardiomegaly labelled on 2 cases only (1 positive, 1 negative)
    and secure swaps their order; Effusion's secure scores rank exactly as the plaintext's
    (identical); with ``flat``, Pneumonia's plaintext separates perfectly and its secure
    output is one value for every image (zero variance, yet not identical)."""
    rng = np.random.default_rng(11)
    samples, recs = [], {}
    pn = CHEXNET_LABELS.index("Pneumonia")
    for i in range(12):
        y = {
            "Cardiomegaly": float(i == 0) if i < 2 else math.nan,
            "Effusion": float(i % 3 == 0),
            "Atelectasis": float(i % 2),
        }
        if flat:
            y["Pneumonia"] = float(i % 4 == 0)
        samples.append(Sample(i + 2, f"i{i}", Path(f"i{i}"), y, "AB"[i // 6]))
        p = rng.uniform(0.2, 0.8, 14)
        s = p + 1e-5  # same ranking on every finding ...
        if flat:
            p[pn] = 0.9 if i % 4 == 0 else 0.1  # plaintext separates Pneumonia perfectly,
            s[pn] = 0.5  # secure ties every case
        recs[f"i{i}"] = {"id": f"i{i}", "plain": p.tolist(), "secure": s.tolist()}
    c = CHEXNET_LABELS.index("Cardiomegaly")
    recs["i0"]["plain"][c], recs["i1"]["plain"][c] = 0.3, 0.7  # ... but the two Cardiomegaly
    recs["i0"]["secure"][c], recs["i1"]["secure"][c] = 0.7, 0.3  # cases swap places
    a = CHEXNET_LABELS.index("Atelectasis")
    for k in (1, 4, 7, 10) if rerank else ():  # Atelectasis: secure reranks a few cases
        recs[f"i{k}"]["secure"][a] = 1.0 - recs[f"i{k}"]["secure"][a]
    findings = ["Atelectasis", "Cardiomegaly", "Effusion"] + (["Pneumonia"] if flat else [])
    return Dataset(samples, [], findings, group_column="site"), recs


def test_degenerate_delong_is_not_computed_or_not_testable_never_significant(tmp_path):
    """Fewer than 2 cases of a class: AUROC not computed, with the reason (was: p < 1e-16 and
    "Significant AUROC difference" from one swapped pair). Zero variance with something
    differing (Pneumonia): "not testable", no p, out of Holm's family, no bold claim, out of
    Cochran's Q. Zero variance because every case is placed the same (Effusion): "identical",
    ΔAUROC = 0 exactly, said as a fact of the sample and not as a test."""
    ds, recs = _two_site_data()
    s = write_report(_cfg(tmp_path, auroc_margin=0.02), ds, LMAP, recs, {})
    rows = {r["label"]: r for r in s["labels"]}
    assert "delta_auc" not in rows["Cardiomegaly"]
    assert rows["Cardiomegaly"]["auc_note"] == (
        "AUROC not computed: 1 positive and 1 negative labelled cases "
        "(the DeLong variance needs at least 2 of each class)"
    )
    pn = rows["Pneumonia"]["delta_auc"]
    assert pn["p_value"] is None and pn["note"] == "not testable: zero variance"
    assert pn["diff"] == pytest.approx(-0.5) and not pn.get("identical")
    assert "p_holm" not in pn and "auc_tost" not in rows["Pneumonia"]
    eff = rows["Effusion"]["delta_auc"]
    assert eff["p_value"] is None and eff["identical"] and eff["diff"] == 0.0
    assert eff["note"].startswith("identical:") and "auc_tost" not in rows["Effusion"]
    assert rows["Atelectasis"]["delta_auc"]["p_value"] > 0  # the one testable finding
    v = s["verdicts"]
    assert v["auc_tested"] == 1 and v["auc_untestable"] == ["Pneumonia"]
    assert v["auc_identical"] == ["Effusion"]
    assert v["auc_significant"] == [] and v["auc_equivalent"] is False
    md = (tmp_path / "report.md").read_text()
    assert "Significant AUROC difference" not in md
    assert "< 1e-16 (" not in md  # no such "p (Holm)" cell: it came from one swapped pair
    assert "**ΔAUROC within" not in md  # no bold equivalence claim: Pneumonia is not testable
    assert "ΔAUROC not testable for Pneumonia" in md and "not testable (zero variance)" in md
    assert "ΔAUROC = 0 exactly for Effusion" in md and "not the result of a test" in md
    assert "AUROC not computed: 1 positive and 1 negative" in md
    for h in s["groups"]["heterogeneity"]:
        if h["label"] == "Effusion":  # zero variance at both sites: left out, not Q = ∞
            assert "q" not in h and h["groups_zero_variance"] == ["A", "B"]
            assert "left out, zero DeLong variance: A (identical), B (identical)" in h["note"]
        if h["label"] == "Pneumonia":  # site B has one positive: no ΔAUROC there at all
            assert "q" not in h and h["groups_zero_variance"] == ["A"]
            assert "A (not testable)" in h["note"]
    assert "left out of it (A, B)" in md

    ds, recs = _two_site_data(rerank=False)  # Atelectasis identical too; Pneumonia still not
    s = write_report(_cfg(tmp_path, auroc_margin=0.02), ds, LMAP, recs, {})
    assert s["verdicts"]["auc_tested"] == 0 and s["verdicts"]["auc_equivalent"] is False
    md = (tmp_path / "report.md").read_text()
    assert "AUROC equivalence within ±0.02 is not shown overall: ΔAUROC is not testable" in md
    assert "**AUROC equivalence" not in md
    # a site where Pneumonia has no ΔAUROC (one positive) may claim its two identical findings
    claims = md.split("**ΔAUROC within")[1:]
    assert all(c.startswith(" ±0.02 for all 2 findings**: 2 identical on these") for c in claims)
    assert "significant AUROC difference (paired" not in md  # no Holm family at all


def test_identical_auroc_is_an_exact_equality_not_a_test(tmp_path):
    """Secure and plaintext placing every labelled case the same is the best outcome there is:
    the report says ΔAUROC = 0 exactly and counts it within the AUROC margin, naming how many
    findings rest on a test and how many on identity (it said "not testable ... equivalence not
    shown" for exactly this case, e.g. the example report's five findings)."""
    ds, recs = _two_site_data(rerank=True, flat=False)
    s = write_report(_cfg(tmp_path, auroc_margin=0.05), ds, LMAP, recs, {})
    v = s["verdicts"]
    assert v["auc_identical"] == ["Effusion"] and v["auc_untestable"] == []
    md = (tmp_path / "report.md").read_text()
    if v["auc_equivalent"]:  # Atelectasis' TOST decides; either way Effusion is not in the way
        assert "**ΔAUROC within ±0.05 for all 2 findings**: 1 by TOST" in md
        assert "1 identical on these cases (ΔAUROC = 0 exactly, no test)" in md
    else:
        assert "NOT shown** for Atelectasis (" in md
    assert "| +0.0000 (identical) | – |" in md
    ds, recs = _two_site_data(rerank=False, flat=False)  # both identical
    s = write_report(_cfg(tmp_path, auroc_margin=0.05), ds, LMAP, recs, {})
    assert s["verdicts"]["auc_equivalent"] is True and s["verdicts"]["auc_tested"] == 0
    md = (tmp_path / "report.md").read_text()
    assert "**ΔAUROC within ±0.05 for all 2 findings**: 2 identical on these cases" in md
    assert "but on only 12 labelled cases" in md  # pooled: 12 cases each (a site has 6)


def test_headline_counts_usable_images_and_groups_with_results(tmp_path):
    """An image found unreadable when run is not a usable image (the report said "17 rows,
    14 usable images, 12 evaluated" with 4 unusable rows); a group with no evaluated image
    is not counted as one of the groups compared, and is named."""
    from twofold.eval.datasets import BadRow

    ds, recs = _data(n=12, groups=["A", "B", "C"])
    ds.bad_rows.append(BadRow(20, "gone.png", "missing file gone.png (under the image root)"))
    recs["i0.png"] = {"id": "i0.png", "error": "unreadable image: truncated"}
    recs["i3.png"] = {"id": "i3.png", "failure": "overflow", "secure_error": "overflow at %c"}
    for x in ds.samples:  # site C: not run yet (an incomplete run)
        if x.group == "C":
            del recs[x.id]
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    d = s["dataset"]
    assert (d["rows"], d["unusable"], d["usable"], d["evaluated"], d["pending"]) == (
        13, 2, 11, 6, 4,
    )  # fmt: skip
    assert d["usable"] == d["evaluated"] + s["secure_failures"]["failed"] + d["pending"]
    assert s["cost"]["dataset_images"] == d["usable"]  # extrapolated to the usable images
    assert d["rows"] == d["usable"] + d["unusable"]
    md = (tmp_path / "report.md").read_text()
    assert (
        "13 rows: 2 unusable, 11 usable images (6 evaluated, 1 secure failure, 4 not yet run)" in md
    )
    assert "Per site: 2 groups with evaluated images (1 of 3 has none: site C)" in md


def _report_set(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.mark.parametrize("where", ["html is a directory", "figure fails", "second replace fails"])
def test_a_failed_report_write_changes_nothing(tmp_path, monkeypatch, where):
    """The report set is written to temporary files and put in place together: any failure
    leaves every previous file as it was and no temporary file behind (it used to rewrite
    summary.json and report.md, then fail on report.html and leave a .report.html.* file)."""
    import os

    from twofold.eval import figures, report

    ds, recs = _data(n=20)
    write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    recs["i3.png"]["secure"][0] += 0.3  # the next report would differ in every file
    if where == "html is a directory":
        (tmp_path / "report.html").unlink()
        (tmp_path / "report.html").mkdir()
    elif where == "figure fails":

        def broken(*a, **k):
            raise RuntimeError("matplotlib fell over")

        monkeypatch.setattr(figures, "differences_figure", broken)
    else:
        real, calls = os.replace, []

        def flaky(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                raise PermissionError(13, "Permission denied")
            return real(src, dst)

        monkeypatch.setattr(report.os, "replace", flaky)
    before = _report_set(tmp_path)
    with pytest.raises((OSError, RuntimeError)) as e:
        write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    assert _report_set(tmp_path) == before  # nothing rewritten, nothing left behind
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    if where != "figure fails":
        msg = str(e.value)
        assert "\n" not in msg and "the previous report is left as it was" in msg
        assert ("report.html" if where == "html is a directory" else "cannot write") in msg
    monkeypatch.undo()
    if where == "html is a directory":
        (tmp_path / "report.html").rmdir()
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})  # and a later write succeeds
    assert json.loads((tmp_path / "summary.json").read_text())["labels"] == s["labels"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def _summary_bullets(md):
    """The headline bullets of the Summary section, in order."""
    head = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    return [line[2:] for line in head.splitlines() if line.startswith("- ")]


def test_equivalence_on_few_images_is_qualified_in_its_own_bullet(tmp_path):
    ds, recs = _data(n=4, noise=1e-5)
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    assert s["verdicts"]["equivalent"]
    (claim,) = [b for b in _summary_bullets((tmp_path / "report.md").read_text())
                if "Outputs equivalent within ±0.01" in b]  # fmt: skip
    assert "but on only 4 images** (< 30)" in claim
    ds, recs = _data(n=40, noise=1e-5)
    write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    (claim,) = [b for b in _summary_bullets((tmp_path / "report.md").read_text())
                if "Outputs equivalent within ±0.01" in b]  # fmt: skip
    assert "but on only" not in claim  # 40 images: no qualifier


def test_incomplete_run_notice_comes_before_every_claim(tmp_path):
    ds, recs = _data(n=20, noise=1e-5)
    for k in range(12, 20):
        del recs[f"i{k}.png"]  # not run yet
    write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    bullets = _summary_bullets((tmp_path / "report.md").read_text())
    assert bullets[0].startswith("⚠ **Incomplete run: 8 of 20 usable images not yet run**")
    assert "covers the 12 run so far" in bullets[0]
    assert any("Outputs equivalent" in b for b in bullets[1:])
    assert "## Summary\n\n- ⚠ **Incomplete run" in (tmp_path / "report.md").read_text()


def test_identical_outputs_are_said_to_be_exact_not_tested(tmp_path):
    """Secure equal to plaintext on every image (or off by one constant) leaves the paired
    TOST with no variance: its p of 0 is a fact of the images, not a test result. The table
    says "exact" (it printed "< 1e-16") and the equivalence headline says which findings."""
    ds, recs = _data(n=20, noise=0.0)
    s = write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    assert s["verdicts"]["equivalent"]
    md = (tmp_path / "report.md").read_text()
    assert "exact: Δ = +0.0e+00 on every image" in md
    assert "the difference is the same on every image (no variance" in md
    ds, recs = _data(n=20)  # with noise: tested, no such words
    write_report(_cfg(tmp_path), ds, LMAP, recs, {})
    md = (tmp_path / "report.md").read_text()
    assert "exact: Δ" not in md and "the same on every image" not in md


@pytest.mark.parametrize("server_simulation", [True, False])
def test_unchecked_warning_depends_on_the_server_simulation(tmp_path, server_simulation):
    """The UNCHECKED warning claims "never as secure failures" only for a run without the
    server bundle (2PC with the client bundle alone): there nothing checks the values. With
    the server bundle its fixed-point simulation counts values beyond the compiled bits as
    secure failures, and the warning says so instead."""
    ds, recs = _data(n=40)
    s = write_report(_cfg(tmp_path, mode="2pc"), ds, LMAP, recs, {}, overflow_checked=False,
                     server_simulation=server_simulation)  # fmt: skip
    assert s["server_simulation"] is server_simulation
    md = (tmp_path / "report.md").read_text()
    assert md.index("UNCHECKED program") < md.index("## Summary")
    warning = md[md.index("UNCHECKED program") : md.index("\n", md.index("UNCHECKED program"))]
    assert ("never as secure failures" in warning) is not server_simulation
    assert ("fixed-point simulation" in warning) is server_simulation
    assert "may give a wrong" in warning  # not every image beyond the ranges gives one
