"""AUROC with DeLong variance: confidence interval and the paired test of two AUROCs.

DeLong, DeLong & Clarke-Pearson (Biometrics 44, 1988) give the variance of the empirical AUC
from its structural components (placements); Sun & Xu (IEEE SPL 21, 2014, "fast DeLong")
compute them from midranks in O(N log N) instead of O(m·n). Ties count one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .agreement import Equivalence


@dataclass(frozen=True)
class AUC:
    """Empirical AUROC, its DeLong standard error and a (1 - alpha) Wald interval in [0, 1].

    ``low``/``high`` are None when the DeLong variance is zero (e.g. perfect separation): a
    Wald interval of width zero would claim certainty that a handful of cases cannot give.
    """

    auc: float
    se: float
    low: float | None
    high: float | None
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class PairedAUC:
    """Paired DeLong test of H0: AUC_a = AUC_b on the same cases (two-sided), with the Wald
    (1 - alpha) interval ``diff ± z·se`` of the difference AUC_a - AUC_b.

    ``testable`` is False when the estimated variance of the difference is zero (identical
    rankings, perfect separation by both, ...): the test is degenerate, so ``z``, ``p_value``,
    ``low`` and ``high`` are None — never p = 0 or p = 1 from a division by zero.
    ``identical`` is the zero-variance case where both place every case the same (each
    positive–negative pair in the same order, ties alike): the AUROCs are then equal on these
    cases exactly (diff = 0), a fact of the sample rather than the outcome of a test.
    """

    auc_a: float
    auc_b: float
    diff: float
    se_diff: float
    z: float | None
    p_value: float | None
    low: float | None
    high: float | None
    identical: bool = False

    @property
    def testable(self) -> bool:
        return self.p_value is not None


@dataclass(frozen=True)
class AUCEquivalence(Equivalence):
    """TOST of |AUC_a - AUC_b| < margin with the DeLong SE (normal approximation): H0: diff <=
    -margin and H0: diff >= +margin, each one-sided z-test."""

    diff: float
    se_diff: float


def _midrank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given the mean of their ranks (Sun & Xu, Alg. 1).

    NaN never equals itself, so the tie scan below would not advance on it: refuse it.
    """
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite (NaN or inf found)")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks_sorted = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks_sorted[i:j] = 0.5 * (i + j - 1) + 1.0
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks_sorted
    return out


def _split(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of shape (k, n) -> positives (k, m) and negatives (k, n0); checks the labels."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or scores.shape[-1] != labels.shape[0]:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} do not match")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (NaN or inf found)")
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    if pos.shape[1] == 0 or neg.shape[1] == 0:
        raise ValueError(
            f"AUROC needs both classes: {pos.shape[1]} positive, {neg.shape[1]} negative cases"
        )
    return pos, neg


MIN_PER_CLASS = 2  # DeLong's variance is a sample variance over each class's placements


