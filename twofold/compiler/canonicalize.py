"""Pass ``canonicalize``: fold constant sub-graphs, drop no-op nodes and dead code.

Invariant established: no node computes only from public/server parameters (those are
folded into one parameter of the same owner), no identity reshape/flatten/transpose/pad/
mul_const remains, and every node reaches an output (DESIGN.md §4, pass 1).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Visibility

_FOLDABLE = {"add", "sub", "mul", "reshape", "flatten", "transpose", "concat", "mul_const"}


def _eval(op: str, args: list[np.ndarray], attrs: dict) -> np.ndarray:
    if op == "add":
        return args[0] + args[1]
    if op == "sub":
        return args[0] - args[1]
    if op == "mul":
        return args[0] * args[1]
    if op == "mul_const":
        return args[0] * attrs["value"]
    if op == "reshape":
        return args[0].reshape(attrs["shape"])
    if op == "flatten":
        a = args[0]
        return a.reshape(int(np.prod(a.shape[: attrs["axis"]])), -1)
    if op == "transpose":
        return args[0].transpose(attrs["perm"])
    return np.concatenate(args, axis=attrs["axis"])


def _is_noop(graph: Graph, node) -> bool:  # noqa: ANN001 - ir.Node
    if len(node.inputs) != 1:
        return False
    src = graph[node.inputs[0]].type
    same = src.shape == node.type.shape and src.dtype == node.type.dtype
    if node.op in ("reshape", "flatten"):
        return same
    if node.op == "transpose":
        return node.attrs["perm"] == sorted(node.attrs["perm"])
    if node.op == "pad":
        return not any(node.attrs["pads"])
    if node.op == "mul_const":
        return node.attrs["value"] == 1 and node.attrs.get("scale", 0) == 0
    return False


def canonicalize(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.nodes:
        if node.name not in g:
            continue
        if _is_noop(g, node):
            g.replace_uses(node.name, node.inputs[0])
            continue
        if node.op not in _FOLDABLE or not node.inputs:
            continue
        srcs = [g[i] for i in node.inputs]
        if not all(s.op in ("const", "weight") for s in srcs):
            continue
        owners = {s.type.vis for s in srcs} - {Visibility.PUBLIC}
        if len(owners) > 1:
            continue
        value = _eval(node.op, [np.asarray(g.params[s.attrs["key"]]) for s in srcs], node.attrs)
        key = g.fresh_name(node.name + ".folded")
        new = g.add_param(key, value.astype(np.float32), public=not owners)
        g.replace_uses(node.name, new)
    g.remove_dead()
    g.toposort()
    return g
