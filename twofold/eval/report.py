"""Write ``summary.json``, ``report.md``, ``report.html`` (self-contained, figures inlined as
base64) and the PNG figures of an evaluation. Markdown and HTML render the same blocks.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import figures
from .analysis import analyse
from .datasets import Dataset
from .labels import LabelMap

Block = tuple  # ("h1"|"h2"|"p"|"note", text) | ("table", header, rows) | ("img", file, alt)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for reading
    os.replace(tmp, path)


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
) -> dict[str, Any]:
    """Analyse and write every artefact into ``cfg.out``; returns the summary dict."""
    out = Path(cfg.out)
    summary = analyse(ds, lmap, records, cfg.margin, cfg.jobs)
    summary = {
        "title": cfg.title,
        "note": cfg.note,
        "mode": cfg.mode,
        "model": str(cfg.model),
        "bundle": str(cfg.bundle),
        "identity": identity,
        **summary,
    }
    summary["figures"] = _figures(out, ds, lmap, records, summary)
    summary["projection"] = projection  # execution side (eval/projection.py)
    _atomic_write(out / "summary.json", json.dumps(summary, indent=1).encode())
    blocks = _blocks(summary)
    _atomic_write(out / "report.md", _markdown(blocks).encode())
    _atomic_write(out / "report.html", _html(blocks, out, cfg.title).encode())
    return summary


def _figures(
    out: Path, ds: Dataset, lmap: LabelMap, records: dict, summary: dict
) -> dict[str, str]:
    done = [s for s in ds.samples if "plain" in records.get(s.id, {})]
    figs: dict[str, str] = {}
    if not done:
        return figs
    plain = np.array([records[s.id]["plain"] for s in done], np.float64).reshape(len(done), -1)
    secure = np.array([records[s.id]["secure"] for s in done], np.float64).reshape(plain.shape)
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
        figs["roc"] = figures.roc_figure(out / "roc.png", curves, name).name
    ba = summary["overall"].get("bland_altman")
    if ba:
        figs["bland_altman"] = figures.bland_altman_figure(
            out / "bland_altman.png",
            secure.ravel(),
            plain.ravel(),
            ba["bias"],
            ba["loa_low"],
            ba["loa_high"],
        ).name
        figs["differences"] = figures.differences_figure(
            out / "differences.png", (secure - plain).ravel()
        ).name
    return figs


def _blocks(s: dict[str, Any]) -> list[Block]:
    d, o, c = s["dataset"], s["overall"], s["cost"]
    b: list[Block] = [("h1", s["title"])]
    if s["note"]:
        b.append(("note", s["note"]))
    b.append(
        (
            "p",
            f"Mode: **{s['mode']}**. Model `{Path(s['model']).name}`, bundle "
            f"`{Path(s['bundle']).name}`. Dataset `{Path(d['path']).name}` ({d['format']}): "
            f"{d['rows']} rows, {d['images']} usable images, {d['evaluated']} evaluated, "
            f"{len(d['bad_rows'])} bad rows skipped"
            + (f", **{d['pending']} not yet run (incomplete run)**" if d["pending"] else "")
            + ".",
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

    b.append(("h2", "Diagnostic performance: AUROC secure vs plaintext"))
    b.append(
        (
            "p",
            "AUROC with 95% DeLong confidence intervals; p is the paired DeLong test of "
            "H0: AUROC(secure) = AUROC(plaintext) on the same images.",
        )
    )
    rows = []
    for r in s["labels"]:
        if "auc_plain" in r:
            ap, as_ = r["auc_plain"], r["auc_secure"]
            rows.append(
                [
                    r["label"],
                    f"{r['n']} ({r['n_pos']})",
                    f"{ap['auc']:.4f} [{ap['low']:.3f}, {ap['high']:.3f}]",
                    f"{as_['auc']:.4f} [{as_['low']:.3f}, {as_['high']:.3f}]",
                    "0" if r["delong"]["diff"] == 0 else f"{r['delong']['diff']:+.2e}",
                    _p(r["delong"]["p_value"]),
                ]
            )
        else:
            rows.append([r["label"], f"{r['n']} ({r['n_pos']})", "–", "–", "–", r["auc_note"]])
    b.append(
        (
            "table",
            [
                "finding",
                "n (pos.)",
                "AUROC plaintext [95% CI]",
                "AUROC secure [95% CI]",
                "Δ AUROC",
                "DeLong p",
            ],
            rows,
        )
    )
    if "roc" in s["figures"]:
        b.append(("img", s["figures"]["roc"], "ROC curves per finding"))

    b.append(("h2", "Agreement of the outputs"))
    if o.get("tost"):
        t, ks, ba = o["tost"], o["ks"], o["bland_altman"]
        verdict = "equivalent" if t["equivalent"] else "equivalence NOT shown"
        b.append(
            (
                "p",
                f"All {o['n']} output pairs (images × findings): mean |secure − plaintext| = "
                f"{o['mean_abs_diff']:.3e}, max = {o['max_abs_diff']:.3e}. "
                f"TOST with margin ±{s['margin']}: {_peq(t['p_value'])} → **{verdict}** "
                f"(90% CI of the mean difference [{t['ci90_low']:.2e}, {t['ci90_high']:.2e}]). "
                f"Two-sample Kolmogorov–Smirnov: D = {ks['statistic']:.4f}, "
                f"{_peq(ks['p_value'])}. Bland–Altman: bias {ba['bias']:.2e}, 95% limits of "
                f"agreement [{ba['loa_low']:.2e}, {ba['loa_high']:.2e}].",
            )
        )
    if "twopc_vs_simulate" in o:
        v = o["twopc_vs_simulate"]
        b.append(
            (
                "p",
                f"2PC vs the cleartext fixed-point simulation of the same bundle: "
                f"**{v['bit_exact_images']} of {v['images']} images bit-identical** "
                f"(max |Δ| {v['max_abs_diff']:.1e}); the differences above are fixed-point "
                "quantisation, not the protocol.",
            )
        )
    rows = []
    for r in s["labels"]:
        if "tost" not in r:
            continue
        rows.append(
            [
                r["label"],
                f"{r['mean_abs_diff']:.2e}",
                f"{r['max_abs_diff']:.2e}",
                _p(r["tost"]["p_value"]),
                "yes" if r["tost"]["equivalent"] else "no",
                f"{r['ks']['statistic']:.3f}",
                _p(r["ks"]["p_value"]),
                f"[{r['bland_altman']['loa_low']:.1e}, {r['bland_altman']['loa_high']:.1e}]",
            ]
        )
    if rows:
        b.append(
            (
                "table",
                [
                    "finding",
                    "mean |Δ|",
                    "max |Δ|",
                    "TOST p",
                    "equivalent",
                    "KS D",
                    "KS p",
                    "Bland–Altman 95% LoA",
                ],
                rows,
            )
        )
    for key, alt in (("bland_altman", "Bland–Altman plot"), ("differences", "Differences")):
        if key in s["figures"]:
            b.append(("img", s["figures"][key], alt))

    b.append(("h2", "Cost"))
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

    b.append(("h2", "Skipped rows"))
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
    return b


def _md_cell(x: str) -> str:
    return x.replace("|", "\\|")


def _markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            out.append(f"# {blk[1]}")
        elif kind == "h2":
            out.append(f"## {blk[1]}")
        elif kind == "p":
            out.append(blk[1])
        elif kind == "note":
            out.append(f"> **Note.** {blk[1]}")
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
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
    "font-size:90%}th{background:#eee}img{max-width:100%}"
    ".note{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}"
)


def _html(blocks: list[Block], out: Path, title: str) -> str:
    body: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(blk[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_md(blk[1])}</p>")
        elif kind == "note":
            body.append(f'<p class="note"><b>Note.</b> {_inline_md(blk[1])}</p>')
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in blk[2]
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "img":
            data = base64.b64encode((out / blk[1]).read_bytes()).decode()
            alt = html.escape(blk[2])
            body.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
