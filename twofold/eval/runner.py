"""``twofold eval``: run a labelled dataset through plaintext and secure inference, then report.

Every finished image is appended to ``results.jsonl`` before the next is taken, so a killed
run resumes (``resume=True``) without losing or recomputing anything. Each record carries the
SHA-256 of its image file and the header the dataset CSV's, so a resume against other data is
refused. Images that cannot be used (unreadable, non-finite plaintext output) are recorded as
``error``; images whose secure run fails (overflow, input out of the compiled range, non-finite
output) as ``secure_error`` — a result, reported first. Both are kept on resume and retried only
with ``retry_failed``. Statistics and the report are computed from the results file alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import provenance, scratch
from .batching import batch_size, run_batched
from .datasets import DatasetError, Sample, load_dataset
from .dispatch import DispatchError  # execution side: execute.py, dispatch.py, ray_engine.py
from .engines import EngineError, Inference, Plaintext, SecureFailure, Simulate, file_digest
from .execute import Execution
from .labels import CHEXNET_LABELS, LabelMap
from .projection import describe as describe_estimate
from .results import FILENAME, ResultsError, ResultsLog, failed

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
    auroc_margin: float | None = None
    group_column: str | None = None
    retry_failed: bool = False
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
    batch: int | None = None  # images per secure run: the bundle's batch (issue 17, batching.py)
    allow_unchecked: bool = False  # evaluate a program that cannot flag an overflow
    # --- provenance (provenance.py): the command line, where each option's value came from ---
    command: list[str] | None = None  # argv as typed (shown without absolute paths, secrets)
    option_sources: dict[str, str] = field(default_factory=dict)  # field -> "command line", ...


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


def _out_of_range(e: BaseException) -> bool:
    """The range check's InputOutOfRange (DESIGN decision 2), wherever it is defined."""
    return any(c.__name__ == "InputOutOfRange" for c in type(e).__mro__)


def _check_model_matches(plain: Plaintext, secure: Any, n_out: int, model: Path) -> None:
    """--model must be the network the bundle was compiled from: same input shape and size."""
    want = [int(d) for d in secure.meta.get("shape") or []]
    got = plain.input_shape
    fixed = [d if isinstance(d, int) else None for d in got]
    if want and want[0] > 1 and fixed:  # a batch-N bundle: the model runs one image at a time
        fixed[0] = None
    same = len(got) == len(want) and all(
        g is None or g == w for g, w in zip(fixed, want, strict=False)
    )
    if want and not same:
        shown = [d if isinstance(d, int) else "?" for d in got]
        raise EvalError(
            f"--model {model.name} takes input {shown}, the bundle {want}: "
            "they are not the same network"
        )
    for o in plain.sess.get_outputs()[:1]:
        dims = o.shape
        if all(isinstance(d, int) for d in dims) and int(np.prod(dims)) != n_out:
            raise EvalError(
                f"--model {model.name} gives {int(np.prod(dims))} outputs, the bundle "
                f"{n_out}: they are not the same network"
            )


