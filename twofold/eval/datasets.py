"""Labelled chest X-ray datasets: CheXpert, NIH ChestX-ray14 and a plain CSV layout.

Each loader returns the usable samples and every row it skipped with the reason (missing
file, unknown label, bad value, duplicate): rows are never dropped silently. Labels are
keyed by model output name; NaN means "not labelled for this finding" (excluded from that
finding's AUROC).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from .labels import CHEXNET_LABELS, NIH_NO_FINDING, LabelMap, normalise

FORMATS = ("chexpert", "nih", "plain")
UNCERTAIN = ("zeros", "ones", "ignore")
CHEXPERT_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
NIH_META = ("Image Index", "Finding Labels")
_BAD_LENGTH = "\x00bad length"  # key no CSV header can hold (see _read_rows)


@dataclass(frozen=True)
class Sample:
    """One image: its CSV line, a stable id (the path as written), file path, labels and the
    value of the ``--group-column`` (e.g. the site), or None without one."""

    line: int
    id: str
    path: Path
    labels: dict[str, float]
    group: str | None = None


@dataclass(frozen=True)
class BadRow:
    """A skipped row: CSV line (or 0 when found at run time), id and why."""

    line: int
    id: str
    reason: str


@dataclass
class Dataset:
    """Samples in file order, skipped rows, the model labels present, unmapped columns, the
    group column (None without one) and the SHA-256 of the CSV (part of the run identity)."""

    samples: list[Sample]
    bad_rows: list[BadRow]
    labels: list[str]
    unmapped: list[str] = field(default_factory=list)
    source: str = ""
    fmt: str = ""
    group_column: str | None = None
    sha256: str = ""

    def groups(self) -> list[str]:
        """Group values in order of first appearance (empty without a group column)."""
        return list(dict.fromkeys(s.group for s in self.samples if s.group is not None))


class DatasetError(ValueError):
    """The dataset as a whole cannot be read (missing file, missing column, ...)."""


def _read_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]], bytes]:
    """Header, ``(line, {column: value})`` per data row, and the raw bytes (for the digest).

    A row with fewer or more fields than the header maps to ``{_BAD_LENGTH: reason}`` so the caller
    reports it as a bad row instead of reading the missing cells as blank labels.
    """
    if not csv_path.is_file():
        raise DatasetError(f"dataset file {csv_path} does not exist")
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip() for h in next(reader, [])]
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(header):
                what = "fewer" if len(fields) < len(header) else "more"
                reason = f"{len(fields)} fields, {what} than the {len(header)} of the header"
                first = fields[0].strip() if fields else ""
                rows.append((reader.line_num, {_BAD_LENGTH: reason, "": first}))
                continue
            rows.append(
                (reader.line_num, {k: v.strip() for k, v in zip(header, fields, strict=True)})
            )
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"dataset file {csv_path} is not a readable CSV: {e}") from e
    if not any(header):
        raise DatasetError(f"dataset file {csv_path} is empty (no header row)")
    if not rows:
        raise DatasetError(f"dataset file {csv_path} has a header but no data rows")
    return header, rows, raw


def _need(header: list[str], cols: tuple[str, ...], csv_path: Path, fmt: str) -> None:
    missing = [c for c in cols if c not in header]
    if missing:
        raise DatasetError(
            f"{csv_path}: column(s) {', '.join(map(repr, missing))} missing for --format {fmt} "
            f"(header: {', '.join(header)})"
        )


def _chexpert_value(v: str, uncertain: str) -> float:
    if v == "":
        return 0.0  # not mentioned in the report: negative (CheXpert labeller convention)
    x = float(v)  # ValueError -> bad row
    if x == 1.0:
        return 1.0
    if x == 0.0:
        return 0.0
    if x == -1.0:
        return {"zeros": 0.0, "ones": 1.0, "ignore": math.nan}[uncertain]
    raise ValueError(v)


def _plain_value(v: str) -> float:
    if v == "":
        return math.nan
    x = float(v)
    if x not in (0.0, 1.0):
        raise ValueError(v)
    return x


def load_dataset(
    csv_path: str | Path,
    fmt: str,
    image_root: str | Path,
    label_map: LabelMap,
    uncertain: str = "zeros",
    group_column: str | None = None,
) -> Dataset:
    """Read ``csv_path`` in layout ``fmt`` with image paths relative to ``image_root``.

    ``group_column`` (any format) names a column such as the site; it is not a label, every
    row needs a value, and the analysis is then given per group as well as pooled.
    """
    csv_path, root = Path(csv_path), Path(image_root)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r} (choose from {', '.join(FORMATS)})")
    if uncertain not in UNCERTAIN:
        raise DatasetError(f"unknown --uncertain policy {uncertain!r} ({', '.join(UNCERTAIN)})")
    if not root.is_dir():
        raise DatasetError(f"image root {root} is not a directory")
    header, rows, raw = _read_rows(csv_path)
    if group_column is not None:
        _need(header, (group_column,), csv_path, f"{fmt} --group-column")
    samples: list[Sample] = []
    bad: list[BadRow] = []
    unmapped: list[str] = []
    seen: set[str] = set()

    if fmt == "chexpert":
        _need(header, ("Path",), csv_path, fmt)
        label_cols = [c for c in header if c not in CHEXPERT_META and c != group_column]
        path_col = "Path"
    elif fmt == "nih":
        _need(header, NIH_META, csv_path, fmt)
        label_cols = []
        path_col = "Image Index"
    else:
        path_col = header[0]
        label_cols = [c for c in header[1:] if c != group_column]
    cols = label_map.mapped(label_cols)
    unmapped = [c for c in label_cols if c not in cols]
    if fmt == "plain" and unmapped:
        raise DatasetError(
            f"{csv_path}: label column(s) {', '.join(map(repr, unmapped))} match no model output "
            f"(outputs: {', '.join(label_map.model_labels)}; add --label-map DATASET=MODEL)"
        )
    if fmt in ("chexpert", "plain") and not cols:
        raise DatasetError(f"{csv_path}: no label column matches a model output")

    nih_vocab = {normalise(x) for x in CHEXNET_LABELS} | {normalise(NIH_NO_FINDING)}
    for line, row in rows:
        if _BAD_LENGTH in row:  # a row of the wrong length (see _read_rows)
            bad.append(BadRow(line, row[""], row[_BAD_LENGTH]))
            continue
        rid = row.get(path_col, "")
        if not rid:
            bad.append(BadRow(line, "", f"empty {path_col!r}"))
            continue
        if rid in seen:
            bad.append(BadRow(line, rid, "duplicate image (already listed above)"))
            continue
        seen.add(rid)
        group = None
        if group_column is not None:
            group = row.get(group_column, "")
            if not group:
                bad.append(BadRow(line, rid, f"empty {group_column!r}"))
                continue
        try:
            if fmt == "nih":
                labels = _nih_labels(row["Finding Labels"], label_map, nih_vocab)
            elif fmt == "chexpert":
                labels = {m: _chexpert_value(row.get(c, ""), uncertain) for c, m in cols.items()}
            else:
                labels = {m: _plain_value(row.get(c, "")) for c, m in cols.items()}
        except KeyError as e:
            bad.append(BadRow(line, rid, f"unknown label {e.args[0]!r}"))
            continue
        except ValueError as e:
            bad.append(BadRow(line, rid, f"bad label value {str(e)!r}"))
            continue
        path = root / rid
        if not path.is_file():
            bad.append(BadRow(line, rid, f"missing file {rid} (under the image root)"))
            continue
        samples.append(Sample(line, rid, path, labels, group))
    labels_used = [m for m in label_map.model_labels if any(m in s.labels for s in samples)]
    if fmt == "nih":
        labels_used = [m for m in label_map.model_labels if label_map.index(m) is not None]
        labels_used = [m for m in labels_used if normalise(m) in nih_vocab]
    digest = hashlib.sha256(raw).hexdigest()
    return Dataset(samples, bad, labels_used, unmapped, str(csv_path), fmt, group_column, digest)


def _nih_labels(field_: str, label_map: LabelMap, vocab: set[str]) -> dict[str, float]:
    """``"Effusion|Mass"`` -> 1 for those findings, 0 for the other NIH findings the model has."""
    names = [n.strip() for n in field_.split("|") if n.strip()]
    if not names:
        raise ValueError("empty 'Finding Labels'")
    for n in names:
        if normalise(n) not in vocab and label_map.index(n) is None:
            raise KeyError(n)
    positive = {label_map.model_name(n) for n in names} - {None}
    if normalise(NIH_NO_FINDING) in map(normalise, names) and len(names) > 1:
        raise ValueError(f"'No Finding' together with findings: {field_}")
    out = {}
    for m in label_map.model_labels:
        if normalise(m) in vocab or m in positive:
            out[m] = 1.0 if m in positive else 0.0
    return out
