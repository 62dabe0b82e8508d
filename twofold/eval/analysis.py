"""From results and labels to the numbers of the report (pure function, no I/O).

Every image of the dataset is in exactly one set: *evaluated* (finite plaintext and secure
outputs, and a 2PC output equal bit for bit to its fixed-point oracle when the record has one),
*secure failure* (the secure run gave no trustworthy output: overflow, input outside the
compiled range, a non-finite value, or a 2PC output that differs from the fixed-point
simulation — a protocol fault, DESIGN §6; a result of the evaluation, reported first; it is
classified here, from the records, so a resumed run's older records are judged alike), *unusable*
(bad CSV row, missing or unreadable file, non-finite plaintext output: nothing to compare) or
*pending* (not run yet).

Per finding, on the evaluated images of a section (all images pooled, and each group):

* AUROC of plaintext and secure outputs with DeLong 95% CIs on the ``n`` labelled cases;
  ΔAUROC = secure − plaintext with its paired DeLong 95% CI and two-sided p; Holm's adjustment
  over the findings; with ``auroc_margin`` a TOST of |ΔAUROC| < margin (delong.auc_equivalence).
  A finding whose labelled cases are one class, or have fewer than 2 of a class (the DeLong
  variance is then undefined), gets a row that says so instead of an AUROC. A ΔAUROC whose
  DeLong variance is zero has no CI, p or TOST and is left out of Holm's family: when secure
  and plaintext place every labelled case the same it is *identical* (ΔAUROC = 0 exactly on
  these cases, said as such, not as a test result, and it counts as within any AUROC margin);
  otherwise (e.g. one side separates perfectly, the other ties everything) it is *not
  testable* and never counts towards a verdict (intersection–union: it does not show
  equivalence).
* Agreement of that finding's output over all evaluated images: paired TOST of the mean
  difference (±margin), Bland–Altman 95% limits of agreement, share of images with |Δ| < margin,
  mean and max |Δ|. Outputs are called *equivalent* only when the TOST passes AND the limits of
  agreement lie inside ±margin (the mean alone can hide large differences that cancel).

Overall verdicts are intersection–union tests over the findings (equivalence overall = every
finding passes at alpha; no multiplicity correction is needed, Berger 1982), and "no significant
AUROC difference" uses Holm-adjusted p-values (unadjusted given too). Across groups, Cochran's Q
on the per-group ΔAUROC with their DeLong variances tests heterogeneity (combine.cochran_q);
a group whose ΔAUROC has zero variance is left out (its weight would be infinite) and named.
Rows with n < 30 labelled cases or < 10 positives carry a small-sample warning.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np

from .agreement import abs_diff, bland_altman, share_within, tost_paired
from .combine import cochran_q, holm
from .datasets import Dataset, Sample
from .delong import MIN_PER_CLASS, auc_ci, auc_equivalence, paired_test
from .labels import LabelMap

ALPHA = 0.05
SMALL_N = 30
ORACLE_FAULT = "2PC differs from the fixed-point simulation"
NOT_TESTABLE = "not testable: zero variance"
IDENTICAL = "identical: every labelled case placed the same, ΔAUROC = 0 exactly (no test applies)"
SMALL_POS = 10


class AnalysisError(ValueError):
    """The results cannot be analysed as they are (e.g. a non-finite output in a record)."""


def _auc_dict(a: Any) -> dict[str, float | None]:
    return {"auc": a.auc, "se": a.se, "low": a.low, "high": a.high}


def testable(row: dict[str, Any]) -> bool:
    """A finding whose paired DeLong test has a p-value (ΔAUROC with a positive variance)."""
    return "delta_auc" in row and row["delta_auc"]["p_value"] is not None


def _check_finite(sample: Sample, rec: dict[str, Any], names: tuple[str, ...]) -> None:
    for side in ("plain", "secure"):
        v = np.asarray(rec[side], np.float64)
        if v.size != len(names):
            raise AnalysisError(
                f"{sample.id}: {v.size} {side} outputs in the results, the model has {len(names)}"
            )
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            j = int(bad[0])
            raise AnalysisError(
                f"{sample.id}: {side} output for {names[j]} is {v[j]} (not finite); "
                "the results file cannot be analysed"
            )


def _oracle_gap(rec: dict[str, Any]) -> float:
    """max |2PC − simulate| of a record with an oracle (inf when the shapes differ)."""
    sec = np.asarray(rec["secure"], np.float64)
    sim = np.asarray(rec["simulate"], np.float64)
    if sec.shape != sim.shape:
        return math.inf
    return float(np.max(np.abs(sec - sim), initial=0.0))


def oracle_fault(rec: dict[str, Any]) -> str | None:
    """Why a 2PC record is a protocol fault, or None: DESIGN §6 requires the 2PC output to
    equal the cleartext fixed-point program's (the record's ``simulate``) bit for bit, so any
    difference (not a tolerance) means the protocol, not the quantisation, went wrong."""
    if "simulate" not in rec:
        return None
    sec = np.asarray(rec["secure"], np.float64)
    sim = np.asarray(rec["simulate"], np.float64)
    if sec.shape == sim.shape and np.array_equal(sec, sim):
        return None
    if sec.shape != sim.shape:
        return f"2PC gives {sec.size} outputs, the fixed-point simulation {sim.size}"
    k = int(np.count_nonzero(sec != sim))
    return (
        f"2PC output differs from the fixed-point simulation on {k} of {sec.size} outputs "
        f"(max |Δ| {_oracle_gap(rec):.3g}); DESIGN §6 requires them bit-identical"
    )


def _small(n: int, n_pos: int | None = None) -> list[str]:
    w = [f"n = {n} < {SMALL_N}"] if n < SMALL_N else []
    if n_pos is not None and n_pos < SMALL_POS:
        w.append(f"{n_pos} positive{'' if n_pos == 1 else 's'} < {SMALL_POS}")
    return w


def _agreement(secure: np.ndarray, plain: np.ndarray, margin: float) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(secure.size), "warnings": _small(int(secure.size))}
    if secure.size == 0:
        return out
    out["mean_abs_diff"], out["max_abs_diff"] = abs_diff(secure, plain)
    out["within_margin"] = share_within(secure, plain, margin)
    if secure.size >= 2:
        t = tost_paired(secure, plain, margin)
        ba = bland_altman(secure, plain)
        loa_inside = -margin < ba.loa_low and ba.loa_high < margin
        out["tost"] = {**asdict(t), "equivalent": t.equivalent(ALPHA)}
        out["bland_altman"] = {**asdict(ba), "inside_margin": loa_inside}
        out["equivalent"] = t.equivalent(ALPHA) and loa_inside
    return out


def _one_class_note(n: int, n_pos: int) -> str:
    if n == 0:
        return "AUROC not computed: no labelled cases"
    if 0 < n_pos < n:  # both classes, but too few of one for a variance
        return (
            f"AUROC not computed: {n_pos} positive and {n - n_pos} negative labelled cases "
            f"(the DeLong variance needs at least {MIN_PER_CLASS} of each class)"
        )
    kind = "positive" if n_pos == n else "negative"
    return f"AUROC not computed: all {n} labelled cases are {kind}"


def _finding(
    name: str,
    j: int,
    samples: list[Sample],
    plain: np.ndarray,
    secure: np.ndarray,
    margin: float,
    auroc_margin: float | None,
) -> dict[str, Any]:
    y = np.array([s.labels.get(name, math.nan) for s in samples], np.float64)
    keep = ~np.isnan(y)
    n, n_pos = int(keep.sum()), int((y[keep] == 1).sum())
    row: dict[str, Any] = {
        "label": name,
        "n": n,
        "n_pos": n_pos,
        "n_neg": n - n_pos,
        "warnings": _small(n, n_pos),
        "agreement": _agreement(secure[:, j], plain[:, j], margin),
    }
    if min(n_pos, n - n_pos) >= MIN_PER_CLASS:
        yk = y[keep].astype(int)
        row["auc_plain"] = _auc_dict(auc_ci(yk, plain[keep, j]))
        row["auc_secure"] = _auc_dict(auc_ci(yk, secure[keep, j]))
        pt = paired_test(yk, secure[keep, j], plain[keep, j])
        row["delta_auc"] = {
            "diff": pt.diff,
            "se": pt.se_diff,
            "low": pt.low,
            "high": pt.high,
            "z": pt.z,
            "p_value": pt.p_value,
        }
        if pt.identical:  # zero variance because nothing differs: an exact equality
            row["delta_auc"]["note"] = IDENTICAL
            row["delta_auc"]["identical"] = True
        elif not pt.testable:
            row["delta_auc"]["note"] = NOT_TESTABLE
        elif auroc_margin is not None:
            eq = auc_equivalence(pt.diff, pt.se_diff, auroc_margin)
            row["auc_tost"] = {**asdict(eq), "equivalent": eq.equivalent(ALPHA)}
    else:
        row["auc_note"] = _one_class_note(n, n_pos)
    return row


def _verdicts(rows: list[dict[str, Any]], auroc_margin: float | None) -> dict[str, Any]:
    """Intersection–union verdicts over the findings, and Holm over the AUROC tests."""
    agree = [r for r in rows if "tost" in r["agreement"]]
    v: dict[str, Any] = {"findings": len(rows)}
    if agree and len(agree) == len(rows):
        v["mean_within_margin"] = all(r["agreement"]["tost"]["equivalent"] for r in agree)
        v["tost_p_max"] = max(r["agreement"]["tost"]["p_value"] for r in agree)
        v["loa_within_margin"] = all(r["agreement"]["bland_altman"]["inside_margin"] for r in agree)
        v["equivalent"] = v["mean_within_margin"] and v["loa_within_margin"]
        v["not_equivalent"] = [r["label"] for r in agree if not r["agreement"]["equivalent"]]
    tested = [r for r in rows if testable(r)]
    same = [r["label"] for r in rows if "delta_auc" in r and r["delta_auc"].get("identical")]
    untestable = [
        r["label"] for r in rows if "delta_auc" in r and not testable(r) and r["label"] not in same
    ]
    adj = holm([r["delta_auc"]["p_value"] for r in tested])
    for r, p in zip(tested, adj, strict=True):
        r["delta_auc"]["p_holm"] = p
    v["auc_tested"] = len(tested)
    v["auc_identical"] = same  # ΔAUROC = 0 exactly: every case placed the same
    v["auc_untestable"] = untestable  # zero DeLong variance otherwise: no p, no verdict
    if tested:
        i = int(np.argmin([r["delta_auc"]["p_value"] for r in tested]))
        v["auc_significant"] = [r["label"] for r, p in zip(tested, adj, strict=True) if p < ALPHA]
        v["auc_min_p_holm"] = adj[i]
        v["auc_min_p"] = tested[i]["delta_auc"]["p_value"]
        v["auc_min_p_label"] = tested[i]["label"]
    if auroc_margin is not None and (tested or untestable or same):
        # intersection–union: a finding that cannot be tested does not show equivalence
        v["auc_equivalent"] = (
            bool(tested or same)
            and not untestable
            and all(r["auc_tost"]["equivalent"] for r in tested)
        )
        if tested:
            v["auc_tost_p_max"] = max(r["auc_tost"]["p_value"] for r in tested)
        v["auc_not_equivalent"] = [r["label"] for r in tested if not r["auc_tost"]["equivalent"]]
    return v


def _section(
    samples: list[Sample],
    records: dict[str, dict[str, Any]],
    labels: list[str],
    lmap: LabelMap,
    margin: float,
    auroc_margin: float | None,
    failures: int,
) -> dict[str, Any]:
    n_out = len(lmap.model_labels)
    plain = np.array([records[s.id]["plain"] for s in samples], np.float64).reshape(-1, n_out)
    secure = np.array([records[s.id]["secure"] for s in samples], np.float64).reshape(-1, n_out)
    rows = [
        _finding(name, lmap.model_labels.index(name), samples, plain, secure, margin, auroc_margin)
        for name in labels
    ]
    attempted = len(samples) + failures
    return {
        "images": len(samples),
        "secure_failures": failures,
        "secure_failure_rate": failures / attempted if attempted else 0.0,
        "labels": rows,
        "verdicts": _verdicts(rows, auroc_margin),
    }


def _heterogeneity(sections: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Cochran's Q per finding on the groups where ΔAUROC was computed."""
    out = []
    for k, name in enumerate(labels):
        per = [(sec["group"], sec["labels"][k].get("delta_auc")) for sec in sections]
        used = [(g, d) for g, d in per if d is not None and d["se"] > 0]
        zero = [g for g, d in per if d is not None and not d["se"] > 0]
        row: dict[str, Any] = {
            "label": name,
            "groups_used": [g for g, _ in used],
            "groups_zero_variance": zero,
        }
        notes = []
        if zero:  # weight 1/0: it would decide the pooled value and Q on its own
            same = {g for g, d in per if d is not None and d.get("identical")}
            why = ", ".join(f"{g} ({'identical' if g in same else 'not testable'})" for g in zero)
            notes.append(f"left out, zero DeLong variance: {why}")
        if len(used) < 2:
            notes.insert(
                0,
                "not computed: needs ΔAUROC with a non-zero variance in at least two groups, "
                f"has it in {len(used)}",
            )
        else:
            h = cochran_q([d["diff"] for _, d in used], [d["se"] ** 2 for _, d in used])
            row.update(asdict(h))
        if notes:
            row["note"] = "; ".join(notes)
        out.append(row)
    return out


