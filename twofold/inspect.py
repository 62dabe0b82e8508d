"""``twofold inspect``: the IR of a model and its cost summary (ops, parameters, MACs, ReLUs).

``summarize(graph)`` works on any IR graph (float or fixed point), so the compiled-bundle
view can reuse it. MACs count the multiply-accumulates of ``conv2d``/``gemm`` (the linear
layers the 2PC runtime pays for with HE/OT); ``relu_count`` is the number of ReLU output
elements (each one a DReLU in CrypTFlow2, §4).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .ir import Graph, format_graph

_SOURCES = ("input", "weight", "const")


def node_macs(graph: Graph, name: str) -> int:
    """Multiply-accumulates of one node (0 for ops without a matrix/convolution product)."""
    n = graph[name]
    if n.op == "conv2d":
        _, cin_per_group, kh, kw = graph[n.inputs[1]].type.shape
        return math.prod(n.type.shape) * cin_per_group * kh * kw
    if n.op == "gemm":
        m, k = graph[n.inputs[0]].type.shape
        return m * k * graph[n.inputs[1]].type.shape[1]
    return 0


def summarize(graph: Graph) -> dict[str, Any]:
    """Counts for a graph: ``ops`` (op → nodes, sources excluded), ``params`` (elements),
    ``macs``, ``relu_count`` (ReLU elements), ``inputs``/``outputs`` (name, shape, type)."""
    ops = Counter(n.op for n in graph.nodes if n.op not in _SOURCES)
    params = sum(n.type.size for n in graph.nodes if n.op == "weight")
    consts = sum(n.type.size for n in graph.nodes if n.op == "const")
    fns = graph.meta.get("output_function") or {}
    return {
        "model": graph.meta.get("model"),
        "nodes": len(graph),
        "ops": dict(sorted(ops.items())),
        "params": params,
        "param_tensors": sum(1 for n in graph.nodes if n.op == "weight"),
        "public_constants": consts,
        "macs": sum(node_macs(graph, n.name) for n in graph.nodes),
        "relu_count": sum(n.type.size for n in graph.nodes if n.op == "relu"),
        "clip_count": sum(n.type.size for n in graph.nodes if n.op == "clip"),
        "maxpool_count": sum(n.type.size for n in graph.nodes if n.op == "maxpool"),
        "inputs": [
            {"name": n.name, "shape": list(n.type.shape), "type": str(n.type)}
            for n in graph.inputs()
        ],
        "outputs": [
            {
                "name": o,
                "shape": list(graph[o].type.shape),
                "type": str(graph[o].type),
                "output_function": fns.get(o),
            }
            for o in graph.outputs
        ],
    }


def _si(n: float) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= k:
            return f"{n / k:.2f} {unit}"
    return str(int(n))


def format_summary(s: dict[str, Any]) -> str:
    """The summary as aligned text lines."""
    ins = ", ".join("%" + i["name"] + ": " + i["type"] for i in s["inputs"])
    outs = ", ".join(_output(o) for o in s["outputs"])
    lines = [f"model       {s['model']}"] if s.get("model") else []
    lines += [
        f"inputs      {ins}",
        f"outputs     {outs}",
        f"nodes       {s['nodes']}",
        f"params      {s['params']:,} ({s['param_tensors']} weight tensors)",
        f"MACs        {s['macs']:,} ({_si(s['macs'])}MAC)",
        f"ReLU count  {s['relu_count']:,} elements",
    ]
    if s["clip_count"]:
        lines.append(f"clip count  {s['clip_count']:,} elements")
    if s["maxpool_count"]:
        lines.append(f"maxpool     {s['maxpool_count']:,} output elements")
    lines.append("ops         " + ", ".join(f"{k} {v}" for k, v in s["ops"].items()))
    return "\n".join(lines)


def _output(o: dict[str, Any]) -> str:
    fn = f" -> {o['output_function']}" if o.get("output_function") else ""
    return f"%{o['name']}: {o['type']}{fn}"


def parse_shape(text: str) -> list[int]:
    """``"1,3,224,224"`` → ``[1, 3, 224, 224]``; ValueError naming the text otherwise."""
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"--input-shape {text!r} is not like 1,3,224,224")
    return dims


def inspect_model(
    path: str | Path, fmt: str = "text", input_shape: Sequence[int] | None = None
) -> str:
    """What ``twofold inspect`` prints for an ONNX file: IR + summary (text) or JSON."""
    from .frontends.onnx import load_onnx

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a directory; inspect takes an ONNX model file")
    graph = load_onnx(p, input_shape)
    s = summarize(graph)
    if fmt == "json":
        return json.dumps(s, indent=1)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}; known: text, json")
    return f"{format_graph(graph)}\n\n{format_summary(s)}"
