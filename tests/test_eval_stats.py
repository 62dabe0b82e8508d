"""Statistics of twofold.eval against published and hand-computed values."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from twofold.eval.agreement import abs_diff, bland_altman, tost_paired
from twofold.eval.delong import auc_ci, delong_components, paired_test


def _hanley_mcneil_ct() -> tuple[np.ndarray, np.ndarray]:
    """Hanley & McNeil (Radiology 143, 1982), Table 1: 109 CT images rated 1..5.

    58 normal: 33, 6, 6, 11, 2; 51 abnormal: 3, 2, 2, 11, 33. Published AUC 0.893, SE 0.032.
    """
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    labels = np.r_[np.zeros(normal.size), np.ones(abnormal.size)]
    return labels, np.r_[normal, abnormal].astype(float)


def _naive_delong(labels, scores):
    """DeLong (1988) by definition: psi over all m*n pairs, placements V10/V01."""
    scores = np.atleast_2d(scores)
    k = scores.shape[0]
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    m, n = pos.shape[1], neg.shape[1]
    v10, v01 = np.empty((k, m)), np.empty((k, n))
    for r in range(k):
        psi = (pos[r][:, None] > neg[r][None, :]) + 0.5 * (pos[r][:, None] == neg[r][None, :])
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
    return v10.mean(axis=1), np.cov(v10) / m + np.cov(v01) / n


def test_auc_hanley_mcneil_published():
    labels, scores = _hanley_mcneil_ct()
    r = auc_ci(labels, scores)
    assert r.auc == pytest.approx(0.893, abs=5e-4)
    # DeLong SE is the nonparametric counterpart of Hanley-McNeil's 0.032.
    assert r.se == pytest.approx(0.032, abs=2e-3)
    assert (r.n_pos, r.n_neg) == (51, 58)
    assert r.low == pytest.approx(r.auc - 1.959964 * r.se) and r.high <= 1.0


def test_auc_hand_computed_with_tie():
    # X (pos) = .8 .6 .4, Y (neg) = .6 .5 .3. psi rows: 1,1,1 / .5,1,1 / 0,0,1 -> AUC 6.5/9.
    # V10 = 1, 5/6, 1/3 (var 39/324); V01 = 1/2, 2/3, 1 (var 21/324); Var = 60/972.
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.8, 0.6, 0.4, 0.6, 0.5, 0.3])
    r = auc_ci(labels, scores)
    assert r.auc == pytest.approx(6.5 / 9)
    assert r.se == pytest.approx(math.sqrt(60 / 972))
    assert r.low == pytest.approx(max(0.0, 6.5 / 9 - 1.959964 * math.sqrt(60 / 972)), abs=1e-6)
    assert r.high == 1.0  # clipped


def test_fast_delong_equals_definition_and_sklearn():
    rng = np.random.default_rng(3)
    labels = (rng.random(200) < 0.3).astype(int)
    a = labels + rng.normal(0, 1.0, 200)
    b = np.round(a + rng.normal(0, 0.3, 200), 1)  # ties on purpose
    aucs, cov = delong_components(labels, np.vstack([a, b]))
    ref_aucs, ref_cov = _naive_delong(labels, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, ref_aucs, rtol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10)
    assert aucs[1] == pytest.approx(roc_auc_score(labels, b))


def test_paired_delong_hand_computed():
    labels = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.8, 0.6, 0.4, 0.6, 0.5, 0.3])
    b = np.array([0.9, 0.7, 0.2, 0.1, 0.5, 0.3])
    r = paired_test(labels, a, b)
    ref_aucs, ref_cov = _naive_delong(labels, np.vstack([a, b]))
    var = ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1]
    assert r.auc_b == pytest.approx(7 / 9)  # psi rows 1,1,1 / 1,1,1 / 1,0,0
    assert r.diff == pytest.approx(6.5 / 9 - 7 / 9)
    assert r.z == pytest.approx(r.diff / math.sqrt(var))
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(r.z)))


def test_paired_delong_identical_rankings_are_not_testable():
    """Identical rankings make the variance of ΔAUROC exactly zero: a degenerate test, with
    no z, p or interval (it used to say p = 1, and p = 0 for any non-zero difference)."""
    labels, scores = _hanley_mcneil_ct()
    for other in (scores, 1 / (1 + np.exp(-scores))):  # the same ranking
        r = paired_test(labels, scores, other)
        assert r.diff == 0.0 and r.se_diff == 0.0 and not r.testable and r.identical
        assert (r.z, r.p_value, r.low, r.high) == (None, None, None, None)
    y = np.array([1, 1, 1, 0, 0, 0])  # both separate perfectly: zero variance, identical
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    r = paired_test(y, s + 1e-5, s)
    assert not r.testable and r.identical
    r = paired_test(y, s, np.full(6, 0.5))  # one separates, the other ties all: not identical
    assert not r.testable and not r.identical and r.diff == 0.5 and r.p_value is None
    r = paired_test(labels, scores, scores[::-1])  # a real difference: testable
    assert r.testable and not r.identical
    r = auc_ci(y, s)
    assert r.auc == 1.0 and r.se == 0.0 and (r.low, r.high) == (None, None)


def test_delong_needs_two_cases_of_each_class():
    """With one positive or one negative the placements of that class have no sample
    variance: refused, never a variance of zero (which gave p < 1e-16 from two cases)."""
    y = np.array([1, 0])
    with pytest.raises(ValueError, match="at least 2 positive and 2 negative cases: 1 positive"):
        paired_test(y, np.array([0.4, 0.6]), np.array([0.6, 0.4]))
    with pytest.raises(ValueError, match="1 positive, 4 negative"):
        auc_ci(np.array([1, 0, 0, 0, 0]), np.array([0.9, 0.1, 0.2, 0.3, 0.4]))
    r = paired_test(np.array([1, 1, 0, 0]), np.array([0.15, 0.8, 0.2, 0.1]),
                    np.array([0.9, 0.8, 0.2, 0.1]))  # fmt: skip
    assert r.testable and 0.4 < r.p_value < 0.5  # 2 + 2 cases: a (weak) test exists


def test_paired_delong_detects_worse_scorer():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.5).astype(int)
    good = labels * 2.0 + rng.normal(0, 1, 400)
    bad = labels * 0.3 + rng.normal(0, 1, 400)
    assert paired_test(labels, good, bad).p_value < 1e-6


def test_auc_rejects_single_class_and_bad_labels():
    with pytest.raises(ValueError, match="both classes"):
        auc_ci(np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="0 or 1"):
        auc_ci(np.array([0, 1, 2]), np.arange(3.0))


def test_tost_constructed_equivalent():
    d = np.array([0.001, -0.002, 0.003, 0.0, 0.002, -0.001])
    base = np.linspace(0.1, 0.9, d.size)
    r = tost_paired(base + d, base, margin=0.01)
    mean, sd = d.mean(), d.std(ddof=1)
    se = sd / math.sqrt(d.size)
    assert r.mean_diff == pytest.approx(mean) and r.sd_diff == pytest.approx(sd)
    assert r.t_lower == pytest.approx((mean + 0.01) / se)
    assert r.t_upper == pytest.approx((mean - 0.01) / se)
    lo = stats.ttest_1samp(d, -0.01, alternative="greater")
    hi = stats.ttest_1samp(d, 0.01, alternative="less")
    assert r.p_lower == pytest.approx(lo.pvalue) and r.p_upper == pytest.approx(hi.pvalue)
    assert r.p_value == pytest.approx(max(lo.pvalue, hi.pvalue))
    assert r.equivalent() and r.p_value < 1e-4
    assert r.ci90_low > -0.01 and r.ci90_high < 0.01


def test_tost_constructed_not_equivalent():
    d = np.array([0.02, 0.011, 0.015, 0.009, 0.018])  # mean 0.0146 > margin
    r = tost_paired(d, np.zeros(5), margin=0.01)
    assert not r.equivalent() and r.p_value > 0.5
    assert tost_paired(d, np.zeros(5), margin=0.05).equivalent()


def test_tost_exact_zero_difference_and_bad_margin():
    x = np.linspace(0, 1, 10)
    r = tost_paired(x, x)
    assert r.p_value == 0.0 and r.equivalent()
    assert tost_paired(x + 0.5, x).p_value == 1.0
    with pytest.raises(ValueError, match="margin"):
        tost_paired(x, x, margin=0)
    with pytest.raises(ValueError, match="size"):
        tost_paired(x, x[:3])


def test_abs_diff_and_bland_altman_hand_computed():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.1, 1.9, 3.2, 3.8])  # d = -.1 .1 -.2 .2
    mean, mx = abs_diff(a, b)
    assert mean == pytest.approx(0.15) and mx == pytest.approx(0.2)
    ba = bland_altman(a, b)
    sd = math.sqrt(0.1 / 3)
    assert ba.bias == pytest.approx(0.0, abs=1e-12) and ba.sd == pytest.approx(sd)
    assert ba.loa_low == pytest.approx(-1.96 * sd) and ba.loa_high == pytest.approx(1.96 * sd)
