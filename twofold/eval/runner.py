"""``twofold eval``: run a labelled dataset through plaintext and secure inference, then report.

Every finished image is appended to ``results.jsonl`` before the next is taken, so a killed
run resumes (``resume=True``) without losing or recomputing anything. Images that cannot be
read are recorded as errors and reported with the dataset's bad rows; they are retried on
resume. Statistics and the report are computed from the results file alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DatasetError, Sample, load_dataset
from .dispatch import DispatchError  # execution side: execute.py, dispatch.py, ray_engine.py
from .engines import EngineError, Plaintext, Simulate, file_digest
from .execute import Execution
from .labels import CHEXNET_LABELS, LabelMap
from .projection import describe as describe_estimate
from .results import FILENAME, ResultsError, ResultsLog

MODES = ("simulate", "2pc")


class EvalError(ValueError):
    """A user-facing failure of ``twofold eval`` (one line, names the thing at fault)."""


@dataclass
class EvalConfig:
    """Everything one evaluation needs (mirrors the ``twofold eval`` options)."""

    bundle: Path
    model: Path
    dataset: Path
    fmt: str
    images: Path
    out: Path
    mode: str = "simulate"
    connect: str | list[str] | None = None
    connect_options: dict[str, Any] = field(default_factory=dict)  # run_client's TLS/token kwargs
    jobs: int | None = None  # None: 1 (local), the Ray cluster's CPUs (ray)
    resume: bool = False
    margin: float = 0.01
    uncertain: str = "zeros"
    label_map: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    limit: int | None = None
    title: str = "twofold eval"
    note: str = ""
    # --- execution (engine, endpoints, retries; see execute.py) ---
    engine: str = "local"
    ray_address: str | None = None
    per_endpoint: int = 2
    retries: int = 3


def _model_labels(cfg: EvalConfig, n_out: int, bundle_labels: list[str]) -> list[str]:
    labels = cfg.labels or bundle_labels or (list(CHEXNET_LABELS) if n_out == 14 else None)
    if labels is None:
        raise EvalError(
            f"the model has {n_out} outputs and no label names; pass --labels A,B,... "
            "(the CheXNet defaults need 14 outputs)"
        )
    if len(labels) != n_out:
        raise EvalError(f"{len(labels)} label names given for a model with {n_out} outputs")
    return list(labels)


def _load_image(sample: Sample, meta: dict[str, Any]) -> np.ndarray:
    from ..toolchain import load_input

    return load_input(sample.path, meta)


def run_eval(cfg: EvalConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the evaluation in ``cfg.out``; returns the summary it wrote."""
    say = progress or (lambda _m: None)
    if cfg.mode not in MODES:
        raise EvalError(f"unknown --mode {cfg.mode!r} (choose from {', '.join(MODES)})")
    if cfg.jobs is not None and cfg.jobs < 1:
        raise EvalError(f"--jobs must be at least 1, got {cfg.jobs}")
    if not cfg.margin > 0:
        raise EvalError(f"--margin must be positive, got {cfg.margin}")
    try:
        plain = Plaintext(cfg.model)
        # the client bundle suffices for 2PC; with the server's too, check 2PC against simulate
        sim = (
            Simulate(cfg.bundle) if cfg.mode == "simulate" or _has_server_part(cfg.bundle) else None
        )
        ex = Execution(cfg, plain, sim)  # --engine, --connect endpoints (execute.py)
        secure = ex.secure
        out_shape = secure.graph[secure.output].type.shape
        n_out = int(np.prod(out_shape))
        lmap = LabelMap(_model_labels(cfg, n_out, secure.labels), cfg.label_map)
        ds = load_dataset(cfg.dataset, cfg.fmt, cfg.images, lmap, cfg.uncertain)
    except (EngineError, DatasetError) as e:
        raise EvalError(str(e)) from None
    except ValueError as e:
        raise EvalError(str(e)) from None
    cfg.out.mkdir(parents=True, exist_ok=True)
    identity = {
        "model_sha256": file_digest(cfg.model),
        "bundle_sha256": secure.digest(),
        "mode": cfg.mode,
        "input": secure.meta,
        "labels": list(lmap.model_labels),
    }
    try:
        log = ResultsLog(cfg.out / FILENAME, identity, cfg.resume)
    except ResultsError as e:
        raise EvalError(str(e)) from None
    with log:
        if log.torn:
            say("resume: dropped a partial last record (the run was killed mid-write)")
        todo = [s for s in ds.samples if "error" in log.done.get(s.id, {"error": 1})]
        if cfg.limit is not None:
            todo = todo[: max(0, cfg.limit)]
        done = sum(1 for s in ds.samples if "plain" in log.done.get(s.id, {}))
        try:
            engine = ex.start() if todo else "nothing to run"
            say(
                f"{len(ds.samples)} images, {len(ds.bad_rows)} bad rows, {done} done, "
                f"{len(todo)} to run ({cfg.mode}, {engine})"
            )
            if todo:
                say(describe_estimate(ex.estimate(len(todo))))
                ex.run(todo, log, say)
        except (EngineError, DispatchError) as e:
            raise EvalError(f"{e} (finished images are kept; rerun with --resume)") from None
    from .report import write_report

    records = _records(cfg.out / FILENAME)
    proj = ex.projection(list(records.values()), len(ds.samples))
    return write_report(replace(cfg, jobs=ex.cap), ds, lmap, records, identity, projection=proj)


def _has_server_part(bundle: Path) -> bool:
    from ..ir.bundle import SERVER, BundleError, resolve

    try:
        resolve(bundle, SERVER, "eval")
    except BundleError:
        return False
    return True


def evaluate_image(
    s: Sample, plain: Plaintext, secure: Any, sim: Simulate | None, measure: bool = False
) -> dict[str, Any]:
    """One image through plaintext and secure inference; its results.jsonl record.

    Pure (no log, no output), so any engine may run it: a thread of this process or a Ray
    task on another machine. An unreadable image or a fixed-point overflow gives an ``error``
    record; a failed 2PC session raises (the engine classifies it, see ``dispatch``).
    ``sim`` is None when only the client bundle is at hand (no bit-exactness oracle).
    """
    t0 = time.perf_counter()
    try:
        x = _load_image(s, secure.meta)
    except Exception as e:  # any decoder failure is a bad row, reported with the reason
        return {"id": s.id, "line": s.line, "error": f"unreadable image: {e}"}
    p = plain(x)
    try:
        if secure is sim:
            r = sim(x, measure_memory=measure)
        else:
            r = secure(x, secure.input_name)
            if sim is not None:
                # The oracle: 2PC must equal the cleartext fixed-point program bit for bit.
                r.cost["simulate"] = sim(x, measure_memory=False).values.tolist()
    except ArithmeticError as e:  # fixed-point overflow on this image: report it
        return {"id": s.id, "line": s.line, "error": f"secure run failed: {e}"}
    if p.values.shape != r.values.shape:
        raise EvalError(f"plaintext gives {p.values.size} outputs, secure {r.values.size}")
    return {
        "id": s.id,
        "line": s.line,
        "plain": p.values.tolist(),
        "secure": r.values.tolist(),
        "time_plain_s": p.time_s,
        "time_secure_s": r.time_s,
        "wall_s": time.perf_counter() - t0,
        **r.cost,
    }


def _records(path: Path) -> dict[str, dict[str, Any]]:
    """Latest record per id from a results file (header skipped)."""
    import json

    out: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        next(f, None)
        for line in f:
            if line.strip():
                rec = json.loads(line)
                out[rec["id"]] = rec
    return out
