"""Report figures (matplotlib, Agg, no global pyplot state): ROC curves secure over plaintext,
Bland–Altman plot, histogram and normal QQ plot of the differences secure − plaintext.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import roc_curve

PLAIN = dict(color="#1f77b4", lw=2.2, label="plaintext (onnxruntime)")
SECURE = dict(color="#d62728", lw=1.4, ls="--", label="secure")


def roc_figure(
    path: Path,
    curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float, float]],
    secure_name: str = "secure",
) -> Path:
    """One panel per finding: (name, y, plain, secure, auc_plain, auc_secure)."""
    n = len(curves)
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.6 * cols, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, y, p, s, ap, as_) in zip(axes.flat, curves, strict=False):
        fp, tp, _ = roc_curve(y, p)
        fs, ts, _ = roc_curve(y, s)
        ax.plot(fp, tp, **{**PLAIN, "label": f"plaintext AUC {ap:.3f}"})
        ax.plot(fs, ts, **{**SECURE, "label": f"{secure_name} AUC {as_:.3f}"})
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set_title(f"{name} (n={len(y)}, {int(np.sum(y))} pos.)", fontsize=10)
        ax.set_xlabel("False positive rate")
        ax.set_ylabel("True positive rate")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"ROC per finding: {secure_name} dashed, over plaintext solid")
    fig.savefig(path, dpi=110)
    return path


def bland_altman_figure(
    path: Path, secure: np.ndarray, plain: np.ndarray, bias: float, low: float, high: float
) -> Path:
    """Difference (secure − plain) against the mean of the pair, with bias and 95% limits."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    m = (secure + plain) / 2
    d = secure - plain
    ax.scatter(m, d, s=10, alpha=0.6, color="#1f77b4", label=f"output pairs (n={d.size})")
    ax.axhline(bias, color="k", lw=1.2, label=f"bias {bias:.2e}")
    ax.axhline(high, color="#d62728", ls="--", lw=1.1, label=f"+1.96 SD {high:.2e}")
    ax.axhline(low, color="#d62728", ls="--", lw=1.1, label=f"−1.96 SD {low:.2e}")
    ax.set_xlabel("Mean of secure and plaintext probability")
    ax.set_ylabel("Secure − plaintext probability")
    ax.set_title("Bland–Altman: agreement of secure and plaintext outputs")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def differences_figure(path: Path, diff: np.ndarray) -> Path:
    """Histogram of secure − plaintext and its normal QQ plot."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    bins = min(50, max(5, int(np.sqrt(diff.size))))
    ax1.hist(diff, bins=bins, color="#1f77b4", alpha=0.8, label=f"n={diff.size}")
    ax1.axvline(0, color="k", lw=0.8)
    ax1.set_xlabel("Secure − plaintext probability")
    ax1.set_ylabel("Count")
    ax1.set_title("Histogram of the differences")
    ax1.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    ax1.legend(fontsize=8)
    if diff.size >= 2 and np.ptp(diff) > 0:
        (osm, osr), (slope, icept, _r) = stats.probplot(diff, dist="norm")
        ax2.scatter(osm, osr, s=10, color="#1f77b4", label="ordered differences")
        ax2.plot(osm, slope * osm + icept, color="#d62728", lw=1.2, label="normal fit")
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "all differences equal", ha="center", va="center")
    ax2.set_xlabel("Theoretical normal quantile")
    ax2.set_ylabel("Sample quantile of the difference")
    ax2.set_title("Normal QQ plot of the differences")
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.savefig(path, dpi=110)
    return path
