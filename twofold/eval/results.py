"""Append-only per-image results (JSON lines) so an interrupted evaluation resumes.

Line 1 is a header with the run's identity (model and bundle digests, mode, the dataset CSV's
SHA-256); every later line is one finished image (with the SHA-256 of its file), flushed and
fsynced as it completes. On resume a torn last line (the process died mid-write) is cut off,
the header must match, and finished ids are skipped: nothing that was written is lost or
recomputed. Invariant: the file holds at most one record per image id — ``append`` refuses a
second one, a file that has duplicates (older versions) is compacted to the last record of each
id, and records the caller ``drop``s (failed images retried with ``--retry-failed``) are removed
by an atomic rewrite before their retries are appended.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import scratch

FILENAME = "results.jsonl"
# What a header key means, for the "belongs to another run" message.
IDENTITY_NAMES = {
    "model_sha256": "the ONNX model",
    "bundle_sha256": "the bundle",
    "mode": "the mode",
    "input": "the input description",
    "labels": "the model's labels",
    "dataset_sha256": "the dataset CSV",
}


def failed(rec: dict[str, Any]) -> bool:
    """A record of an image that did not give a usable secure/plaintext pair."""
    return "error" in rec or "secure_error" in rec


class ResultsError(ValueError):
    """The results file cannot be used as asked (exists without --resume, other run, ...)."""


class ResultsLog:
    """Thread-safe JSON-lines writer with resume; ``done`` maps id -> its record."""

    def __init__(
        self,
        path: Path,
        identity: dict[str, Any],
        resume: bool,
        drop: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        self.torn = False
        self.dropped = 0
        self._lock = threading.Lock()
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise ResultsError(
                    f"{self.path} exists: pass --resume to continue that run, "
                    "or choose another output directory"
                )
            header, count = self._load(identity)
            keep = {k: r for k, r in self.done.items() if not (drop and drop(r))}
            self.dropped = len(self.done) - len(keep)
            if self.dropped or count != len(self.done):
                self.done = keep
                self._rewrite(header)
            self._f = self.path.open("a", encoding="utf-8")
        else:
            self._f = self.path.open("w", encoding="utf-8")
            self._write({"kind": "header", **identity})

    def _load(self, identity: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Check the header, cut a torn tail, read the records; returns (header, lines read)."""
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
            what = ", ".join(IDENTITY_NAMES.get(k, k) for k in diff) or "kind"
            raise ResultsError(
                f"{self.path} belongs to another run (differs in: {what}); resume with the "
                "same model, bundle, mode and dataset CSV, or use another -o"
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
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                raise ResultsError(f"{self.path}:{i}: corrupt record (no image id)")
            self.done[rec["id"]] = rec  # a later duplicate (older versions) wins
        return header, len(lines) - 1

    def _rewrite(self, header: dict[str, Any]) -> None:
        """Atomically replace the file by the header and ``self.done`` (one record per id)."""
        tmp = scratch.temporary(self.path.parent, self.path.name)
        with tmp.open("w", encoding="utf-8") as f:
            for rec in (header, *self.done.values()):
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; keep the mode a fresh file gets
        os.replace(tmp, self.path)

    def _write(self, rec: dict[str, Any]) -> None:
        self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, rec: dict[str, Any]) -> None:
        """Persist one finished image; a second record for one id is refused."""
        with self._lock:
            if rec["id"] in self.done:
                raise ResultsError(f"{self.path}: {rec['id']!r} already has a record")
            self._write(rec)
            self.done[rec["id"]] = rec

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