def run_eval(cfg: EvalConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the evaluation in ``cfg.out``; returns the summary it wrote."""
    say = progress or (lambda _m: None)
    if cfg.mode not in MODES:
        raise EvalError(f"unknown --mode {cfg.mode!r} (choose from {', '.join(MODES)})")
    if cfg.jobs is not None and cfg.jobs < 1:
        raise EvalError(f"--jobs must be at least 1, got {cfg.jobs}")
    if not cfg.margin > 0:
        raise EvalError(f"--margin must be positive, got {cfg.margin}")
    if cfg.auroc_margin is not None and not 0 < cfg.auroc_margin < 1:
        raise EvalError(f"--auroc-margin must be in (0, 1), got {cfg.auroc_margin}")
    try:
        plain = Plaintext(cfg.model)
        # the client bundle suffices for 2PC; with the server's too, check 2PC against simulate
        sim = (
            Simulate(cfg.bundle) if cfg.mode == "simulate" or _has_server_part(cfg.bundle) else None
        )
        ex = Execution(cfg, plain, sim)  # --engine, --connect endpoints (execute.py)
        secure = ex.secure
        out_shape = secure.graph[secure.output].type.shape
        n_out = int(np.prod(out_shape)) // int((secure.meta.get("shape") or [1])[0])
        batch = batch_size(secure, cfg.batch)  # issue 17: --batch N, see batching.py
        _check_model_matches(plain, secure, n_out, cfg.model)
        checked = _check_overflow_checked(cfg, secure)
        lmap = LabelMap(_model_labels(cfg, n_out, secure.labels), cfg.label_map)
        ds = load_dataset(cfg.dataset, cfg.fmt, cfg.images, lmap, cfg.uncertain, cfg.group_column)
    except (EngineError, DatasetError) as e:
        raise EvalError(str(e)) from None
    except ValueError as e:
        raise EvalError(str(e)) from None
    cfg.out.mkdir(parents=True, exist_ok=True)
    gone = scratch.sweep(cfg.out)  # a killed run's temporary files, by their names only
    if gone:
        say(f"removed {len(gone)} temporary file(s) a killed run left in {cfg.out}")
    identity = {
        "model_sha256": file_digest(cfg.model),
        "bundle_sha256": secure.digest(),
        "mode": cfg.mode,
        "input": secure.meta,
        "labels": list(lmap.model_labels),
        "dataset_sha256": ds.sha256,
    }
    prov = provenance.start(cfg, batch, identity)
    try:
        log = ResultsLog(
            cfg.out / FILENAME, identity, cfg.resume, failed if cfg.retry_failed else None
        )
    except ResultsError as e:
        raise EvalError(str(e)) from None
    with log:
        if log.torn:
            say("resume: dropped a partial last record (the run was killed mid-write)")
        _check_digests(ds.samples, log)
        todo = [s for s in ds.samples if s.id not in log.done]
        if cfg.limit is not None:
            todo = todo[: max(0, cfg.limit)]
        done = sum(1 for s in ds.samples if s.id in log.done)
        kept = sum(1 for s in ds.samples if s.id in log.done and failed(log.done[s.id]))
        try:
            engine = (
                f"batches of {batch}" if todo and batch > 1 else ex.start() if todo else
                "nothing to run"
            )  # fmt: skip
            say(
                f"{len(ds.samples)} images, {len(ds.bad_rows)} bad rows, {done} done, "
                f"{len(todo)} to run ({cfg.mode}, {engine})"
                + (f"; {kept} failed image(s) kept (--retry-failed reruns them)" if kept else "")
                + (f"; retrying {log.dropped} failed image(s)" if log.dropped else "")
            )
            if todo and batch > 1:
                run_batched(todo, batch, plain, secure, sim, log, say)
            elif todo:
                say(describe_estimate(ex.estimate(len(todo))))
                ex.run(todo, log, say)
        except (EngineError, DispatchError) as e:
            raise EvalError(f"{e} (finished images are kept; rerun with --resume)") from None
    from .report import write_report

    records = _records(cfg.out / FILENAME)
    proj = ex.projection(list(records.values()), len(ds.samples))
    return write_report(
        replace(cfg, jobs=ex.cap),
        ds,
        lmap,
        records,
        identity,
        projection=proj,
        provenance=provenance.finish(prov),
        overflow_checked=checked,
        server_simulation=sim is not None,
    )


def _check_overflow_checked(cfg: EvalConfig, secure: Any) -> bool:  # noqa: ANN401 - a program
    """Whether the program flags every overflow (the public IR's ``overflow_checked``); one
    that cannot is refused unless ``cfg.allow_unchecked``, as ``run client`` refuses it: its
    wrong outputs would be counted as valid secure results with nothing to tell them apart."""
    from ..ir.public import overflow_checked, unchecked_reason

    checked = overflow_checked(secure.graph)
    if not checked and not cfg.allow_unchecked:
        why = unchecked_reason(checked)
        if checked is False:
            why += (
                ", so an image outside its calibrated ranges would give a wrong output counted "
                "as a valid secure result"
            )
        raise EvalError(
            f"{cfg.bundle}: the program {why}; refused before this run evaluates any image. Pass "
            "--allow-unchecked to evaluate it anyway (the report then says so first)"
        )
    return bool(checked)


def _check_digests(samples: list[Sample], log: ResultsLog) -> None:
    """Refuse to resume when an image already evaluated now has other content."""
    for s in samples:
        rec = log.done.get(s.id)
        if rec and "sha256" in rec and file_digest(s.path) != rec["sha256"]:
            hint = " (or --retry-failed to run this failed image again)" if failed(rec) else ""
            raise EvalError(
                f"{log.path}: image {s.id} has other content than when it was evaluated "
                f"(SHA-256 differs); --resume needs the same images: use another -o{hint}"
            )


def _nonfinite(values: np.ndarray, names: tuple[str, ...]) -> str | None:
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
        return None
    j = int(bad[0])
    name = names[j] if j < len(names) else f"output {j}"
    return f"output for {name} is {values[j]}"


def _has_server_part(bundle: Path) -> bool:
    from ..ir.bundle import SERVER, BundleError, resolve

    try:
        resolve(bundle, SERVER, "eval")
    except BundleError:
        return False
    return True


def is_secure_failure(e: BaseException) -> bool:
    """A secure run's error that is a result (no trustworthy output: an overflow, a flagged
    output, an input out of range), not a failed session: the engine classifies the latter."""
    return isinstance(e, ArithmeticError) or _out_of_range(e)


def failure_kind(e: BaseException) -> str:
    """The ``failure`` kind of a secure run that gave no trustworthy output."""
    if _out_of_range(e):
        return "input out of range"
    if str(e).startswith("secure output for"):
        return "non-finite output"
    if "overflow" in str(e).lower():
        return "overflow"
    return "secure run failed"


@dataclass(frozen=True)
class Prepared:
    """An image that passed the first stage: its record so far (id, line, SHA-256), the
    input the program takes and its finite plaintext result."""

    base: dict[str, Any]
    x: np.ndarray
    plain: Inference
    names: tuple[str, ...]


def prepare_image(
    s: Sample, plain: Plaintext, meta: dict[str, Any], labels: list[str]
) -> Prepared | dict[str, Any]:
    """First stage of an image's record, shared by every path (per image, batches): digest,
    load with the range check of ``meta`` (one image's shape), plaintext and its finiteness.

    Invariant: an image stops here with its final record exactly when its file cannot be
    read or decoded (``error``: unreadable image), its input is out of the compiled range
    (``secure_error``, failure "input out of range": a result, refused before any secure
    run), or its plaintext output is not finite (``error``); otherwise :class:`Prepared`.
    """
    base: dict[str, Any] = {"id": s.id, "line": s.line}
    try:
        base["sha256"] = file_digest(s.path)
        x = _load_image(s, meta)
    except Exception as e:  # any decoder failure is a bad row, reported with the reason
        msg = str(e).replace(str(s.path), s.id)  # no absolute paths in a report
        if _out_of_range(e):
            return {**base, "failure": "input out of range", "secure_error": msg}
        return {**base, "error": f"unreadable image: {msg}"}
    p = plain(x)
    names = tuple(labels) or (CHEXNET_LABELS if p.values.size == 14 else ())
    bad = _nonfinite(p.values, names)
    if bad:
        return {**base, "error": f"plaintext {bad}"}
    return Prepared(base, x, p, names)


def secure_record(s: Sample, prep: Prepared, run: Callable[[], Inference]) -> dict[str, Any]:
    """Second stage, shared by every path: the secure result ``run()`` gives, classified.

    Invariant: the record has ``secure`` (finite, the plaintext's shape) and the cost keys
    exactly when ``run`` returned a finite output; an ArithmeticError (overflow, a flagged
    output), an InputOutOfRange or a non-finite value makes it a ``secure_error`` record
    with its :func:`failure_kind`; any other error (a failed session) propagates, for the
    engine to classify.
    """
    p = prep.plain
    try:
        r = run()
        bad = _nonfinite(r.values, prep.names)
        if bad:
            raise SecureFailure(f"secure {bad}")
    except (ArithmeticError, ValueError) as e:  # overflow, flagged output, out of range
        if not is_secure_failure(e):
            raise  # EngineError (a failed session) and other faults: the engine decides
        msg = str(e).replace(str(s.path), s.id)
        return {
            **prep.base,
            "plain": p.values.tolist(),
            "failure": failure_kind(e),
            "secure_error": msg,
        }
    if p.values.shape != r.values.shape:
        raise EvalError(f"plaintext gives {p.values.size} outputs, secure {r.values.size}")
    return {
        **prep.base,
        "plain": p.values.tolist(),
        "secure": r.values.tolist(),
        "time_plain_s": p.time_s,
        "time_secure_s": r.time_s,
        **r.cost,
    }


def evaluate_image(
    s: Sample, plain: Plaintext, secure: Any, sim: Simulate | None, measure: bool = False
) -> dict[str, Any]:
    """One image through plaintext and secure inference; its results.jsonl record.

    Pure (no log, no output), so any engine may run it: a thread of this process or a Ray
    task on another machine. The record carries the SHA-256 of the image file. An image that
    cannot be used (unreadable, non-finite plaintext output) gives an ``error`` record; a
    secure run without a trustworthy output (fixed-point overflow, input out of the compiled
    range, an output flagged invalid or not finite) a ``secure_error`` record with its
    ``failure`` kind; a failed 2PC session raises (the engine classifies it, see
    ``dispatch``). ``sim`` is None when only the client bundle is at hand (no oracle). The
    classification is :func:`prepare_image` then :func:`secure_record`, which the batch path
    (batching.py) uses too.
    """
    t0 = time.perf_counter()
    prep = prepare_image(s, plain, secure.meta, secure.labels)
    if not isinstance(prep, Prepared):
        return prep

    def run() -> Inference:
        if secure is sim:
            return sim(prep.x, measure_memory=measure)
        r = secure(prep.x, secure.input_name)
        if sim is not None:
            # The oracle: 2PC must equal the cleartext fixed-point program bit for bit.
            r.cost["simulate"] = sim(prep.x, measure_memory=False).values.tolist()
        return r

    rec = secure_record(s, prep, run)
    if "secure" in rec:
        rec["wall_s"] = time.perf_counter() - t0
    return rec


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