def _placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Placement counts of k score vectors on the same cases: P10 (k, m), for each positive
    the number of negatives below it, and P01 (k, n), for each negative the number of
    positives above it (ties count ½). Half-integers, so exact in floating point; AUC =
    mean(P10) / n, V10 = P10 / n and V01 = P01 / m (Sun & Xu 2014, from midranks).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = _split(labels, scores)
    k, m = pos.shape
    n = neg.shape[1]
    p10 = np.empty((k, m))
    p01 = np.empty((k, n))
    for r in range(k):
        tx = _midrank(pos[r])
        ty = _midrank(neg[r])
        tz = _midrank(np.concatenate([pos[r], neg[r]]))
        p10[r] = tz[:m] - tx
        p01[r] = m - (tz[m:] - ty)
    return p10, p01, m, n


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for k score vectors on the same cases.

    V10_i = (rank of positive i among all - rank among positives) / n (placement of X_i),
    V01_j = 1 - (rank of negative j among all - rank among negatives) / m, as in Sun & Xu (2014).
    The covariance is S10/m + S01/n with S10, S01 the sample covariances of the placements,
    which need at least 2 positive and 2 negative cases: with fewer it is undefined, and this
    refuses (ValueError) rather than give a variance of zero.
    """
    p10, p01, m, n = _placements(labels, scores)
    if m < MIN_PER_CLASS or n < MIN_PER_CLASS:
        raise ValueError(
            f"DeLong variance needs at least {MIN_PER_CLASS} positive and {MIN_PER_CLASS} "
            f"negative cases: {m} positive, {n} negative"
        )
    k = p10.shape[0]
    aucs = p10.sum(axis=1) / (m * n)
    s10 = np.atleast_2d(np.cov(p10 / n)).reshape(k, k)
    s01 = np.atleast_2d(np.cov(p01 / m)).reshape(k, k)
    return aucs, s10 / m + s01 / n


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[..., :1]))


def auc_ci(labels: np.ndarray, scores: np.ndarray, alpha: float = 0.05) -> AUC:
    """AUROC with a DeLong (1 - alpha) confidence interval, AUC ± z·SE clipped to [0, 1];
    no interval (None) when the variance is exactly zero (every placement equal: perfect
    separation). Needs 2 cases of each class (see :func:`delong_components`)."""
    scores = np.asarray(scores, dtype=np.float64)
    aucs, cov = delong_components(labels, scores[None, :])
    p10, p01, _, _ = _placements(labels, scores[None, :])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    a = float(aucs[0])
    labels = np.asarray(labels)
    npos, nneg = int((labels == 1).sum()), int((labels == 0).sum())
    if _constant(p10) and _constant(p01):
        return AUC(auc=a, se=0.0, low=None, high=None, n_pos=npos, n_neg=nneg)
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    return AUC(
        auc=a,
        se=se,
        low=max(0.0, float(a - z * se)),
        high=min(1.0, float(a + z * se)),
        n_pos=npos,
        n_neg=nneg,
    )


def paired_test(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, alpha: float = 0.05
) -> PairedAUC:
    """Paired DeLong test of two correlated AUROCs (DeLong 1988, eq. for L = (1, -1)).

    The variance of the difference is zero exactly when the paired placement differences are
    constant over the positives and over the negatives (checked on the exact placement
    counts, no tolerance): e.g. identical rankings. The test is then degenerate, not a proof
    of equality or of difference: the result has ``testable`` False and no z, p or interval.
    Needs 2 cases of each class (see :func:`delong_components`).
    """
    scores = np.vstack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    aucs, _ = delong_components(labels, scores)
    p10, p01, m, n = _placements(labels, scores)
    diff = float(aucs[0] - aucs[1])
    d10, d01 = p10[0] - p10[1], p01[0] - p01[1]
    if _constant(d10) and _constant(d01):
        same = not d10.any() and not d01.any()  # every placement equal: the same AUROC
        return PairedAUC(float(aucs[0]), float(aucs[1]), diff, 0.0, None, None, None, None, same)
    # = cov[0,0] + cov[1,1] - 2 cov[0,1], as a sum of squares: > 0 when not both constant
    var = float(np.var(d10 / n, ddof=1) / m + np.var(d01 / m, ddof=1) / n)
    se = float(np.sqrt(var))
    z = diff / se
    p = float(2.0 * stats.norm.sf(abs(z)))
    q = float(stats.norm.ppf(1.0 - alpha / 2.0))
    return PairedAUC(float(aucs[0]), float(aucs[1]), diff, se, z, p, diff - q * se, diff + q * se)


def auc_equivalence(diff: float, se: float, margin: float) -> AUCEquivalence:
    """TOST on a paired AUROC difference with its DeLong SE (see :class:`AUCEquivalence`).

    Needs se > 0: with a zero variance the test is degenerate (not testable), and this
    refuses (ValueError) rather than call a difference known "exactly" from a few cases.
    """
    if not margin > 0:
        raise ValueError(f"AUROC equivalence margin must be positive, got {margin}")
    if not se > 0.0:
        raise ValueError("AUROC equivalence is not testable: the DeLong variance is zero")
    p_lo = float(stats.norm.sf((diff + margin) / se))
    p_hi = float(stats.norm.cdf((diff - margin) / se))
    q = float(stats.norm.ppf(0.95))
    return AUCEquivalence(
        margin, p_lo, p_hi, max(p_lo, p_hi), diff - q * se, diff + q * se, diff, se
    )