def analyse(
    ds: Dataset,
    lmap: LabelMap,
    records: dict[str, dict[str, Any]],
    margin: float,
    jobs: int = 1,
    auroc_margin: float | None = None,
) -> dict[str, Any]:
    """Statistics over the dataset's samples that have a result; see module docstring."""
    names = tuple(lmap.model_labels)
    done, fails, unusable = [], [], []
    oracle: list[tuple[Sample, bool]] = []  # images with a fixed-point oracle: bit-identical?
    for s in ds.samples:
        rec = records.get(s.id)
        if rec is None:
            continue
        if "error" in rec:
            unusable.append({"line": s.line, "id": s.id, "reason": rec["error"]})
        elif "secure_error" in rec:
            fails.append(
                {
                    "line": s.line,
                    "id": s.id,
                    "group": s.group,
                    "kind": rec.get("failure", "secure run failed"),
                    "reason": rec["secure_error"],
                }
            )
        elif (fault := oracle_fault(rec)) is not None:
            oracle.append((s, False))
            fails.append(
                {
                    "line": s.line,
                    "id": s.id,
                    "group": s.group,
                    "kind": ORACLE_FAULT,
                    "reason": fault,
                }
            )
        else:
            _check_finite(s, rec, names)
            done.append(s)
            if "simulate" in rec:
                oracle.append((s, True))
    bad = [{"line": b.line, "id": b.id, "reason": b.reason} for b in ds.bad_rows] + unusable
    bad.sort(key=lambda b: b["line"])
    finished = {s.id for s in ds.samples if s.id in records}
    pending = len(ds.samples) - len(finished)
    attempted = len(done) + len(fails)

    pooled = _section(done, records, ds.labels, lmap, margin, auroc_margin, len(fails))
    groups = None
    if ds.group_column is not None:
        sections = []
        for g in ds.groups():
            sub = [s for s in done if s.group == g]
            nf = sum(1 for f in fails if f["group"] == g)
            sec = _section(sub, records, ds.labels, lmap, margin, auroc_margin, nf)
            sections.append({"group": g, **sec})
        groups = {
            "column": ds.group_column,
            "sections": sections,
            "heterogeneity": _heterogeneity(sections, ds.labels),
        }

    overall: dict[str, Any] = {"images": len(done)}
    if oracle:
        gaps = [_oracle_gap(records[s.id]) for s, _ in oracle]
        overall["twopc_vs_simulate"] = {
            "images": len(oracle),
            "bit_exact_images": sum(1 for _, same in oracle if same),
            "max_abs_diff": max(gaps),
        }
    if done:
        idx = [lmap.model_labels.index(n) for n in ds.labels]
        p = np.array([records[s.id]["plain"] for s in done], np.float64)[:, idx]
        q = np.array([records[s.id]["secure"] for s in done], np.float64)[:, idx]
        overall["identical_fraction"] = float(np.mean(p == q))
        overall["mean_abs_diff"], overall["max_abs_diff"] = abs_diff(q, p)
    return {
        "dataset": {
            "path": ds.source,
            "format": ds.fmt,
            "sha256": ds.sha256,
            "rows": len(ds.samples) + len(ds.bad_rows),
            "images": len(ds.samples),  # rows naming an existing file (not all readable)
            "unusable": len(bad),  # bad CSV rows + images found unusable when run
            "usable": len(ds.samples) - len(unusable),  # evaluated + secure failures + pending
            "evaluated": len(done),
            "pending": pending,
            "bad_rows": bad,
            "unmapped_columns": ds.unmapped,
        },
        "secure_failures": {
            "attempted": attempted,
            "failed": len(fails),
            "rate": len(fails) / attempted if attempted else None,  # None: nothing ran yet
            "reasons": dict(Counter(f["kind"] for f in fails).most_common()),
            "images": fails,
        },
        "alpha": ALPHA,
        "margin": margin,
        "auroc_margin": auroc_margin,
        "labels": pooled["labels"],
        "verdicts": pooled["verdicts"],
        "groups": groups,
        "overall": overall,
        # extrapolated to the usable images: one found unreadable is never run
        "cost": _cost([records[s.id] for s in done], len(ds.samples) - len(unusable), jobs),
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
