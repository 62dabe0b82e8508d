"""From results and labels to the numbers of the report (pure function, no I/O).

Per finding: AUROC of plaintext and secure outputs with DeLong 95% CIs and the paired DeLong
p-value; per finding and pooled: mean/max |secure - plain|, TOST (margin), two-sample KS,
Bland–Altman. Cost: per-image time, communication, peak memory, extrapolated to the dataset.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from .agreement import abs_diff, bland_altman, ks_2samp, tost_paired
from .datasets import Dataset
from .delong import auc_ci, paired_test
from .labels import LabelMap


def _auc_dict(a: Any) -> dict[str, float]:
    return {"auc": a.auc, "se": a.se, "low": a.low, "high": a.high}


def _agreement(secure: np.ndarray, plain: np.ndarray, margin: float) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(secure.size)}
    if secure.size == 0:
        return out
    out["mean_abs_diff"], out["max_abs_diff"] = abs_diff(secure, plain)
    out["ks"] = asdict(ks_2samp(secure, plain))
    if secure.size >= 2:
        t = tost_paired(secure, plain, margin)
        out["tost"] = {**asdict(t), "equivalent": t.equivalent()}
        out["bland_altman"] = asdict(bland_altman(secure, plain))
    return out


def analyse(
    ds: Dataset,
    lmap: LabelMap,
    records: dict[str, dict[str, Any]],
    margin: float,
    jobs: int = 1,
) -> dict[str, Any]:
    """Statistics over the dataset's samples that have a result; see module docstring."""
    done = [s for s in ds.samples if "plain" in records.get(s.id, {})]
    errors = [
        {"line": s.line, "id": s.id, "reason": records[s.id]["error"]}
        for s in ds.samples
        if "error" in records.get(s.id, {})
    ]
    bad = [{"line": b.line, "id": b.id, "reason": b.reason} for b in ds.bad_rows] + errors
    bad.sort(key=lambda b: b["line"])
    pending = len(ds.samples) - len(done) - len(errors)
    plain = np.array([records[s.id]["plain"] for s in done], np.float64).reshape(len(done), -1)
    secure = np.array([records[s.id]["secure"] for s in done], np.float64).reshape(plain.shape)

    per_label = []
    for name in ds.labels:
        j = lmap.model_labels.index(name)
        y = np.array([s.labels.get(name, math.nan) for s in done], np.float64)
        keep = ~np.isnan(y)
        row: dict[str, Any] = {
            "label": name,
            "n": int(keep.sum()),
            "n_pos": int((y[keep] == 1).sum()),
            **_agreement(secure[:, j], plain[:, j], margin),
        }
        yk = y[keep].astype(int)
        if 0 < row["n_pos"] < row["n"]:
            row["auc_plain"] = _auc_dict(auc_ci(yk, plain[keep, j]))
            row["auc_secure"] = _auc_dict(auc_ci(yk, secure[keep, j]))
            pt = paired_test(yk, secure[keep, j], plain[keep, j])
            row["delong"] = {"diff": pt.diff, "se": pt.se_diff, "z": pt.z, "p_value": pt.p_value}
        else:
            row["auc_note"] = "needs positive and negative cases"
        per_label.append(row)

    overall = _agreement(secure.ravel(), plain.ravel(), margin)
    oracle = [s for s in done if "simulate" in records[s.id]]
    if oracle:
        sim = np.array([records[s.id]["simulate"] for s in oracle], np.float64)
        sec = np.array([records[s.id]["secure"] for s in oracle], np.float64)
        overall["twopc_vs_simulate"] = {
            "images": len(oracle),
            "bit_exact_images": int(np.sum(np.all(sim == sec, axis=1))),
            "max_abs_diff": float(np.max(np.abs(sim - sec))),
        }
    if done:
        overall["identical_fraction"] = float(np.mean(secure == plain))
    return {
        "dataset": {
            "path": ds.source,
            "format": ds.fmt,
            "rows": len(ds.samples) + len(ds.bad_rows),
            "images": len(ds.samples),
            "evaluated": len(done),
            "pending": pending,
            "bad_rows": bad,
            "unmapped_columns": ds.unmapped,
        },
        "margin": margin,
        "labels": per_label,
        "overall": overall,
        "cost": _cost([records[s.id] for s in done], len(ds.samples), jobs),
    }


def _stat(xs: list[float]) -> dict[str, float] | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    a = np.asarray(xs, np.float64)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "max": float(a.max())}


def _cost(recs: list[dict[str, Any]], n_images: int, jobs: int) -> dict[str, Any]:
    """Per-image figures and totals extrapolated to all ``n_images`` (wall time / jobs)."""
    keys = {
        "time_plain_s": "plaintext time",
        "time_secure_s": "secure time (client wall clock in 2PC)",
        "server_time_s": "server time (2PC)",
        "comm_bytes": "communication (sent + received)",
        "rounds": "rounds",
        "peak_mem_bytes": "peak memory (simulate: numpy allocations; 2PC: client RSS)",
        "server_peak_mem_bytes": "server peak RSS (2PC session)",
    }
    per = {k: _stat([r.get(k) for r in recs]) for k in keys}
    per = {k: v for k, v in per.items() if v is not None}
    total = {}
    for k in ("time_plain_s", "time_secure_s", "comm_bytes"):
        if k in per:
            total[k] = per[k]["mean"] * n_images
    if "time_secure_s" in per:
        total["wall_secure_s"] = total["time_secure_s"] / max(1, jobs)
    return {
        "per_image": per,
        "descriptions": keys,
        "dataset_images": n_images,
        "jobs": jobs,
        "extrapolated_total": total,
    }
