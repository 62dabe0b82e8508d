"""Combining per-finding and per-group results: Holm's step-down adjustment and Cochran's Q.

Holm (Scand. J. Statist. 6, 1979): sort the m p-values ascending, p_adj(i) = max over j <= i of
min(1, (m - j + 1)·p(j)); controls the family-wise error rate under any dependence.

Cochran's Q (Cochran, Biometrics 10, 1954; as used in meta-analysis, Higgins & Thompson, Stat.
Med. 21, 2002): for group estimates θ_g with variances v_g, weights w_g = 1/v_g, pooled
θ̄ = Σ w_g θ_g / Σ w_g, Q = Σ w_g (θ_g − θ̄)², referred to χ² with G − 1 degrees of freedom;
I² = max(0, (Q − df)/Q) is the share of variation beyond chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    p = np.asarray(pvalues, np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="mergesort")
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.maximum.accumulate(adj)
    out = np.empty(m)
    out[order] = adj
    return [float(x) for x in out]


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q across groups: statistic, df, p, I² and the fixed-effect pooled estimate."""

    groups: int
    q: float
    df: int
    p_value: float
    i2: float
    pooled: float


def cochran_q(estimates: list[float], variances: list[float]) -> Heterogeneity:
    """Cochran's Q of ``estimates`` with ``variances`` (needs at least two groups).

    Every variance must be positive and finite (ValueError otherwise): a zero variance (e.g.
    identical rankings give ΔAUROC = 0 with DeLong variance 0) would be an infinite weight,
    deciding the pooled value alone and turning any other group's difference into a
    "significant" heterogeneity. The caller leaves such groups out and says so.
    """
    th = np.asarray(estimates, np.float64)
    v = np.asarray(variances, np.float64)
    g = th.size
    if g < 2 or v.size != g:
        raise ValueError(f"Cochran's Q needs at least two groups with variances, got {g}")
    if not np.all((v > 0) & np.isfinite(v)):
        raise ValueError(
            "Cochran's Q needs positive, finite variances (a zero-variance group would have "
            "infinite weight: leave it out)"
        )
    df = g - 1
    w = 1.0 / v
    pooled = float(np.sum(w * th) / np.sum(w))
    q = float(np.sum(w * (th - pooled) ** 2))
    p = float(stats.chi2.sf(q, df))
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return Heterogeneity(g, q, df, p, i2, pooled)
