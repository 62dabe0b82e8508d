"""On-disk layout of a compiled bundle: the vendor's server bundle and the hospital's client bundle.

``twofold compile -o DIR`` writes two directories (DESIGN.md §1):

* ``DIR/server/`` — the vendor keeps it: ``ir.json``/``ir.txt`` (full IR with per-tensor
  ranges and bits), ``weights.npz`` (mode 0600), ``report.json``, ``program.py`` (the emitted
  program, for reading only: nobody imports it) and ``manifest.json`` with the program hash
  and the SHA-256 of the weights (:func:`weights_digest`), checked whenever weights are loaded;
* ``DIR/client/`` — the vendor hands it to the hospital: ``ir.json``/``ir.txt`` of the public
  view (``ir.public``: nothing derived from weights or calibration but ℓ under ``--bitlength
  auto`` and learned scalars a model keeps in public constants; ``compile`` names both) and
  ``manifest.json`` with the program hash.

The compiler writes it, the runtime and the CLI read it, so it lives with the IR (the one
layer both may import). Every command accepts the top ``DIR`` or a sub-bundle and takes the
part it needs (:func:`resolve`); the wrong part is refused naming what is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .graph import Graph
from .serialize import graph_from_json

SERVER, CLIENT = "server", "client"
PARTS = (SERVER, CLIENT)
MANIFEST = "manifest.json"
FORMAT, VERSION = "twofold-bundle", 1
#: Files of the single-directory layout before the split (removed by a recompile).
LEGACY_FILES = ("ir.txt", "ir.json", "weights.npz", "report.json", "program.py")
_WHY = {
    SERVER: "it holds the weights; the vendor keeps it",
    CLIENT: "the public program the vendor hands to the client",
}


class BundleError(ValueError):
    """A bundle directory is missing, malformed or the wrong part; the message names the file."""


#: The largest bundle JSON file read (DenseNet-121's ir.json: ~0.3 MB); a larger one is refused
#: before it is read, not parsed into gigabytes of memory.
JSON_MAX = 64 << 20
MANIFEST_MAX = 1 << 20  # a manifest is a few hashes


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for the messages that refuse to read or replace
    it)."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):  # fmt: skip
        if test(mode):
            return kind
    return "not a regular file"


def read_text(f: Path, limit: int = JSON_MAX) -> str:
    """The text of the bundle file ``f``. BundleError naming it unless it is a regular file of
    at most ``limit`` bytes of UTF-8: a FIFO in its place would block the reader forever, a
    device never end. The type is checked on the open descriptor (opened non-blocking, so a
    FIFO cannot hold the open either). FileNotFoundError passes (the caller says what is
    missing)."""
    try:
        fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise BundleError(f"{f} is unreadable: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BundleError(f"{f} is {file_kind(mode)}, not a regular file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{f} is larger than the {limit:,} bytes a bundle file may have")
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise BundleError(f"{f} is malformed: {e}") from None


def manifest(part: str, program_hash: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    head = {"format": FORMAT, "version": VERSION, "bundle": part, "program_hash": program_hash}
    return head | extra


def read_manifest(d: Path) -> dict[str, Any]:
    f = d / MANIFEST
    try:
        text = read_text(f, MANIFEST_MAX)
    except FileNotFoundError:
        raise BundleError(f"{f} is missing") from None
    try:
        m = json.loads(text)
    except ValueError as e:
        raise BundleError(f"{f} is malformed: {e}") from None
    except RecursionError:
        raise BundleError(f"{f} is malformed: nested too deeply") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("bundle") not in PARTS:
        raise BundleError(f"{f} is not a twofold bundle manifest")
    if m.get("version") != VERSION:
        raise BundleError(f"{f}: bundle version {m.get('version')!r} is not supported")
    if not isinstance(m.get("program_hash"), str):  # every reader checks the IR against it
        raise BundleError(f"{f} is not a twofold bundle manifest (no program hash)")
    return m


def part_of(d: Path) -> str | None:
    """``server``/``client`` if ``d`` is a sub-bundle, None if it has no manifest; BundleError
    if what is there in the manifest's place is not one (a directory, a FIFO, ...)."""
    return read_manifest(d)["bundle"] if os.path.lexists(d / MANIFEST) else None


