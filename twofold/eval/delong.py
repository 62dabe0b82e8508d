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
    """Empirical AUROC, its DeLong standard error and a (1 - alpha) Wald interval in [0, 1]."""

    auc: float
    se: float
    low: float
    high: float
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class PairedAUC:
    """Paired DeLong test of H0: AUC_a = AUC_b on the same cases (two-sided), with the Wald
    (1 - alpha) interval ``diff ± z·se`` of the difference AUC_a - AUC_b."""

    auc_a: float
    auc_b: float
    diff: float
    se_diff: float
    z: float
    p_value: float
    low: float
    high: float


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


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for k score vectors on the same cases.

    V10_i = (rank of positive i among all - rank among positives) / n (placement of X_i),
    V01_j = 1 - (rank of negative j among all - rank among negatives) / m, as in Sun & Xu (2014).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = _split(labels, scores)
    k, m = pos.shape
    n = neg.shape[1]
    aucs = np.empty(k)
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    for r in range(k):
        tx = _midrank(pos[r])
        ty = _midrank(neg[r])
        tz = _midrank(np.concatenate([pos[r], neg[r]]))
        aucs[r] = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[r] = (tz[:m] - tx) / n
        v01[r] = 1.0 - (tz[m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((k, k))
    return aucs, s10 / m + s01 / n


def auc_ci(labels: np.ndarray, scores: np.ndarray, alpha: float = 0.05) -> AUC:
    """AUROC with a DeLong (1 - alpha) confidence interval, AUC ± z·SE clipped to [0, 1]."""
    scores = np.asarray(scores, dtype=np.float64)
    aucs, cov = delong_components(labels, scores[None, :])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    a = float(aucs[0])
    labels = np.asarray(labels)
    return AUC(
        auc=a,
        se=se,
        low=max(0.0, float(a - z * se)),
        high=min(1.0, float(a + z * se)),
        n_pos=int((labels == 1).sum()),
        n_neg=int((labels == 0).sum()),
    )


def paired_test(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, alpha: float = 0.05
) -> PairedAUC:
    """Paired DeLong test of two correlated AUROCs (DeLong 1988, eq. for L = (1, -1)).

    When the variance of the difference is zero (e.g. identical rankings) the difference is
    exactly known: p = 1 if it is zero, else 0, and the interval is the point itself.
    """
    scores = np.vstack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    aucs, cov = delong_components(labels, scores)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 1e-300:
        z = 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
        p = 1.0 if diff == 0.0 else 0.0
        return PairedAUC(float(aucs[0]), float(aucs[1]), diff, 0.0, z, p, diff, diff)
    se = float(np.sqrt(var))
    z = diff / se
    p = float(2.0 * stats.norm.sf(abs(z)))
    q = float(stats.norm.ppf(1.0 - alpha / 2.0))
    return PairedAUC(float(aucs[0]), float(aucs[1]), diff, se, z, p, diff - q * se, diff + q * se)


def auc_equivalence(diff: float, se: float, margin: float) -> AUCEquivalence:
    """TOST on a paired AUROC difference with its DeLong SE (see :class:`AUCEquivalence`).

    With se = 0 the difference is known exactly: p = 0 inside the margin, 1 outside.
    """
    if not margin > 0:
        raise ValueError(f"AUROC equivalence margin must be positive, got {margin}")
    if se <= 0.0:
        p_lo = 0.0 if diff > -margin else 1.0
        p_hi = 0.0 if diff < margin else 1.0
        return AUCEquivalence(margin, p_lo, p_hi, max(p_lo, p_hi), diff, diff, diff, 0.0)
    p_lo = float(stats.norm.sf((diff + margin) / se))
    p_hi = float(stats.norm.cdf((diff - margin) / se))
    q = float(stats.norm.ppf(0.95))
    return AUCEquivalence(
        margin, p_lo, p_hi, max(p_lo, p_hi), diff - q * se, diff + q * se, diff, se
    )
