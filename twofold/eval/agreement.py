"""Agreement of paired outputs (secure vs plaintext): TOST on the mean paired difference,
absolute differences, the share of pairs within the margin and Bland–Altman limits of agreement.

TOST: Schuirmann (J. Pharmacokinet. Biopharm. 15, 1987) — two one-sided paired t-tests of
H0: mean(d) <= -margin and H0: mean(d) >= +margin; equivalence is shown when both reject,
p = max of the two. It is a statement about the MEAN difference only: differences of ±5·margin
that cancel pass it. Bland & Altman (Lancet 1986): limits = mean(d) ± 1.96·sd(d), the range
that holds ~95% of individual differences; the report needs both inside ±margin to call the
outputs equivalent. All inputs here are paired: no test treats the two sides as independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests against ±margin: p = max of the two, and the 90% interval that lies
    inside (-margin, +margin) exactly when both reject at 5%."""

    margin: float
    p_lower: float
    p_upper: float
    p_value: float
    ci90_low: float
    ci90_high: float

    def equivalent(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


@dataclass(frozen=True)
class TOST(Equivalence):
    """Paired two one-sided t-tests for |mean(a - b)| < margin."""

    mean_diff: float
    sd_diff: float
    n: int
    t_lower: float
    t_upper: float


@dataclass(frozen=True)
class BlandAltman:
    """Bias (mean of a - b), sd of the differences and the 95% limits of agreement."""

    bias: float
    sd: float
    loa_low: float
    loa_high: float
    n: int


def _paired(a: np.ndarray, b: np.ndarray, least: int = 2) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired samples must be finite (NaN or inf found)")
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
    if a.size < least:
        raise ValueError(f"need at least {least} pairs, got {a.size}")
    return a - b


def tost_paired(a: np.ndarray, b: np.ndarray, margin: float = 0.01) -> TOST:
    """TOST on d = a - b with equivalence bounds (-margin, +margin), df = n - 1.

    With sd(d) = 0 the mean is known exactly: p = 0 inside the bounds, 1 outside.
    """
    if not margin > 0:
        raise ValueError(f"equivalence margin must be positive, got {margin}")
    d = _paired(a, b)
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    if se == 0.0:
        inside = -margin < mean < margin
        t_lo = np.inf if mean > -margin else -np.inf
        t_hi = -np.inf if mean < margin else np.inf
        p_lo = 0.0 if mean > -margin else 1.0
        p_hi = 0.0 if mean < margin else 1.0
        p = 0.0 if inside else 1.0
        return TOST(margin, p_lo, p_hi, p, mean, mean, mean, sd, n, t_lo, t_hi)
    df = n - 1
    t_lo = (mean + margin) / se  # H0: mean <= -margin, reject for large t
    t_hi = (mean - margin) / se  # H0: mean >= +margin, reject for small t
    p_lo = float(stats.t.sf(t_lo, df))
    p_hi = float(stats.t.cdf(t_hi, df))
    q = float(stats.t.ppf(0.95, df))
    return TOST(
        margin=margin,
        mean_diff=mean,
        sd_diff=sd,
        n=n,
        t_lower=float(t_lo),
        t_upper=float(t_hi),
        p_lower=p_lo,
        p_upper=p_hi,
        p_value=max(p_lo, p_hi),
        ci90_low=mean - q * se,
        ci90_high=mean + q * se,
    )


def abs_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and max of |a - b|."""
    d = np.abs(_paired(a, b, least=1))
    return float(d.mean()), float(d.max())


def bland_altman(a: np.ndarray, b: np.ndarray, z: float = 1.96) -> BlandAltman:
    """Bias and limits of agreement mean(d) ± z·sd(d) with sd using n - 1."""
    d = _paired(a, b)
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    return BlandAltman(bias, sd, bias - z * sd, bias + z * sd, d.size)


def share_within(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """Fraction of pairs with |a - b| < margin."""
    return float(np.mean(np.abs(_paired(a, b, least=1)) < margin))