def resolve(path: str | Path, need: str, command: str) -> Path:
    """The ``need`` sub-bundle of ``path`` (the top DIR or the sub-bundle itself)."""
    d = Path(path)
    if not d.is_dir():
        raise BundleError(f"{d} is not a compiled bundle directory (twofold compile -o DIR)")
    kind = part_of(d)
    if kind == need:
        return d
    if kind is not None:
        raise BundleError(
            f"{d} is the {kind} bundle; {command} needs the {need} bundle ({_WHY[need]})"
        )
    sub = d / need
    if sub.is_dir():
        if part_of(sub) == need:
            return sub
        raise BundleError(f"{sub / MANIFEST} is missing or not a {need} bundle manifest")
    other = CLIENT if need == SERVER else SERVER
    if (d / other).is_dir():
        raise BundleError(
            f"{d} holds only the {other} bundle; {command} needs the {need} bundle "
            f"({_WHY[need]}): {sub} is missing"
        )
    if (d / "ir.json").exists():
        if all((d / f).exists() for f in ("weights.npz", "report.json")):  # the old layout's
            raise BundleError(
                f"{d / MANIFEST} is missing: {d} holds the files of the old single-directory "
                "layout; recompile it (twofold compile -o DIR writes DIR/server and DIR/client)"
            )
        raise BundleError(
            f"{d / MANIFEST} is missing: {d} has an ir.json but no manifest naming its program "
            "(copy the whole bundle again, as twofold compile wrote it)"
        )
    raise BundleError(f"{d} is not a compiled bundle directory (twofold compile -o DIR)")


def load_ir(d: Path) -> Graph:
    """``d/ir.json`` with the public constants' values in ``graph.params``."""
    f = d / "ir.json"
    try:
        text = read_text(f)
    except FileNotFoundError:
        raise BundleError(f"{f} is missing") from None
    try:
        g = graph_from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{f} is malformed: {e}") from None
    except RecursionError:
        raise BundleError(f"{f} is malformed: nested too deeply") from None
    try:
        for key, pv in g.meta.get("public_params", {}).items():
            g.params[key] = np.asarray(pv["values"], np.int64).reshape(pv["shape"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"{f}: malformed public_params: {e}") from None
    return g


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the weights as signed 64-bit integers, by key (independent of the file's
    zip layout and timestamps)."""
    h = hashlib.sha256(b"twofold-weights-v1")
    for key in sorted(weights):
        v = np.ascontiguousarray(np.asarray(weights[key]), dtype="<i8")
        h.update(json.dumps([key, list(v.shape)]).encode() + b"\0")
        h.update(v.tobytes())
    return h.hexdigest()


def load_weights(d: Path) -> dict[str, np.ndarray]:
    """The server's integer weights by key; refused unless they are the compiled ones (the
    digest in ``d/manifest.json``). A file that is not a readable npz archive (truncated,
    corrupted, another kind of file) is one :class:`BundleError` naming it; nothing in it is
    ever unpickled."""
    f = d / "weights.npz"
    damaged = f"{f} is damaged or not a weights file"
    try:
        with open(f, "rb") as fh:  # np.load would take any other file as a pickle or one array
            if not zipfile.is_zipfile(fh):
                raise BundleError(f"{damaged}: not a zip (.npz) archive (truncated?)")
        with np.load(f, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise BundleError(f"{f} is missing (the server needs the compiled weights)") from None
    except BundleError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as e:  # Bad CRC-32, ...
        raise BundleError(f"{damaged}: {e}") from None
    except OSError as e:
        raise BundleError(f"{f} is unreadable: {e}") from None
    want = read_manifest(d).get("weights_sha256")
    got = weights_digest(weights)
    if got != want:
        raise BundleError(
            f"{f} is not the weights this program was compiled with (SHA-256 {got[:16]}..., "
            f"{d / MANIFEST} expects {str(want)[:16]}...); recompile, or restore the weights"
        )
    return weights


__all__ = [
    "CLIENT",
    "LEGACY_FILES",
    "MANIFEST",
    "SERVER",
    "BundleError",
    "load_ir",
    "load_weights",
    "manifest",
    "part_of",
    "read_manifest",
    "resolve",
    "weights_digest",
]
