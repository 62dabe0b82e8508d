"""Write ``summary.json``, ``report.md``, ``report.html`` (self-contained, figures inlined as
base64) and the PNG figures of an evaluation. Markdown and HTML render the same blocks.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import figures, scratch
from .analysis import ORACLE_FAULT, SMALL_N, AnalysisError, analyse, oracle_fault, testable
from .datasets import Dataset
from .labels import LabelMap

# ("h1".."h4"|"p"|"note"|"warn", text) | ("ul", [text]) | ("table", header, rows)
# | ("img", file, alt)
Block = tuple


class ReportWriteError(OSError):
    """The report set could not be written; the previous one is left as it was (one line)."""


class _Staged:
    """The files of one report set (summary.json, report.md, report.html, figures), written
    to temporary files in the output directory and put in place together by :meth:`commit`.

    Invariant: after ``commit`` every file is the new one; after a failure anywhere (writing,
    rendering, a figure, a replace) every file is the previous one (or absent, as before) and
    no temporary file is left: ``commit`` keeps a hard link to each file it replaces and puts
    them back if a later replace fails; :meth:`discard` removes the temporaries.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """A new temporary file for ``name`` (same directory, same suffix: matplotlib reads
        the format from it)."""
        self.tmp[name] = scratch.temporary(self.out, name, Path(name).suffix)
        return self.tmp[name]

    def write(self, name: str, data: bytes) -> None:
        self.path(name).write_bytes(data)

    def source(self, name: str) -> Path:
        """Where ``name`` is now: its temporary file if staged, else the output directory."""
        return self.tmp.get(name, self.out / name)

    def commit(self) -> None:
        for name in self.tmp:  # a directory (or other non-file) in the way: refuse up front
            final = self.out / name
            if final.exists() and not final.is_file():
                raise ReportWriteError(
                    f"cannot write {name} in {self.out}: a directory (or other non-file) is in "
                    "the way; the previous report is left as it was"
                )
        done: list[tuple[Path, Path | None]] = []  # (final, its previous version)
        try:
            for name, tmp in self.tmp.items():
                final = self.out / name
                old = self._keep(final) if final.exists() else None
                os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for reading
                try:
                    os.replace(tmp, final)
                except OSError as e:
                    if old is not None:
                        old.unlink()
                    raise ReportWriteError(
                        f"cannot write {name} in {self.out}: {e.strerror or e}; the previous "
                        "report is left as it was"
                    ) from e
                done.append((final, old))
        except BaseException:
            for final, old in reversed(done):  # put the previous versions back
                if old is None:
                    final.unlink(missing_ok=True)
                else:
                    os.replace(old, final)
            raise
        finally:
            self.discard()
        for _, old in done:
            if old is not None:
                old.unlink(missing_ok=True)

    def _keep(self, final: Path) -> Path:
        """A second name for the file about to be replaced (a hard link; a copy where the
        file system has none), to put it back if a later replace fails."""
        old = scratch.temporary(self.out, final.name, old=True)
        try:
            old.unlink()
            os.link(final, old)
        except OSError:
            shutil.copy2(final, old)
        return old

    def discard(self) -> None:
        """Remove every temporary file not yet put in place."""
        for tmp in self.tmp.values():
            tmp.unlink(missing_ok=True)


