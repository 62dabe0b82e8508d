"""Writing and reading a compiled bundle: ``DIR/server/`` (vendor) and ``DIR/client/`` (hospital).

The layout is described in ``ir.bundle``. ``weights.npz`` holds the server's fixed-point
weights as signed integers (int64, value·2^scale) by parameter key, mode 0600 in a 0700
directory; small public constants travel in ``meta["public_params"]``. Everything is first
written to a temporary directory (in ``DIR`` if it exists, else beside it); only when both
parts are complete are they moved into place together, so a failed compile never damages an
existing bundle, and a recompile never leaves one part of the old bundle beside one of the
new.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..ir import Graph, format_graph, graph_to_json, program_hash
from ..ir.bundle import (
    CLIENT,
    LEGACY_FILES,
    MANIFEST,
    PARTS,
    SERVER,
    BundleError,
    load_ir,
    load_weights,
    manifest,
    part_of,
    read_manifest,
    resolve,
    weights_digest,
)
from ..ir.public import public_ir, public_params

__all__ = ["BundleError", "check_target", "read_bundle", "read_report", "write_bundle"]

#: What the compiler writes into ``DIR/client``: exactly these, nothing else goes to the hospital.
CLIENT_FILES = frozenset({"ir.json", "ir.txt", MANIFEST})
#: The files by which an old single-directory bundle is recognised: its ``LEGACY_FILES`` are
#: removed by a recompile only then, never from a folder of the vendor's that has a
#: ``program.py`` or ``report.json`` of its own.
_LEGACY_MARKS = ("ir.json", "weights.npz")


def _weights(g: Graph) -> dict[str, np.ndarray]:
    return {
        n.attrs["key"]: np.asarray(g.params[n.attrs["key"]], np.int64)
        for n in g.nodes
        if n.op == "weight"
    }


def _json(doc: Any) -> str:  # noqa: ANN401
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _write_parts(
    tmp: Path,
    graph: Graph,
    report: dict[str, Any],
    model: str,
    server_files: Mapping[str, str],
) -> None:
    g = graph.copy()
    g.meta["public_params"] = public_params(g)
    pub = public_ir(g)
    phash = program_hash(pub)
    weights = _weights(g)
    srv, cli = tmp / SERVER, tmp / CLIENT
    srv.mkdir(mode=0o700)
    os.chmod(srv, 0o700)  # the vendor's part: weights, ranges, calibration file names
    cli.mkdir()
    (srv / "ir.txt").write_text(format_graph(g))
    (srv / "ir.json").write_text(graph_to_json(g))
    fd = os.open(srv / "weights.npz", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **weights)
    (srv / "report.json").write_text(json.dumps(report, indent=1))
    for name, text in server_files.items():
        (srv / name).write_text(text)
    extra = {"model": model, "weights_sha256": weights_digest(weights)}
    (srv / MANIFEST).write_text(_json(manifest(SERVER, phash, **extra)))
    (cli / "ir.txt").write_text(format_graph(pub))
    (cli / "ir.json").write_text(graph_to_json(pub))
    (cli / MANIFEST).write_text(_json(manifest(CLIENT, phash)))


def check_target(out_dir: str | Path) -> None:
    """Refuse an ``-o DIR`` that a compile would damage or whose stray files it would ship.

    Invariants: a compile replaces only what an earlier compile wrote. ``DIR/server`` and
    ``DIR/client`` are either absent, empty or parts of a twofold bundle (their manifest says
    so) — a vendor's own ``server/`` folder is never overwritten; ``DIR/client`` holds nothing
    but :data:`CLIENT_FILES` — a file placed there (a calibration image, a patient list) would
    go to the hospital with the client bundle. BundleError naming the path otherwise, raised
    before anything is written (``compile`` calls it before compiling, too). ``DIR`` itself
    is no part and lies in none (:func:`_enclosing_part`): ``-o build/client`` would put the
    server part, weights and all, inside the folder the hospital receives."""
    out = Path(out_dir)
    if out.is_symlink() and not out.exists():
        raise BundleError(
            f"{out} is a symbolic link to {os.readlink(out)}, which does not exist; create that "
            "folder or give another -o"
        )
    found = _enclosing_part(out)
    if found is not None:
        part, kind = found
        where = "is a" if part in (out, out.resolve()) else f"lies inside the {part}"
        top = part.parent if part.is_absolute() else os.path.relpath(os.path.abspath(part) + "/..")
        raise BundleError(
            f"{out} {where} twofold {kind} bundle, and compile would write the server part (the "
            f"weights) into it; give the bundle's top folder (-o {top}) or another -o"
        )
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise BundleError(f"{out} exists and is not a directory")
    for part in PARTS:
        d = out / part
        if not os.path.lexists(d):
            continue
        if not d.is_dir():
            raise BundleError(f"{d} exists and is not a twofold {part} bundle; move it away")
        names = sorted(e.name for e in d.iterdir())
        if not names:
            continue
        try:
            ours = part_of(d) == part
        except BundleError:
            ours = False
        if not ours:
            raise BundleError(
                f"{d} is not a twofold {part} bundle (no manifest naming it), and compile would "
                "replace it; move it away or give another -o"
            )
        extra = [n for n in names if n not in CLIENT_FILES] if part == CLIENT else []
        if extra:
            raise BundleError(
                f"{d} holds {', '.join(extra[:5])}, which compile did not write: the client "
                "bundle goes to the hospital as a whole; move it away"
            )


def _enclosing_part(out: Path) -> tuple[Path, str] | None:
    """The bundle part (its folder and ``server``/``client``) that ``out`` is or lies in, as
    given, as absolute and with symbolic links resolved; None if there is none. A folder whose
    manifest cannot be read as a bundle's is not a part (another program's ``manifest.json``)."""
    seen: list[Path] = []
    for p in (out, Path(os.path.abspath(out)), out.resolve()):
        for d in (p, *p.parents):
            if d in seen:
                continue
            seen.append(d)
            try:
                kind = part_of(d)
            except BundleError:
                continue
            if kind is not None:
                return d, kind
    return None


def write_bundle(
    graph: Graph,
    out_dir: str | Path,
    report: dict[str, Any],
    *,
    model: str = "model",
    server_files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``out_dir/server`` and ``out_dir/client`` (``server_files``: extra text files for
    the server part, e.g. the emitted ``program.py``); all or nothing. Temporaries are made
    where a rename can move them into place: inside ``out_dir`` when it exists (it may link to
    another file system than its parent's), else beside it."""
    out = Path(out_dir)
    check_target(out)
    legacy = all((out / f).is_file() for f in _LEGACY_MARKS)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the new parts are made on the file system they are renamed onto: beside a new DIR, but
    # inside an existing one (DIR may be a symbolic link to another file system)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out if out.is_dir() else out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a bundle gets ordinary permissions
    try:
        _write_parts(tmp, graph, report, model, server_files or {})
        if not out.exists():
            os.replace(tmp, out)
            return out
        _swap(tmp, out, legacy)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _swap(tmp: Path, out: Path, legacy: bool) -> None:
    """Move ``tmp/{server,client}`` over ``out/{server,client}``; put the old ones back if a
    move fails. Entries of the old server part that the compiler does not write (e.g. its TLS
    key in ``server/tls/``) are carried over (the client part has none: :func:`check_target`);
    the single-directory layout's files go only if ``out`` was such a bundle (``legacy``)."""
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out))  # beside the parts
    moved: list[str] = []
    placed: list[str] = []
    try:
        for part in PARTS:
            if os.path.lexists(out / part):
                os.replace(out / part, old / part)
                moved.append(part)
        for part in PARTS:
            os.replace(tmp / part, out / part)
            placed.append(part)
    except BaseException:
        for part in placed:
            shutil.rmtree(out / part, ignore_errors=True)
        for part in moved:
            os.replace(old / part, out / part)
        shutil.rmtree(old, ignore_errors=True)
        raise
    try:
        for part in (p for p in moved if p == SERVER):
            if (old / part).is_dir():
                for entry in (old / part).iterdir():
                    if not os.path.lexists(out / part / entry.name):
                        os.replace(entry, out / part / entry.name)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    for name in LEGACY_FILES if legacy else ():
        (out / name).unlink(missing_ok=True)


