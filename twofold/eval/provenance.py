"""Provenance of an evaluation report: what produced it, with which options, where and when.

Two reports of the same results must differ in their provenance whenever anything that changes
their numbers differs (``--uncertain``, ``--label-map``, the margins, ...), so every such option
is listed with its value and where the value came from (the command line, the default, the
bundle). Also: the command line as typed, the versions of twofold and of the libraries that
compute the numbers, the UTC start and end of the run, the machine (CPU count, load average
at start and end) and the full digests of the dataset CSV, model and bundle.

Invariant: nothing here is an absolute path or a secret. Command-line arguments that are
absolute paths are shown relative to the working directory when they lie under it, else as
``…/NAME`` (also a short option's attached value, ``-o/abs/out``); the value of ``--token``
is replaced by ``***`` (a ``@FILE`` is shown as a path).
The provenance is not part of the run's identity (``results.jsonl`` header): a resumed run
reports the invocation that wrote the report.
"""

from __future__ import annotations

import os
import platform
import shlex
import time
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECRET_OPTIONS = ("--token",)

# (option, EvalConfig field): every option that changes the report's numbers or its scope
RESULT_OPTIONS = (
    ("--mode", "mode"),
    ("--engine", "engine"),
    ("--batch", "batch"),
    ("--format", "fmt"),
    ("--uncertain", "uncertain"),
    ("--label-map", "label_map"),
    ("--labels", "labels"),
    ("--margin", "margin"),
    ("--auroc-margin", "auroc_margin"),
    ("--group-column", "group_column"),
    ("--limit", "limit"),
    ("--resume", "resume"),
    ("--retry-failed", "retry_failed"),
    ("--allow-unchecked", "allow_unchecked"),
)


def _path(arg: str, cwd: Path) -> str:
    """``arg`` unchanged unless it is an absolute path: then relative to ``cwd``, or …/NAME."""
    if not os.path.isabs(arg):
        return arg
    p = Path(arg)
    try:
        return str(p.relative_to(cwd)) or "."
    except ValueError:
        return f"…/{p.name}" if p.name else "…"


def shown_argv(argv: list[str], cwd: Path | None = None) -> list[str]:
    """The command line as it may be published: no absolute paths, no secrets."""
    cwd = Path.cwd() if cwd is None else cwd
    out: list[str] = []
    secret_next = False
    for a in argv:
        if secret_next:
            out.append(_secret(a, cwd))
            secret_next = False
            continue
        opt, eq, val = a.partition("=")
        if a in SECRET_OPTIONS:
            out.append(a)
            secret_next = True
        elif eq and opt in SECRET_OPTIONS:
            out.append(f"{opt}={_secret(val, cwd)}")
        elif eq and opt.startswith("--"):
            out.append(f"{opt}={_value(val, cwd)}")
        elif len(a) > 2 and a[0] == "-" and a[1] != "-":  # a short option and its value: -oDIR
            out.append(a[:2] + _value(a[2:], cwd))
        else:
            out.append(_value(a, cwd))
    return out


def _value(a: str, cwd: Path) -> str:
    if a.startswith("@"):  # --connect @FILE, --token @FILE
        return "@" + _path(a[1:], cwd)
    return _path(a, cwd)


def _secret(a: str, cwd: Path) -> str:
    return "@" + _path(a[1:], cwd) if a.startswith("@") else "***"


def _versions() -> dict[str, str]:
    from .. import __version__

    out = {"twofold": __version__, "python": platform.python_version()}
    for mod in ("numpy", "scipy", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _options(cfg: Any, batch: int) -> list[dict[str, Any]]:  # noqa: ANN401 - an EvalConfig
    """Each result-changing option: value and source (command line, default, bundle, given)."""
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(cfg)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    sources = getattr(cfg, "option_sources", None) or {}
    out = []
    for opt, name in RESULT_OPTIONS:
        value = getattr(cfg, name)
        source = sources.get(name) or ("default" if value == defaults.get(name) else "given")
        if name == "batch" and value is None:
            value, source = batch, "the bundle's batch"
        if name == "label_map":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or None
        elif name == "labels" and value is not None:
            value = ",".join(value)
        out.append({"option": opt, "value": value, "source": source})
    return out


def start(cfg: Any, batch: int, identity: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    """Provenance as the run starts (before any image runs); :func:`finish` completes it."""
    argv = getattr(cfg, "command", None)
    return {
        "command": shlex.join(shown_argv(list(argv))) if argv else None,  # pastes back
        "options": _options(cfg, batch),
        "versions": _versions(),
        "started_utc": _now(),
        "machine": {"cpus": os.cpu_count(), "load_average_start": _load()},
        "digests": {
            "dataset_csv_sha256": identity["dataset_sha256"],
            "model_sha256": identity["model_sha256"],
            "bundle_sha256": identity["bundle_sha256"],
        },
        "_t0": time.monotonic(),
    }


def finish(prov: dict[str, Any]) -> dict[str, Any]:
    """The provenance with the end of the run (UTC time, elapsed, load average) added."""
    out = {k: v for k, v in prov.items() if k != "_t0"}
    out["finished_utc"] = _now()
    out["elapsed_s"] = round(time.monotonic() - prov["_t0"], 3)
    out["machine"] = {**prov["machine"], "load_average_end": _load()}
    return out


def _shown(v: Any) -> str:  # noqa: ANN401
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def blocks(prov: dict[str, Any] | None) -> list[tuple]:
    """Report blocks of the provenance section (markdown/HTML renderers of report.py)."""
    if not prov:
        return []
    b: list[tuple] = [("h2", "Provenance")]
    cmd = prov.get("command")
    b.append(
        (
            "p",
            f"Command: `{cmd}`" if cmd else "Command: none (run_eval called from Python)",
        )
    )
    rows = [[o["option"], _shown(o["value"]), o["source"]] for o in prov["options"]]
    b.append(("table", ["option (changes the results)", "value", "source"], rows))
    v, m, d = prov["versions"], prov["machine"], prov["digests"]

    def load(x: list[float] | None) -> str:
        return "unknown" if x is None else " / ".join(f"{y:.2f}" for y in x)

    b.append(
        (
            "ul",
            [
                "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
                f"Run (UTC): {prov['started_utc']} to {prov.get('finished_utc', '–')}"
                + (f" ({prov['elapsed_s']:.1f} s)" if "elapsed_s" in prov else ""),
                f"Machine: {m['cpus']} CPUs; load average (1 / 5 / 15 min) "
                f"{load(m['load_average_start'])} at the start, "
                f"{load(m.get('load_average_end'))} at the end",
                f"Dataset CSV SHA-256: `{d['dataset_csv_sha256']}`",
                f"Model SHA-256: `{d['model_sha256']}`; bundle digest: `{d['bundle_sha256']}`",
            ],
        )
    )
    return b