def _f(x: float | None, fmt: str = ".4f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, fmt)


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "< 1e-16" if x < 1e-16 else (f"{x:.3g}")


def _count(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _peq(x: float | None) -> str:
    """``p = 0.03`` or ``p < 1e-16`` for running text."""
    t = _p(x)
    return f"p {t}" if t.startswith("<") else f"p = {t}"


def _bytes(x: float | None) -> str:
    if x is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.1f} {unit}"
        x /= 1024
    return str(x)


def _seconds(x: float | None) -> str:
    if x is None:
        return "–"
    if x < 1:
        return f"{x * 1000:.3g} ms"
    if x < 120:
        return f"{x:.3g} s"
    return f"{x / 3600:.2f} h" if x >= 7200 else f"{x / 60:.1f} min"


def write_report(
    cfg: Any,
    ds: Dataset,
    lmap: LabelMap,
    records: dict[str, dict[str, Any]],
    identity: dict[str, Any],
    projection: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    overflow_checked: bool = True,
    server_simulation: bool = True,
) -> dict[str, Any]:
    """Analyse and write every artefact into ``cfg.out``; returns the summary dict.

    ``overflow_checked`` False (a program evaluated with ``--allow-unchecked``): the report
    says first that the program flags no overflow, so its secure outputs are unchecked.
    ``server_simulation``: the server bundle's fixed-point simulation ran on every image
    (``--mode simulate``, or 2PC with the server bundle as its oracle); it checks each tensor
    against the bits the compiler assumed, so it counts as secure failures what the program
    itself does not flag. The UNCHECKED warning says which of the two this run had.

    Paths in the artefacts are file names only: a report is published, the machine's layout
    is not part of it. ``provenance`` (provenance.py: command, result-changing options and
    their sources, versions, UTC time, machine, digests) goes into every artefact.
    """
    out = Path(cfg.out)
    try:
        summary = analyse(
            ds, lmap, records, cfg.margin, cfg.jobs, getattr(cfg, "auroc_margin", None)
        )
    except AnalysisError as e:
        raise ValueError(str(e)) from None
    summary["dataset"]["path"] = Path(summary["dataset"]["path"]).name
    summary = {
        "title": cfg.title,
        "note": cfg.note,
        "mode": cfg.mode,
        "model": Path(cfg.model).name,
        "bundle": Path(cfg.bundle).name,
        "identity": identity,
        "overflow_checked": overflow_checked,
        "server_simulation": server_simulation,
        **summary,
    }
    stage = _Staged(out)  # all or nothing: a failure leaves the previous report as it was
    try:
        summary["figures"] = _figures(stage, ds, lmap, records, summary)
        summary["projection"] = projection  # execution side (eval/projection.py)
        summary["provenance"] = provenance
        stage.write("summary.json", json.dumps(summary, indent=1).encode())
        blocks = _blocks(summary)
        stage.write("report.md", _markdown(blocks).encode())
        stage.write("report.html", _html(blocks, stage.source, cfg.title).encode())
        stage.commit()
    finally:
        stage.discard()
    return summary


def _figures(
    stage: _Staged, ds: Dataset, lmap: LabelMap, records: dict, summary: dict
) -> dict[str, str]:
    """Draw the figures into ``stage``; their final file names."""
    done = [  # the evaluated images of analyse(): a protocol fault is not drawn either
        s
        for s in ds.samples
        if "secure" in records.get(s.id, {})
        and "secure_error" not in records[s.id]
        and oracle_fault(records[s.id]) is None
    ]
    figs: dict[str, str] = {}
    if not done:
        return figs
    plain = np.array([records[s.id]["plain"] for s in done], np.float64)
    secure = np.array([records[s.id]["secure"] for s in done], np.float64)
    curves = []
    for row in summary["labels"]:
        if "auc_plain" not in row:
            continue
        j = lmap.model_labels.index(row["label"])
        y = np.array([s.labels.get(row["label"], math.nan) for s in done])
        k = ~np.isnan(y)
        curves.append(
            (
                row["label"],
                y[k].astype(int),
                plain[k, j],
                secure[k, j],
                row["auc_plain"]["auc"],
                row["auc_secure"]["auc"],
            )
        )
    name = "secure (2PC)" if summary["mode"] == "2pc" else "secure (fixed-point)"
    if curves:
        figures.roc_figure(stage.path("roc.png"), curves, name)
        figs["roc"] = "roc.png"
    names = [r["label"] for r in summary["labels"]]
    if names and len(done) >= 2:
        idx = [lmap.model_labels.index(n) for n in names]
        figures.bland_altman_figure(
            stage.path("bland_altman.png"), secure[:, idx], plain[:, idx], names, summary["margin"]
        )
        figs["bland_altman"] = "bland_altman.png"
        diff = (secure[:, idx] - plain[:, idx]).ravel()
        figures.differences_figure(stage.path("differences.png"), diff, summary["margin"])
        figs["differences"] = "differences.png"
    return figs


def _signed(x: float, fmt: str = "+.4f") -> str:
    return format(x, fmt)


def _ci(lo: float, hi: float, fmt: str = ".3f") -> str:
    return f"[{format(lo, fmt)}, {format(hi, fmt)}]"


def _names(xs: list[str]) -> str:
    return ", ".join(xs)


def _auc_cell(a: dict[str, Any]) -> str:
    if a["low"] is None:  # zero DeLong variance: no interval
        return f"{a['auc']:.3f} [no CI]"
    return f"{a['auc']:.3f} {_ci(a['low'], a['high'], '.2f')}"


def _auc_table(sec: dict[str, Any], auroc_margin: float | None) -> Block:
    rows = []
    for r in sec["labels"]:
        warn = "⚠ " + "; ".join(r["warnings"]) if r["warnings"] else ""
        if "delta_auc" in r:
            ap, as_, d = r["auc_plain"], r["auc_secure"], r["delta_auc"]
            notes = []
            if ap["low"] is None or as_["low"] is None:
                notes.append("zero DeLong variance of an AUROC: no CI")
            if testable(r):
                delta = f"{_signed(d['diff'])} {_ci(d['low'], d['high'], '+.3f')}"
                p = f"{_p(d['p_value'])} ({_p(d['p_holm'])})"
            elif d.get("identical"):
                delta, p = f"{_signed(d['diff'])} (identical)", "–"
                notes.append(f"ΔAUROC {d['note']}")
            else:
                delta, p = f"{_signed(d['diff'])} [no CI]", "–"
                notes.append(f"ΔAUROC {d['note']} (no p-value, no verdict)")
            row = [r["label"], f"{r['n']} ({r['n_pos']})", _auc_cell(ap), _auc_cell(as_), delta, p]
            if auroc_margin is not None:
                t = r.get("auc_tost")
                cell = f"{_p(t['p_value'])} {'yes' if t['equivalent'] else 'no'}" if t else "–"
                row.append("identical" if d.get("identical") else cell)
            row.append("; ".join(x for x in (*notes, warn) if x))
        else:  # the reason goes to the notes column (it wraps; the number columns do not)
            row = [r["label"], f"{r['n']} ({r['n_pos']})", "–", "–", "–", "–"]
            if auroc_margin is not None:
                row.append("–")
            row.append("; ".join(x for x in (r["auc_note"], warn) if x))
        rows.append(row)
    head = [
        "finding",
        "n (pos.)",
        "AUROC plaintext [95% CI]",
        "AUROC secure [95% CI]",
        "ΔAUROC [95% CI]",
        "p (Holm)",
    ]
    if auroc_margin is not None:
        head.append(f"TOST ±{auroc_margin:g}: p, equiv.")
    return ("table", [*head, "notes"], rows)


def _exact_diff(a: dict[str, Any]) -> bool:
    """Every image's secure − plaintext difference is the same (sd 0): the TOST's p of 0 or 1
    is then a fact of the images, not a test result, and is shown as such."""
    return "tost" in a and a["tost"]["sd_diff"] == 0.0


def _agreement_table(sec: dict[str, Any], margin: float) -> Block:
    rows = []
    for r in sec["labels"]:
        a = r["agreement"]
        warn = "⚠ " + "; ".join(a["warnings"]) if a["warnings"] else ""
        if "tost" not in a:
            rows.append([r["label"], str(a["n"]), "–", "–", "–", "–", "–", "–", warn])
            continue
        t, ba = a["tost"], a["bland_altman"]
        rows.append(
            [
                r["label"],
                str(a["n"]),
                f"{t['mean_diff']:+.1e}",
                f"{a['max_abs_diff']:.1e}",
                f"exact: Δ = {t['mean_diff']:+.1e} on every image"
                if _exact_diff(a)
                else _p(t["p_value"]),
                f"[{ba['loa_low']:+.1e}, {ba['loa_high']:+.1e}]",
                f"{100 * a['within_margin']:.1f}%",
                "yes" if a["equivalent"] else "**no**",
                warn,
            ]
        )
    head = [
        "finding",
        "images",
        "mean Δ",
        "max |Δ|",
        f"TOST p (±{margin:g})",
        "95% limits of agreement",
        f"|Δ| < {margin:g}",
        "equivalent",
        "notes",
    ]
    return ("table", head, rows)


def _few(n: int, what: str) -> str:
    """The qualifier a claim carries, in its own bullet, when it rests on few cases."""
    if n >= SMALL_N:
        return ""
    return (
        f" — ⚠ **but on only {n} {what}** (< {SMALL_N}): too few for this to be more than an "
        "indication"
    )


def _verdict_text(sec: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """The claims of one section, each saying exactly what it tests."""
    v, m, am = sec["verdicts"], s["margin"], s["auroc_margin"]
    out = []
    k = v["findings"]
    if "equivalent" in v:
        test = (
            f"(per finding: TOST of the mean paired difference secure − plaintext within ±{m:g} "
            f"at α = {s['alpha']:g}, and Bland–Altman 95% limits of agreement inside ±{m:g}; "
            f"overall by intersection–union over the {k} findings — each must pass, so no "
            "multiplicity correction is needed)"
        )
        if v["equivalent"]:
            exact = [r["label"] for r in sec["labels"] if _exact_diff(r["agreement"])]
            same = (
                f"; for {_names(exact)} the difference is the same on every image (no variance: "
                "a fact of these images, not a test result)"
                if exact
                else ""
            )
            out.append(
                f"**Outputs equivalent within ±{m:g} for all {k} findings** {test}{same}"
                + _few(min(r["agreement"]["n"] for r in sec["labels"]), "images")
                + "."
            )
        else:
            why = []
            if not v["mean_within_margin"]:
                why.append("a mean difference is not shown within the margin")
            if not v["loa_within_margin"]:
                why.append("limits of agreement exceed the margin")
            out.append(
                f"**Equivalence NOT shown** for {_names(v['not_equivalent'])} "
                f"({'; '.join(why)}) {test}."
            )
    else:
        out.append("Output equivalence not tested: fewer than two evaluated images.")
    tested, untestable = v["auc_tested"], v.get("auc_untestable", [])
    same = v.get("auc_identical", [])
    if tested:
        if v["auc_significant"]:
            out.append(
                f"**Significant AUROC difference** (paired DeLong, Holm-adjusted over {tested} "
                f"testable findings, α = {s['alpha']:g}) for {_names(v['auc_significant'])}."
            )
        else:
            out.append(
                f"No finding shows a significant AUROC difference (paired DeLong, Holm-adjusted "
                f"over {tested} testable findings at α = {s['alpha']:g}; smallest p: "
                f"{v['auc_min_p_label']}, unadjusted {_p(v['auc_min_p'])}, Holm-adjusted "
                f"{_p(v['auc_min_p_holm'])})."
            )
    if same:
        out.append(
            f"ΔAUROC = 0 exactly for {_names(same)}: secure and plaintext place every labelled "
            "case the same (each positive–negative pair in the same order), so their AUROCs are "
            "equal on these cases. That is a fact of this sample, not the result of a test: "
            "with nothing differing there is no variance, so no CI or p-value."
        )
    if untestable:
        diffs = ", ".join(
            f"{r['label']} {_signed(r['delta_auc']['diff'])}"
            for r in sec["labels"]
            if r["label"] in untestable
        )
        out.append(
            f"ΔAUROC not testable for {_names(untestable)}: the DeLong variance of the paired "
            f"difference is zero (ΔAUROC {diffs} on these cases, e.g. identical rankings or "
            "perfect separation), so there is no p-value and no significance or equivalence "
            "verdict for them."
        )
    if am is not None and "auc_equivalent" in v:
        fails = v["auc_not_equivalent"]
        if v["auc_equivalent"]:
            how = []
            if tested:
                how.append(
                    f"{tested} by TOST on ΔAUROC with the DeLong SE (intersection–union, "
                    f"largest {_peq(v['auc_tost_p_max'])})"
                )
            if same:
                how.append(f"{len(same)} identical on these cases (ΔAUROC = 0 exactly, no test)")
            counted = [r for r in sec["labels"] if testable(r) or r["label"] in same]
            out.append(
                f"**ΔAUROC within ±{am:g} for all {len(counted)} findings**: "
                + "; ".join(how)
                + _few(min(r["n"] for r in counted), "labelled cases")
                + "."
            )
        elif fails:
            out.append(
                f"**AUROC equivalence within ±{am:g} NOT shown** for {_names(fails)} (TOST on "
                "ΔAUROC with the DeLong SE)"
                + (
                    f"; not testable (zero variance) for {_names(untestable)}."
                    if untestable
                    else "."
                )
            )
        else:  # only untestable findings stand in the way: no verdict either way
            passed = (
                f"; the TOST passes for the {tested} testable finding(s) (largest "
                f"{_peq(v['auc_tost_p_max'])})"
                if tested
                else ""
            )
            out.append(
                f"AUROC equivalence within ±{am:g} is not shown overall: ΔAUROC is not testable "
                f"(zero variance) for {_names(untestable)}{passed}."
            )
    none = [r["label"] for r in sec["labels"] if "auc_note" in r]
    if none:
        out.append(f"AUROC not computed for {_names(none)} (see the table).")
    return out


def _section_blocks(sec: dict[str, Any], s: dict[str, Any], level: str, tag: str) -> list[Block]:
    b: list[Block] = [(level, f"Diagnostic performance: AUROC secure vs plaintext{tag}")]
    b.append(
        (
            "p",
            "AUROC with 95% DeLong CIs on the n labelled cases; ΔAUROC = secure − plaintext with "
            "its paired DeLong 95% CI; p of the paired DeLong test of no difference, "
            "Holm-adjusted in brackets.",
        )
    )
    b.append(_auc_table(sec, s["auroc_margin"]))
    b.append((level, f"Agreement of the outputs{tag}"))
    b.append(
        (
            "p",
            f"Per finding over all evaluated images: Δ = secure − plaintext probability; TOST of "
            f"the mean Δ within ±{s['margin']:g} (paired t, two one-sided tests); Bland–Altman "
            f"95% limits of agreement (mean ± 1.96 SD of Δ); share of images with |Δ| < "
            f'{s["margin"]:g}. "equivalent" = TOST passes and the limits lie inside the margin.',
        )
    )
    b.append(_agreement_table(sec, s["margin"]))
    return b


def _unchecked_warning(server_simulation: bool) -> str:
    """The warning on a program that flags no overflow. What shows such an overflow depends on
    the run: with the server bundle, its simulation's check of the compiled bits (a secure
    failure here, but an output for the hospital); without, nothing but the plaintext."""
    head = (
        "**UNCHECKED program: it cannot flag an overflow** (compiled with `--range-model "
        "calibrated`, or no ReLU to check; evaluated with `--allow-unchecked`). An image "
        "outside the calibrated ranges may give a wrong secure output that nothing in the "
        "output tells from a right one. "
    )
    if server_simulation:
        return head + (
            "In this run the server bundle's fixed-point simulation checked every tensor "
            "against the bits the compiler assumed, and an image whose values left them is "
            "counted below as a secure failure (overflow); the program run by the hospital, "
            "with the client bundle alone, would not flag it but give an output."
        )
    return head + (
        "Such outputs are counted below as results, and can show only as disagreement with "
        "the plaintext model, never as secure failures."
    )


def _headline(s: dict[str, Any]) -> list[Block]:
    """Title, then a non-zero secure failure rate before anything else, then the claims."""
    d, f = s["dataset"], s["secure_failures"]
    b: list[Block] = [("h1", s["title"])]
    v = s["overall"].get("twopc_vs_simulate")
    if v and v["bit_exact_images"] < v["images"]:
        k = v["images"] - v["bit_exact_images"]
        b.append(
            (
                "warn",
                f"**PROTOCOL FAULT: the 2PC output differs from the fixed-point simulation of "
                f"the same bundle on {k} of {v['images']} images** (max |Δ| "
                f"{v['max_abs_diff']:.3g}). They must be equal bit for bit (DESIGN §6), so the "
                "two-party runtime, not quantisation, gave these outputs; they are counted as "
                "secure failures and left out of every statistic, and the secure results of "
                "this run should not be relied on until the difference is explained.",
            )
        )
    if s.get("overflow_checked") is False:
        b.append(("warn", _unchecked_warning(s.get("server_simulation", True))))
    if f["failed"]:
        why = ", ".join(f"{k}: {n}" for k, n in f["reasons"].items())
        b.append(
            (
                "warn",
                f"**Secure inference failed on {f['failed']} of {f['attempted']} images "
                f"({100 * f['rate']:.1f}%)** — {why}. These images have no trustworthy secure "
                "output and are left out of every statistic below; they are listed under Secure "
                "failures.",
            )
        )
    if s["note"]:
        b.append(("note", s["note"]))
    b.append(("h2", "Summary"))
    claims = []
    if d["pending"]:  # before any claim: every claim below covers part of the data only
        claims.append(
            f"⚠ **Incomplete run: {d['pending']} of {d['usable']} usable images not yet run** "
            f"— every figure below covers the {d['evaluated'] + f['failed']} run so far "
            "(`--resume` continues it)."
        )
    faults = f.get("reasons", {}).get(ORACLE_FAULT, 0)
    if faults:  # before any claim: they rest on a runtime that gave a wrong output
        claims.append(
            f"⚠ **Protocol fault on {faults} image(s): every claim below is on the images "
            "whose 2PC output did equal the simulation, from a runtime that got others wrong** "
            "— not to be relied on until the fault is explained (see the warning above)."
        )
    if not f["attempted"]:  # a rate of 0 of 0 would claim what nothing showed
        claims.append(
            "No image has been through secure inference yet, so there is no secure failure rate."
        )
    elif not f["failed"]:
        claims.append(
            f"Secure inference gave a valid output on all {f['attempted']} images it ran "
            "(secure failure rate 0%)."
        )
    claims += _verdict_text(s, s)
    small = sum(1 for r in s["labels"] if r["warnings"])
    if small:
        claims.append(
            f"⚠ **Small samples:** {small} of {len(s['labels'])} findings have fewer than 30 "
            "labelled cases or fewer than 10 positives (marked ⚠); their intervals and tests "
            "are unreliable."
        )
    claims.append(
        "A non-significant AUROC difference is not evidence of equivalence: only a TOST against "
        "a stated margin shows equivalence"
        + (
            "."
            if s["auroc_margin"] is not None
            else " (none was set: pass --auroc-margin), so no AUROC equivalence is claimed."
        )
    )
    claims.append(
        "No claim of distributional equivalence is made; the paired differences are "
        "described by the limits of agreement, the share within the margin and the figures."
    )
    g = s["groups"]
    if g:
        het = [h for h in g["heterogeneity"] if "p_value" in h]
        sig = [h["label"] for h in het if h["p_value"] < s["alpha"]]
        if not het:
            verdict = (
                "could not be tested (it needs ΔAUROC with a non-zero variance in at least "
                "two groups)."
            )
        elif sig:
            verdict = f"is significant for {_names(sig)}."
        else:
            verdict = (
                f"is not significant for the {len(het)} finding it could test."
                if len(het) == 1
                else f"is not significant for any of the {len(het)} findings it could test."
            )
        zero = sorted({x for h in g["heterogeneity"] for x in h.get("groups_zero_variance", [])})
        if zero:
            verdict += f" Groups with a zero-variance ΔAUROC are left out of it ({_names(zero)})."
        have = [sec["group"] for sec in g["sections"] if sec["images"]]
        empty = [sec["group"] for sec in g["sections"] if not sec["images"]]
        claims.append(
            f"Per {g['column']}: {len(have)} group{'' if len(have) == 1 else 's'} with "
            "evaluated images"
            + (
                f" ({len(empty)} of {len(g['sections'])} ha{'s' if len(empty) == 1 else 've'} "
                f"none: {_names([g['column'] + ' ' + x for x in empty])})"
                if empty
                else ""
            )
            + f". Heterogeneity of ΔAUROC across them (Cochran's Q, α = {s['alpha']:g}) "
            + verdict
        )
    unusable = len(d["bad_rows"])
    claims.append(
        f"{d['evaluated']} images evaluated; {unusable} rows unusable (bad CSV row, missing or "
        "unreadable image: not a secure-vs-plaintext result)"
        + (f"; {d['pending']} not yet run (incomplete run, see above)" if d["pending"] else "")
        + "."
    )
    b.append(("ul", claims))
    return b


def _blocks(s: dict[str, Any]) -> list[Block]:
    d, o, c = s["dataset"], s["overall"], s["cost"]
    nf = s["secure_failures"]["failed"]
    b = _headline(s)
    b.append(
        (
            "p",
            f"Mode: **{s['mode']}**. Model `{s['model']}`, bundle `{s['bundle']}`. Dataset "
            f"`{d['path']}` ({d['format']}, SHA-256 {d['sha256'][:12]}…): {d['rows']} rows: "
            f"{d['unusable']} unusable, {d['usable']} usable images ({d['evaluated']} "
            f"evaluated, {nf} secure failure{'' if nf == 1 else 's'}, {d['pending']} not yet "
            "run).",
        )
    )
    if d["unmapped_columns"]:
        b.append(
            (
                "p",
                "Dataset columns the model does not predict (ignored): "
                + ", ".join(d["unmapped_columns"])
                + ".",
            )
        )
    tag = " (pooled)" if s["groups"] else ""
    b += _section_blocks(s, s, "h2", tag)
    if "twopc_vs_simulate" in o:
        v = o["twopc_vs_simulate"]
        head = (
            f"2PC vs the cleartext fixed-point simulation of the same bundle: "
            f"**{v['bit_exact_images']} of {v['images']} images bit-identical** "
            f"(max |Δ| {v['max_abs_diff']:.1e})"
        )
        if v["bit_exact_images"] == v["images"]:
            tail = "; the differences above are fixed-point quantisation, not the protocol."
            b.append(("p", head + tail))
        else:
            tail = (
                ": the others differ, a protocol fault (see the top of the report and Secure "
                "failures); they are left out of the tables above."
            )
            b.append(("warn", head + tail))
    for key, alt in (
        ("roc", "ROC curves per finding"),
        ("bland_altman", "Bland–Altman plot per finding"),
        ("differences", "Differences"),
    ):
        if key in s["figures"]:
            b.append(("img", s["figures"][key], alt))
    if s["groups"]:
        b += _group_blocks(s)

    b += _cost_blocks(s, c)
    b.append(("h2", "Secure failures"))
    f = s["secure_failures"]
    if f["images"]:
        b.append(
            (
                "table",
                ["CSV line", "image", "kind", "reason"],
                [[str(r["line"]), r["id"], r["kind"], r["reason"]] for r in f["images"]],
            )
        )
    else:
        b.append(("p", "None."))
    b.append(("h2", "Unusable rows"))
    if d["bad_rows"]:
        b.append(
            (
                "table",
                ["CSV line", "image", "reason"],
                [[str(r["line"]), r["id"] or "–", r["reason"]] for r in d["bad_rows"]],
            )
        )
    else:
        b.append(("p", "None."))
    from .provenance import blocks as provenance_blocks

    b += provenance_blocks(s.get("provenance"))
    return b


def _group_blocks(s: dict[str, Any]) -> list[Block]:
    g = s["groups"]
    col = g["column"]
    b: list[Block] = [("h2", f"Per {col}")]
    b.append(
        (
            "p",
            f"Every table above, for each value of `{col}`. The pooled tables are the whole set.",
        )
    )
    for sec in g["sections"]:
        fails = sec["secure_failures"]
        b.append(
            (
                "h3",
                f"{col} = {sec['group']}: {sec['images']} images evaluated, "
                f"{fails} secure failure{'s' if fails != 1 else ''}",
            )
        )
        b.append(("ul", _verdict_text(sec, s)))
        b += _section_blocks(sec, s, "h4", f" — {col} {sec['group']}")
    b.append(("h3", f"Heterogeneity of ΔAUROC across {col}s"))
    b.append(
        (
            "p",
            "Cochran's Q on the per-group ΔAUROC with their DeLong variances (weights 1/var), "
            "χ² with (groups − 1) df; I² = share of variation beyond chance. A group whose "
            "ΔAUROC has zero DeLong variance is left out (its weight would be infinite: it "
            "would decide the pooled value alone), and so are groups where AUROC is not "
            "computed; the notes name them.",
        )
    )
    rows = []
    for h in g["heterogeneity"]:
        used = len(h["groups_used"])
        if "q" not in h:
            rows.append([h["label"], str(used), "–", "–", "–", "–", h.get("note", "")])
        else:
            rows.append(
                [
                    h["label"],
                    str(used),
                    _signed(h["pooled"]),
                    f"{h['q']:.3g}",
                    _p(h["p_value"]),
                    f"{100 * h['i2']:.0f}%",
                    h.get("note", ""),
                ]
            )
    b.append(("table", ["finding", "groups", "fixed-effect ΔAUROC", "Q", "p", "I²", "notes"], rows))
    return b


def _cost_blocks(s: dict[str, Any], c: dict[str, Any]) -> list[Block]:
    b: list[Block] = [("h2", "Cost")]
    per, tot = c["per_image"], c["extrapolated_total"]
    rows = []
    for k, desc in c["descriptions"].items():
        if k in per:
            fmt = _bytes if "bytes" in k else (_seconds if k.endswith("_s") else _count)
            rows.append([desc, fmt(per[k]["mean"]), fmt(per[k]["median"]), fmt(per[k]["max"])])
    if rows:
        b.append(("table", ["per image", "mean", "median", "max"], rows))
    rows = []
    if "time_plain_s" in tot:
        rows.append(["plaintext CPU time", _seconds(tot["time_plain_s"])])
    if "time_secure_s" in tot:
        rows.append(["secure time (one session)", _seconds(tot["time_secure_s"])])
        rows.append(
            [f"secure wall time with {c['jobs']} parallel job(s)", _seconds(tot["wall_secure_s"])]
        )
    if "comm_bytes" in tot:
        rows.append(["communication", _bytes(tot["comm_bytes"])])
    if rows:
        b.append(("p", f"Extrapolated to all {c['dataset_images']} images of the dataset:"))
        b.append(("table", ["total", "value"], rows))
    if s["mode"] == "2pc":
        b.append(
            (
                "p",
                "2PC figures are per session as the client measured them (with the server's "
                "own summary); the client RSS is the peak of the whole eval process so far "
                "(it includes onnxruntime and the simulation oracle), an upper bound.",
            )
        )
    if s["mode"] == "simulate":
        b.append(
            (
                "p",
                "Simulate mode runs the cleartext fixed-point program (bit-exact to the 2PC "
                "output by construction), so there is no communication; peak memory is the "
                "peak of Python/numpy allocations during one image (tracemalloc, 1 job).",
            )
        )

    from .projection import blocks as projection_blocks  # execution side (eval/projection.py)

    b += projection_blocks(s.get("projection"))
    return b


def _md_cell(x: str) -> str:
    return x.replace("|", "\\|")


def _markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3", "h4"):
            out.append("#" * int(kind[1]) + f" {blk[1]}")
        elif kind == "p":
            out.append(blk[1])
        elif kind == "note":
            out.append(f"> **Note.** {blk[1]}")
        elif kind == "warn":
            out.append(f"> ⚠ {blk[1]}")
        elif kind == "ul":
            out.extend(f"- {x}" for x in blk[1])
        elif kind == "table":
            header, rows = blk[1], blk[2]
            out.append("| " + " | ".join(map(_md_cell, header)) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(map(_md_cell, r)) + " |" for r in rows)
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        out.append("")
    return "\n".join(out)


def _inline_md(text: str) -> str:
    """The two inline forms the blocks use: **bold** and `code`."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;"
    "color:#222;line-height:1.4}h2{border-bottom:1px solid #ccc;margin-top:1.6em}"
    ".tw{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0}"
    "td,th{border:1px solid #bbb;padding:2px 6px;font-size:85%;white-space:nowrap}"
    "td:last-child{white-space:normal}.n td:last-child{min-width:16em}"
    "th{background:#eee;white-space:normal}"
    "img{max-width:100%}code{font-size:90%}li{margin:.25em 0}"
    ".note{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}"
    ".warn{background:#fde2e1;border-left:4px solid #c62828;padding:.5em 1em}"
)


def _html(blocks: list[Block], source: Callable[[str], Path], title: str) -> str:
    """The page; ``source(name)`` is where a figure's PNG is now (it is inlined)."""
    body: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3", "h4"):
            body.append(f"<{kind}>{html.escape(blk[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_md(blk[1])}</p>")
        elif kind == "note":
            body.append(f'<p class="note"><b>Note.</b> {_inline_md(blk[1])}</p>')
        elif kind == "warn":
            body.append(f'<p class="warn">⚠ {_inline_md(blk[1])}</p>')
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline_md(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline_md(c)}</td>" for c in r) + "</tr>" for r in blk[2]
            )
            cls = ' class="n"' if blk[1][-1] in ("notes", "reason") else ""  # wide text column
            body.append(f'<div class="tw"><table{cls}><tr>{head}</tr>{rows}</table></div>')
        elif kind == "img":
            data = base64.b64encode(source(blk[1]).read_bytes()).decode()
            alt = html.escape(blk[2])
            body.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
