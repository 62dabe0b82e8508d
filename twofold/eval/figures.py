"""Report figures (matplotlib, Agg, no global pyplot state): ROC curves secure over plaintext,
Bland–Altman plot, histogram and normal QQ plot of the differences secure − plaintext.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter
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
    path: Path, secure: np.ndarray, plain: np.ndarray, names: list[str], margin: float
) -> Path:
    """Difference (secure − plain) against the pair's mean, one colour per finding (columns of
    the (images, findings) arrays), with the pooled bias, 95% limits and the ±margin lines."""
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    for k, name in enumerate(names):
        m = (secure[:, k] + plain[:, k]) / 2
        d = secure[:, k] - plain[:, k]
        ax.scatter(m, d, s=14, alpha=0.75, color=cmap(k % cmap.N), label=name)
    d = (secure - plain).ravel()
    bias, sd = float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0
    ax.axhline(bias, color="k", lw=1.1, label=f"bias {bias:.1e}")
    for y, lab in ((bias + 1.96 * sd, "±1.96 SD (all findings)"), (bias - 1.96 * sd, None)):
        ax.axhline(y, color="0.35", ls="--", lw=1.0, label=lab)
    for y, lab in ((margin, f"±δ = {margin:g} (margin)"), (-margin, None)):
        ax.axhline(y, color="#d62728", ls=":", lw=1.6, label=lab)
    ax.set_xlabel("Mean of secure and plaintext probability")
    ax.set_ylabel("Secure − plaintext probability")
    ax.set_title("Bland–Altman per finding (limits per finding are in the agreement table)")
    _tidy(ax.yaxis)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110)
    return path


def _tidy(axis: Any) -> None:
    """At most 6 ticks, plain-scientific labels with a shared offset, never overlapping."""
    axis.set_major_locator(MaxNLocator(nbins=6))
    fmt = ScalarFormatter(useMathText=True)
    fmt.set_powerlimits((-2, 3))
    axis.set_major_formatter(fmt)


def differences_figure(path: Path, diff: np.ndarray, margin: float) -> Path:
    """Histogram of secure − plaintext (all reported findings) with ±margin, and its QQ plot."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    bins = min(50, max(5, int(np.sqrt(diff.size))))
    ax1.hist(diff, bins=bins, color="#1f77b4", alpha=0.8, label=f"n={diff.size}")
    ax1.axvline(0, color="k", lw=0.8)
    for x, lab in ((margin, f"±δ = {margin:g}"), (-margin, None)):
        ax1.axvline(x, color="#d62728", ls=":", lw=1.6, label=lab)
    ax1.set_xlabel("Secure − plaintext probability")
    ax1.set_ylabel("Count")
    ax1.set_title("Histogram of the differences")
    _tidy(ax1.xaxis)
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
    _tidy(ax2.yaxis)
    fig.savefig(path, dpi=110)
    return path