def read_bundle(
    path: str | Path, weights: bool = True, part: str | None = None, command: str = "this"
) -> Graph:
    """The IR of one part of a bundle, with public constants' values in ``graph.params``.

    ``part`` defaults to the server part when ``weights`` are wanted (then checked against the
    manifest's digest), else to the client part. ``path`` is the top DIR or the part itself.
    """
    part = part or (SERVER if weights else CLIENT)
    if weights and part != SERVER:
        raise BundleError("only the server bundle has weights")
    d = resolve(path, part, command)
    g = load_ir(d)
    if weights:
        want = read_manifest(d)["program_hash"]
        if program_hash(g) != want:  # else the digest below would bind the weights to nothing
            raise BundleError(
                f"{d / 'ir.json'} is not the program {d / MANIFEST} names (hash "
                f"{program_hash(g)[:16]}... vs {str(want)[:16]}...): the bundle was modified"
            )
        g.params.update(load_weights(d))
        missing = [
            n.attrs["key"] for n in g.nodes if n.op == "weight" and n.attrs["key"] not in g.params
        ]
        if missing:
            raise BundleError(f"{d / 'weights.npz'} lacks weights {missing[:5]}")
    return g


def read_report(path: str | Path) -> dict[str, Any]:
    """The server bundle's report.json (per-layer ranges and bits: the vendor's)."""
    f = resolve(path, SERVER, "the compile report") / "report.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise BundleError(f"{f} is missing") from None
