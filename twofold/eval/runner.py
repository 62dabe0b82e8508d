"""``twofold eval``: run a labelled dataset through plaintext and secure inference, then report.

Every finished image is appended to ``results.jsonl`` before the next is taken, so a killed
run resumes (``resume=True``) without losing or recomputing anything. Images that cannot be
read are recorded as errors and reported with the dataset's bad rows; they are retried on
resume. Statistics and the report are computed from the results file alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batching import batch_size, run_batched
from .datasets import DatasetError, Sample, load_dataset
from .engines import EngineError, Plaintext, Simulate, TwoParty, file_digest
from .labels import CHEXNET_LABELS, LabelMap
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
    connect: str | None = None
    connect_options: dict[str, Any] = field(default_factory=dict)  # run_client's TLS/token kwargs
    jobs: int = 1
    resume: bool = False
    margin: float = 0.01
    uncertain: str = "zeros"
    label_map: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    limit: int | None = None
    title: str = "twofold eval"
    note: str = ""
    batch: int | None = None  # images per secure run (the bundle's batch; issue 17)


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
    if cfg.jobs < 1:
        raise EvalError(f"--jobs must be at least 1, got {cfg.jobs}")
    if not cfg.margin > 0:
        raise EvalError(f"--margin must be positive, got {cfg.margin}")
    try:
        plain = Plaintext(cfg.model)
        if cfg.mode == "simulate":
            secure = sim = Simulate(cfg.bundle)
        else:  # the client bundle suffices; with the server's too, check 2PC against simulate
            secure = TwoParty(cfg.bundle, cfg.connect, cfg.connect_options)
            sim = Simulate(cfg.bundle) if _has_server_part(cfg.bundle) else None
        out_shape = secure.graph[secure.output].type.shape
        n_out = int(np.prod(out_shape)) // int((secure.meta.get("shape") or [1])[0])
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
        say(
            f"{len(ds.samples)} images, {len(ds.bad_rows)} bad rows, {done} done, "
            f"{len(todo)} to run ({cfg.mode}, {cfg.jobs} job(s))"
        )
        try:
            batch = batch_size(secure, cfg.batch)  # issue 17: --batch N
            if batch > 1:
                run_batched(todo, batch, _load_image, plain, secure, sim, log, say)
            else:
                _run(todo, plain, secure, sim, log, cfg, say)
        except ValueError as e:
            raise EvalError(str(e)) from None
        except EngineError as e:
            raise EvalError(f"{e} (finished images are kept; rerun with --resume)") from None
    from .report import write_report

    return write_report(cfg, ds, lmap, _records(cfg.out / FILENAME), identity)


def _has_server_part(bundle: Path) -> bool:
    from ..ir.bundle import SERVER, BundleError, resolve

    try:
        resolve(bundle, SERVER, "eval")
    except BundleError:
        return False
    return True


def _run(
    todo: list[Sample],
    plain: Plaintext,
    secure: Any,
    sim: Simulate | None,
    log: ResultsLog,
    cfg: EvalConfig,
    say: Callable[[str], None],
) -> None:
    count = [0]
    lock = threading.Lock()
    measure = cfg.jobs == 1

    def one(s: Sample) -> None:
        t0 = time.perf_counter()
        try:
            x = _load_image(s, secure.meta)
        except Exception as e:  # any decoder failure is a bad row, reported with the reason
            log.append({"id": s.id, "line": s.line, "error": f"unreadable image: {e}"})
            say(f"skipped {s.id}: unreadable image: {e}")
            return
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
            log.append({"id": s.id, "line": s.line, "error": f"secure run failed: {e}"})
            say(f"skipped {s.id}: secure run failed: {e}")
            return
        if p.values.shape != r.values.shape:
            raise EvalError(f"plaintext gives {p.values.size} outputs, secure {r.values.size}")
        rec = {
            "id": s.id,
            "line": s.line,
            "plain": p.values.tolist(),
            "secure": r.values.tolist(),
            "time_plain_s": p.time_s,
            "time_secure_s": r.time_s,
            "wall_s": time.perf_counter() - t0,
            **r.cost,
        }
        log.append(rec)
        with lock:
            count[0] += 1
            say(
                f"[{count[0]}/{len(todo)}] {s.id}: max |secure - plain| = "
                f"{float(np.max(np.abs(r.values - p.values))):.2e}"
            )

    if cfg.jobs == 1:
        for s in todo:
            one(s)
    else:
        with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
            for f in [pool.submit(one, s) for s in todo]:
                f.result()


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
