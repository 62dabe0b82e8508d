"""Drivers behind ``twofold compile`` and ``twofold simulate`` (CLI layer).

Wires the frontend, the compiler pipeline (with cleartext calibration) and the bundle,
and loads client inputs through the preprocessing recorded at compile time.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends.cleartext import observe_ranges, simulate
from .backends.float_ref import channel_stats as float_channel_stats
from .backends.python2pc import emit_program
from .compiler import CompileError, CompileOptions, run_pipeline
from .compiler.bundle import check_target, read_bundle, write_bundle
from .compiler.report import build_report
from .inputcheck import InputOutOfRange, check_input_range
from .ir import Graph
from .ir.bundle import file_kind
from .ir.public import public_ir
from .runtime.program import check_program
from .scale_choice import choose_scale, split_holdout

# Declared input range per preprocessing (real units after preprocessing).
# chexnet: ImageNet mean/std normalisation of [0, 1] pixels: (0 − 0.485)/0.229 .. (1 − 0.406)/0.225.
PREPROCESS_RANGES = {"chexnet": (-2.1179039, 2.6400001), "none": (-3.0, 3.0)}


def input_meta(graph: Graph) -> dict[str, Any]:
    return graph.meta.get("input", {})


def load_input(path: str | Path, meta: dict[str, Any]) -> np.ndarray:
    """A client input as the program expects it: ``.npy`` as is, images preprocessed.

    Refused (``InputOutOfRange``, a ValueError naming the file, the range found and the range
    expected) when it leaves the declared input range ``meta["range"]``: every caller —
    simulate, run client, eval, calibration — gets the check before any work or traffic.
    """
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise ValueError(f"input {p} is a directory, not an image file")
        if p.exists():
            raise ValueError(f"input {p} is not a regular file (a FIFO or device?)")
        raise ValueError(f"input file {p} does not exist")
    shape = tuple(meta.get("shape", ()))
    if p.suffix.lower() == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p} is not a readable .npy array: {e}") from None
        if x.dtype.kind not in "fiu":
            raise ValueError(f"{p}: dtype {x.dtype} is not numeric")
    else:
        from .preprocess import load_image

        size = shape[-1] if shape else 224
        x = np.asarray(load_image(str(p), meta.get("preprocess", "chexnet"), size))
    if shape and x.shape != shape:
        if x.size == int(np.prod(shape)) and x.ndim == len(shape) - 1:
            x = x.reshape(shape)
        else:
            raise ValueError(
                f"input {p} has shape {list(x.shape)}, the program expects {list(shape)}"
            )
    x = x.astype(np.float64)
    check_input_range(x, meta, str(p))
    return x


def check_options(input_range: Sequence[float], margin: float) -> None:
    """Refuse settings that cannot give a correct program (one line naming the option)."""
    lo, hi = (float(v) for v in input_range)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise CompileError(f"--input-range must be finite, got [{lo}, {hi}]")
    if not lo < hi:
        raise CompileError(f"--input-range [{lo}, {hi}] is empty: LO must be below HI")
    if not (math.isfinite(margin) and margin >= 1.0):
        raise CompileError(
            f"--calibration-margin must be a finite number >= 1 (observed range x margin), "
            f"got {margin}"
        )


def _calibration_sample(path: str | Path, meta: dict[str, Any]) -> np.ndarray:
    """A calibration input for the program: a batch-N program (issue 17) takes a file of N
    images, or one image repeated N times."""
    shape = list(meta.get("shape", ()))
    if not shape or shape[0] == 1:
        return load_input(path, meta)
    try:
        return load_input(path, meta)
    except ValueError:
        one = load_input(path, dict(meta, shape=[1, *shape[1:]]))
        return np.repeat(one, shape[0], axis=0)


def compile_model(
    model: str | Path,
    out_dir: str | Path | None = None,
    *,
    scale: int = 12,
    bitlength: int | str = "auto",
    calibrate: Sequence[str | Path] = (),
    preprocess: str = "chexnet",
    input_range: tuple[float, float] | None = None,
    input_shape: Sequence[int] | None = None,
    disabled: Sequence[str] = (),
    margin: float = 2.0,
    range_model: str = "checked",
    headroom_bits: int = 1,
    graph: Graph | None = None,
    labels: Sequence[str] | None = None,
    fidelity: float | None = None,
    holdout: Sequence[str | Path] = (),
) -> tuple[Graph, dict[str, Any]]:
    """ONNX file (or a float IR ``graph``) → secure IR, report; the bundle if ``out_dir``.

    ``fidelity``: choose the scale (and so ℓ) instead of ``scale`` — the cheapest meeting
    max |Δ probability| ≤ fidelity on the calibration and held-out inputs (scale_choice.py).
    """
    if preprocess not in PREPROCESS_RANGES:
        raise CompileError(f"unknown preprocessing {preprocess!r}; known: chexnet, none")
    if out_dir is not None:
        check_target(out_dir)  # before any work; write_bundle checks again
    if graph is None:
        from .frontends.onnx import load_onnx

        graph = load_onnx(str(model), input_shape=list(input_shape) if input_shape else None)
    graph = graph.copy()
    inputs = graph.inputs()
    if len(inputs) != 1:
        raise CompileError(f"model has {len(inputs)} inputs; exactly one image input is supported")
    rng = input_range if input_range is not None else PREPROCESS_RANGES[preprocess]
    check_options(rng, margin)
    if not 0 <= headroom_bits <= 16:
        raise CompileError(f"--headroom-bits must be an integer in 0..16, got {headroom_bits}")
    graph.meta["input"] = {
        "name": inputs[0].attrs["name"],
        "shape": list(inputs[0].type.shape),
        "scale": scale,
        "range": [float(rng[0]), float(rng[1])],
        "preprocess": preprocess,
    }
    if fidelity is not None:
        if not (math.isfinite(fidelity) and fidelity > 0):
            raise CompileError(f"--fidelity must be a positive number, got {fidelity}")
        if bitlength != "auto":
            raise CompileError("--fidelity chooses the ring: leave --bitlength at auto")
        if not calibrate:
            raise CompileError("--fidelity needs --calibrate inputs to measure fidelity on")
    observe = channel_stats = None
    if calibrate:
        meta = graph.meta["input"]
        samples = []
        for f in [*calibrate, *holdout]:
            try:
                samples.append(_calibration_sample(f, meta))
            except InputOutOfRange as e:
                raise CompileError(
                    f"calibration {e}; widen the declared range with --input-range LO HI"
                ) from None

        calib_files, held_files = list(calibrate), list(holdout)
        if fidelity is not None:
            calib_files, held_files = split_holdout(calibrate, holdout)
        by_file = dict(zip([*calibrate, *holdout], samples, strict=True))
        cal_x = [by_file[f] for f in calib_files]
        held_x = [by_file[f] for f in held_files]

        def observe(g: Graph) -> dict[str, tuple]:
            return observe_ranges(g, cal_x)

        stats: dict[tuple[str, ...], dict[str, tuple]] = {}

        def channel_stats(g: Graph, names: list[str]) -> dict[str, tuple]:
            # the float graph before quantization is the same at every scale: run it once
            key = tuple(names)
            if key not in stats:
                stats[key] = float_channel_stats(g, cal_x, names)
            return stats[key]

    if labels:
        n_out = graph[graph.outputs[0]].type.size
        if len(labels) != n_out:
            raise CompileError(f"{len(labels)} labels given for {n_out} model outputs")
        graph.meta["labels"] = list(labels)

    def compile_at(s: int) -> tuple[Graph, dict[str, Any]]:
        g = graph.copy()
        g.meta["input"] = dict(graph.meta["input"], scale=s)
        opts = CompileOptions(
            scale=s,
            bitlength=bitlength,
            calibration_margin=margin,
            range_model=range_model,
            headroom_bits=headroom_bits,
            disabled=set(disabled),
            observe=observe,
            channel_stats=channel_stats,
        )
        sec = run_pipeline(g, opts)
        sec.meta["compile"]["calibration_inputs"] = [Path(f).name for f in calibrate]
        return sec, build_report(sec)

    if fidelity is None:
        secure, report = compile_at(scale)
    else:
        try:
            secure, report, summary = choose_scale(fidelity, compile_at, graph, cal_x, held_x)
        except ValueError as e:
            raise CompileError(str(e)) from None
        secure.meta["compile"]["fidelity"] = summary
        report = build_report(secure)
    if out_dir is not None:
        # Everything is produced before the bundle is written: a graph nobody could run (e.g.
        # a disabled quantize pass) fails here and leaves an existing bundle as it was.
        name = Path(model).name if model else "model"
        check_program(public_ir(secure))
        program = emit_program(secure, model=name)
        write_bundle(secure, out_dir, report, model=name, server_files={"program.py": program})
    return secure, report


def parse_labels(text: str) -> list[str]:
    """``A,B,C`` or ``@FILE`` (one label a line)."""
    if text.startswith("@"):
        try:
            lines = Path(text[1:]).read_text().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read labels file {text[1:]}: {e}") from None
        return [line.strip() for line in lines if line.strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def _json_target(path: str | Path, option: str) -> Path:
    """The file ``path`` names for writing: itself, or the regular file a symbolic link at
    ``path`` points to. ValueError naming ``option`` when that is an existing non-regular file
    (a FIFO, device, socket, directory: replacing it would break what it stands for) or a
    dangling link."""
    p = Path(path)
    try:
        st = os.stat(p)  # follows a symbolic link
    except (FileNotFoundError, NotADirectoryError):  # nothing there (yet)
        if p.is_symlink():
            raise ValueError(
                f"{option} {p} is a symbolic link to {os.readlink(p)}, which does not exist"
            ) from None
        return p
    except OSError as e:
        raise ValueError(f"{option} {p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        what = file_kind(st.st_mode)
        link = f" (a symbolic link to {os.readlink(p)})" if p.is_symlink() else ""
        raise ValueError(f"{option} {p} is {what}{link}; give the path of a regular file")
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def check_output_path(
    path: str | Path, inputs: Sequence[str | Path] = (), option: str = "-o"
) -> None:
    """Refuse, before any work or traffic, an output path :func:`write_json_atomic` must not
    replace: an existing FIFO, device, socket or directory, a dangling symbolic link, or one
    of the ``inputs`` (the same file under any name), or a path whose directory is missing or
    not writable. A symbolic link to a regular file is accepted: the file it points to is
    replaced, the link stays. The messages name ``option`` and the path as given."""
    p = Path(path)
    target = _json_target(p, option)
    d = target.parent
    if not d.exists():
        raise ValueError(f"{option} {p}: directory {d} does not exist")
    if not d.is_dir():
        raise ValueError(f"{option} {p}: {d} is not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {p}: directory {d} is not writable")
    for inp in inputs:
        try:
            same = os.path.samefile(target, inp)
        except OSError:
            same = False  # one of them does not exist (yet): not the same file
        if same:
            raise ValueError(
                f"{option} {p} is the input file {inp}: writing the result would overwrite it"
            )


def write_json_atomic(doc: dict[str, Any], path: str | Path) -> None:
    """Write JSON to ``path`` via a temporary file and rename: never a partial file.

    Only a regular file (or nothing) is replaced; a symbolic link to a regular file keeps
    pointing to it (its target is replaced). A FIFO, device, socket or directory at ``path``
    is refused (ValueError), never replaced by a regular file.
    """
    target = _json_target(path, "output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:  # name the file asked for, not the temporary one
        raise OSError(f"cannot write {path}: {e.strerror} (directory {target.parent})") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def simulate_bundle(bundle: str | Path, input_path: str | Path, check: bool = True) -> dict:
    """Run a compiled bundle in the cleartext fixed-point backend on one input file (needs the
    server bundle: the weights)."""
    g = read_bundle(bundle, command="simulate")
    x = load_input(input_path, input_meta(g))
    return simulate(g, x, check=check)


def inspect_bundle(bundle: str | Path, fmt: str = "text") -> str:
    """``twofold inspect DIR``: what each part of the bundle holds.

    The server bundle: the secure IR with ranges and bits and the report totals (``json``:
    report.json). The client bundle: its public IR (no ranges) and the totals computed from
    it. The top DIR: both parts' files, then the server bundle's view (the client's if it
    holds only that).
    """
    from .compiler.bundle import read_report
    from .compiler.report import format_summary
    from .ir import format_graph
    from .ir.bundle import CLIENT, MANIFEST, PARTS, SERVER, part_of, read_manifest, resolve

    d = Path(bundle)
    part = part_of(d) if d.is_dir() else None
    if part is None and (d / CLIENT).is_dir() and not (d / SERVER).exists():
        d, part = d / CLIENT, CLIENT  # the hospital's copy: DIR/client only
    if part == CLIENT:
        g = read_bundle(d, weights=False, command="inspect")
        report = build_report(g)
        if fmt == "json":
            return json.dumps(report)
        head = f"client bundle {d} (public: no weights, ranges or calibration data)\n"
        return head + format_graph(g) + "\n" + format_summary(report)
    srv = resolve(d, SERVER, "inspect")
    if fmt == "json":
        return json.dumps(read_report(srv))
    head = ""
    if part is None:
        for p in PARTS:
            sub = d / p
            if sub.is_dir():
                files = ", ".join(sorted(f.name for f in sub.iterdir()))
                h = read_manifest(sub)["program_hash"] if (sub / MANIFEST).is_file() else "?"
                head += f"{p} bundle {sub}: {files} (program {h[:16]})\n"
        head += "\n"
    head += f"server bundle {srv} (the vendor's: weights, ranges, calibration)\n"
    g = read_bundle(srv, weights=False, part=SERVER, command="inspect")
    return head + format_graph(g) + "\n" + format_summary(read_report(srv))
