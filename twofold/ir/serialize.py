"""JSON form of the IR (structure and metadata; parameter values travel separately).

``graph_from_json(graph_to_json(g)) == g`` for every graph: the round trip is
exact, which is what lets the program hash (DESIGN.md §5) identify a program.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .graph import Graph, Node
from .public import public_ir
from .types import parse_type

FORMAT_VERSION = 1


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    return {
        "format": "twofold-ir",
        "version": FORMAT_VERSION,
        "nodes": [
            {
                "name": n.name,
                "op": n.op,
                "inputs": n.inputs,
                "attrs": n.attrs,
                "type": str(n.type),
                **({"meta": n.meta} if n.meta else {}),
            }
            for n in graph.nodes
        ],
        "outputs": graph.outputs,
        "meta": graph.meta,
    }


def graph_to_json(graph: Graph, indent: int | None = 1) -> str:
    return json.dumps(graph_to_dict(graph), indent=indent, sort_keys=False)


def graph_from_dict(data: dict[str, Any]) -> Graph:
    if data.get("format") != "twofold-ir":
        raise ValueError("not a twofold IR document (missing format: twofold-ir)")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"IR format version {data.get('version')} not supported")
    g = Graph()
    for nd in data["nodes"]:
        for i in nd["inputs"]:
            if i not in g:
                raise ValueError(f"node %{nd['name']}: operand %{i} used before definition")
        node = Node(
            nd["name"],
            nd["op"],
            list(nd["inputs"]),
            nd["attrs"],
            parse_type(nd["type"]),
            nd.get("meta", {}),
        )
        g._nodes[node.name] = node
        g._g.add_node(node.name)
        for pos, src in enumerate(node.inputs):
            g._g.add_edge(src, node.name, key=pos)
    g.outputs = list(data["outputs"])
    g.meta = data.get("meta", {})
    return g


def graph_from_json(text: str) -> Graph:
    return graph_from_dict(json.loads(text))


def program_hash(graph: Graph) -> str:
    """SHA-256 over the canonical JSON of the graph's *public view* (``ir.public``).

    Ring and scales are part of the types and meta. Only the public view counts, so the
    server's full IR and the client bundle's IR give the same hash, and two compiles of one
    architecture with different weights or calibration give the same program.
    """
    canon = json.dumps(graph_to_dict(public_ir(graph)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()
