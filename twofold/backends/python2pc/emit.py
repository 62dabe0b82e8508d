"""Emitter: secure IR -> ``program.py``, one runtime call per IR op (DESIGN.md §2, §5).

``program.py`` is written into the server bundle *for reading*: nobody imports it. Both
parties run the program by walking the public IR (``runtime.program``), and this emitter
renders exactly the calls that walker makes (the same ``call_args``), with the IR line and
the scales as comments, so the file is a faithful listing. It holds no weights and is
deterministic: the same graph always renders to the same bytes.
"""

from __future__ import annotations

import keyword
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ...ir import Graph, Node, format_node, program_hash
from ...runtime.program import ProgramError, Ref, call_args, check_ops, last_uses

_TEMPLATES = Path(__file__).parent / "templates"


class EmitError(ValueError):
    """The graph cannot be turned into a 2PC program (names the node at fault)."""


def _identifiers(graph: Graph) -> dict[str, str]:
    """A unique, valid Python identifier per IR value (kept close to the IR name)."""
    taken = {"rt", "run", "result"}
    out: dict[str, str] = {}
    for node in graph.nodes:
        base = re.sub(r"\W", "_", node.name)
        if not base or base[0].isdigit() or keyword.iskeyword(base) or base.startswith("__"):
            base = "t_" + base
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        out[node.name] = name
    return out


def _lit(value: Any) -> str:
    """A Python literal for a JSON-like attribute value (lists become tuples)."""
    if isinstance(value, list | tuple):
        inner = ", ".join(_lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float) and not np.isfinite(value):
        raise EmitError(f"attribute value {value} has no literal form")
    return repr(value)


def _scales(graph: Graph, node: Node) -> str:
    def sc(name: str) -> str:
        t = graph[name].type.dtype
        return str(getattr(t, "scale", "float"))

    ins = ", ".join(f"%{i} {sc(i)}" for i in node.inputs)
    return f"scales: {ins} -> {sc(node.name)}" if ins else f"scale: {sc(node.name)}"


def _call(graph: Graph, node: Node, ids: dict[str, str], ell: int) -> str:
    try:
        args, kw = call_args(graph, node, ell)
    except ProgramError as e:
        raise EmitError(str(e)) from None
    parts = [repr(node.name)]
    parts += [ids[a.name] if isinstance(a, Ref) else _lit(a) for a in args]
    parts += [f"{k}={_lit(v)}" for k, v in kw.items()]
    return f"{ids[node.name]} = rt.{node.op}({', '.join(parts)})"


def check_emittable(graph: Graph) -> int:
    """The single ring ℓ of the graph; EmitError naming the node if it is not a secure IR."""
    try:
        return check_ops(graph)
    except ProgramError as e:
        raise EmitError(str(e)) from None


def emit_program(graph: Graph, model: str = "model") -> str:
    """Render the 2PC program for a compiled (fixed-point) graph as Python source."""
    from ... import __version__

    ell = check_emittable(graph)
    ids = _identifiers(graph)
    frees = last_uses(graph)
    width = max((len(n.name) + 1 for n in graph.nodes), default=0)
    statements = []
    emitted: set[str] = set()

    def emit(node: Node) -> None:
        comments = [format_node(node, width).rstrip()]
        if node.op not in ("weight", "const"):
            comments.append(_scales(graph, node))
        statements.append(
            {
                "comments": comments,
                "code": _call(graph, node, ids, ell),
                "frees": ", ".join(ids[v] for v in frees[node.name]),
            }
        )
        emitted.add(node.name)

    for node in graph.nodes:
        if node.op in ("weight", "const") and graph.users(node.name):
            continue  # emitted right before its first reader, for readability
        for i in node.inputs:
            if i not in emitted:
                emit(graph[i])
        emit(node)
    fns = graph.meta.get("output_function", {})
    inputs = {
        n.attrs["name"]: {"shape": list(n.type.shape), "scale": n.type.dtype.scale}
        for n in graph.inputs()
    }
    outputs = {
        o: {
            "shape": list(graph[o].type.shape),
            "scale": graph[o].type.dtype.scale,
            "function": fns.get(o, "identity"),
        }
        for o in graph.outputs
    }
    ret = "{" + ", ".join(f"{o!r}: rt.output({o!r}, {ids[o]})" for o in graph.outputs) + "}"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("program.py.j2").render(
        model=model,
        version=__version__,
        program_hash=program_hash(graph),
        ell=ell,
        inputs=repr(inputs),
        outputs=repr(outputs),
        labels=repr(list(graph.meta.get("labels", []))),
        steps=sum(1 for n in graph.nodes if n.op not in ("weight", "const")) + len(graph.outputs),
        statements=statements,
        ret=ret,
    )


def write_program(graph: Graph, directory: str | os.PathLike[str], model: str = "model") -> Path:
    """Write ``directory/program.py`` atomically; returns its path."""
    path = Path(directory) / "program.py"
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(emit_program(graph, model))
    os.replace(tmp, path)
    return path
