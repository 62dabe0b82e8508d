"""Append-only per-image results (JSON lines) so an interrupted evaluation resumes.

Line 1 is a header with the run's identity (model and bundle digests, mode, dataset); every
later line is one finished image, flushed and fsynced as it completes. On resume a torn last
line (the process died mid-write) is cut off, the header must match, and finished ids are
skipped: nothing that was written is lost or recomputed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

FILENAME = "results.jsonl"


class ResultsError(ValueError):
    """The results file cannot be used as asked (exists without --resume, other run, ...)."""


class ResultsLog:
    """Thread-safe JSON-lines writer with resume; ``done`` maps id -> its record."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = False
        self._lock = threading.Lock()
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise ResultsError(
                    f"{self.path} exists: pass --resume to continue that run, "
                    "or choose another output directory"
                )
            self._load(identity)
            self._f = self.path.open("a", encoding="utf-8")
        else:
            self._f = self.path.open("w", encoding="utf-8")
            self._write({"kind": "header", **identity})

    def _load(self, identity: dict[str, Any]) -> None:
        raw = self.path.read_bytes()
        cut = raw.rfind(b"\n") + 1
        lines = raw[:cut].decode("utf-8").splitlines()
        if not lines:
            raise ResultsError(f"{self.path} has no header line; remove it to start afresh")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError as e:
            raise ResultsError(f"{self.path}: header line is not JSON ({e})") from e
        theirs = {k: v for k, v in header.items() if k != "kind"}
        diff = sorted(k for k in set(theirs) | set(identity) if theirs.get(k) != identity.get(k))
        if header.get("kind") != "header" or diff:
            raise ResultsError(
                f"{self.path} belongs to another run (differs in: {', '.join(diff) or 'kind'}); "
                "resume with the same model, bundle, mode and dataset, or use another -o"
            )
        if cut < len(raw):  # a torn last record: drop it, it will be recomputed
            self.torn = True
            with self.path.open("r+b") as f:
                f.truncate(cut)
        for i, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsError(f"{self.path}:{i}: corrupt record ({e})") from e
            self.done[rec["id"]] = rec

    def _write(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, rec: dict[str, Any]) -> None:
        """Persist one finished image (``rec["id"]`` unique)."""
        with self._lock:
            self._write(rec)
            self.done[rec["id"]] = rec

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
