"""Text form of the IR: one op a line, SSA names, types (and ranges) inline.

    %x  : fix<32,11>[1,3,224,224] @client = input "image"
    %y  : fix<32,22>[1,64,112,112] @secret = conv2d(%x, %w) {strides=[2,2], pads=[3,3,3,3]}

A node whose ``meta`` has a ``range`` (lo, hi) and ``bits`` gets a trailing
comment, so an overflow risk is visible by reading (DESIGN.md §3).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: graph.py imports this module for Graph.__str__
    from .graph import Graph, Node


def _attr(v: object) -> str:
    return json.dumps(v, separators=(",", ":"))


def format_node(node: Node, width: int = 0) -> str:
    lhs = f"%{node.name}".ljust(width)
    if node.op == "input":
        rhs = f'input "{node.attrs["name"]}"'
    elif node.op in ("weight", "const"):
        rhs = f'{node.op} "{node.attrs["key"]}"'
    else:
        args = ", ".join(f"%{i}" for i in node.inputs)
        attrs = node.attrs
        extra = " {" + ", ".join(f"{k}={_attr(v)}" for k, v in attrs.items()) + "}" if attrs else ""
        rhs = f"{node.op}({args}){extra}"
    line = f"{lhs} : {node.type} = {rhs}"
    if "range" in node.meta:
        lo, hi = node.meta["range"]
        line += f"  # range [{lo:.4g}, {hi:.4g}]"
        if "bits" in node.meta:
            line += f" bits {node.meta['bits']}"
    return line


def format_graph(graph: Graph) -> str:
    width = max((len(n.name) + 1 for n in graph.nodes), default=0)
    lines = [format_node(n, width) for n in graph.nodes]
    lines.append("return " + ", ".join(f"%{o}" for o in graph.outputs))
    return "\n".join(lines) + "\n"
