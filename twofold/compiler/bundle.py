"""Compiled bundle on disk: ``ir.txt``, ``ir.json``, ``weights.npz``, ``report.json``.

``ir.json``/``ir.txt`` are public (no server weight values; small public constants travel
in ``meta["public_params"]``); ``weights.npz`` holds the server's fixed-point weights as
signed integers (int64, value·2^scale) by parameter key. Files are written to a
temporary directory and moved into place, so a failed compile leaves no partial bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..ir import Graph, format_graph, graph_from_json, graph_to_json

FILES = ("ir.txt", "ir.json", "weights.npz", "report.json")


class BundleError(ValueError):
    """A bundle directory is missing or malformed; the message names the file."""


def _split_params(g: Graph) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    weights, public = {}, {}
    for n in g.nodes:
        if n.op == "weight":
            weights[n.attrs["key"]] = np.asarray(g.params[n.attrs["key"]], np.int64)
        elif n.op == "const":
            v = np.asarray(g.params[n.attrs["key"]], np.int64)
            public[n.attrs["key"]] = {"shape": list(v.shape), "values": v.ravel().tolist()}
    return weights, public


def write_bundle(graph: Graph, out_dir: str | Path, report: dict[str, Any]) -> Path:
    out = Path(out_dir)
    g = graph.copy()
    weights, public = _split_params(g)
    g.meta["public_params"] = public
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a bundle gets ordinary permissions
    try:
        (tmp / "ir.txt").write_text(format_graph(g))
        (tmp / "ir.json").write_text(graph_to_json(g))
        with open(tmp / "weights.npz", "wb") as f:
            np.savez(f, **weights)
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        if out.exists():
            if not out.is_dir():
                raise BundleError(f"{out} exists and is not a directory")
            for name in FILES:
                (out / name).unlink(missing_ok=True)
            for name in FILES:
                os.replace(tmp / name, out / name)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_bundle(path: str | Path, weights: bool = True) -> Graph:
    """The secure IR with parameter values (public constants always; weights if asked)."""
    d = Path(path)
    if not d.is_dir():
        raise BundleError(f"{d} is not a compiled bundle directory (twofold compile -o DIR)")
    try:
        g = graph_from_json((d / "ir.json").read_text())
    except FileNotFoundError:
        raise BundleError(f"{d / 'ir.json'} is missing") from None
    except (ValueError, KeyError) as e:
        raise BundleError(f"{d / 'ir.json'} is malformed: {e}") from None
    for key, pv in g.meta.get("public_params", {}).items():
        g.params[key] = np.asarray(pv["values"], np.int64).reshape(pv["shape"])
    if weights:
        try:
            with np.load(d / "weights.npz") as z:
                g.params.update({k: z[k] for k in z.files})
        except FileNotFoundError:
            raise BundleError(f"{d / 'weights.npz'} is missing") from None
        missing = [
            n.attrs["key"] for n in g.nodes if n.op == "weight" and n.attrs["key"] not in g.params
        ]
        if missing:
            raise BundleError(f"{d / 'weights.npz'} lacks weights {missing[:5]}")
    return g


def read_report(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "report.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise BundleError(f"{f} is missing") from None
