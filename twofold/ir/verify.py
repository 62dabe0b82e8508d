"""Verifier: well-formedness, shapes, rings and scales, naming the node at fault.

Run after every compiler pass (DESIGN.md §3): a pass that breaks an invariant
fails loudly here instead of producing a wrong program.
"""

from __future__ import annotations

import networkx as nx

from . import ops as _ops
from .graph import Graph
from .types import Fix, Visibility


class IRVerifyError(ValueError):
    """The graph breaks an invariant; the message names the node."""


def verify(graph: Graph, stage: str = "") -> None:
    where = f" after {stage}" if stage else ""

    def fail(node: str, msg: str) -> None:
        raise IRVerifyError(f"IR invalid{where}: node %{node}: {msg}")

    if not nx.is_directed_acyclic_graph(graph.nx_graph()):
        cycle = nx.find_cycle(graph.nx_graph())
        fail(cycle[0][0], "is on a cycle")
    seen: set[str] = set()
    for node in graph.nodes:
        if node.op not in _ops.OPS:
            fail(node.name, f"unknown op {node.op!r}")
        spec = _ops.OPS[node.op]
        for i in node.inputs:
            if i not in seen:
                fail(node.name, f"operand %{i} is not defined before use")
        if not spec.min_inputs <= len(node.inputs) <= spec.max_inputs:
            fail(
                node.name,
                f"{node.op} takes {spec.min_inputs}..{spec.max_inputs} operands, "
                f"got {len(node.inputs)}",
            )
        in_types = [graph[i].type for i in node.inputs]
        try:
            shape = spec.infer([t.shape for t in in_types], node.attrs)
        except (_ops.ShapeError, KeyError, TypeError, ValueError) as e:
            fail(node.name, f"{node.op}: {e}")
        if tuple(shape) != node.type.shape:
            fail(
                node.name,
                f"declared shape {list(node.type.shape)} but {node.op} gives {list(shape)}",
            )
        if (
            node.op in ("weight", "const")
            and graph.params
            and node.attrs["key"] not in graph.params
        ):
            fail(node.name, f"parameter {node.attrs['key']!r} has no value")
        if node.op == "input" and node.type.vis is not Visibility.CLIENT:
            fail(node.name, "inputs belong to the client")
        _check_fixed(node.name, spec, [t.dtype for t in in_types], node, fail)
        seen.add(node.name)
    if not graph.outputs:
        fail("<graph>", "has no outputs")
    for o in graph.outputs:
        if o not in seen:
            fail(o, "is listed as an output but not defined")


def _check_fixed(name, spec, in_dtypes, node, fail) -> None:
    fixed = [d for d in in_dtypes if isinstance(d, Fix)]
    out = node.type.dtype
    if spec.float_only and (fixed or isinstance(out, Fix)):
        fail(name, f"{node.op} has no fixed-point form; a pass must lower it")
    if not isinstance(out, Fix):
        if fixed:
            fail(name, "fixed-point operands but a float result")
        if spec.fixed_only:
            fail(name, f"{node.op} exists only on fixed-point tensors")
        return
    if len(fixed) != len(in_dtypes):
        fail(name, "mixes float and fixed-point operands")
    rings = {d.ell for d in fixed}
    if len(rings) > 1:
        fail(name, f"operands live in different rings {sorted(rings)}")
    if fixed and out.ell != fixed[0].ell and not (node.op == "trunc" and out.ell < fixed[0].ell):
        fail(name, f"result ring {out.ell} differs from operand ring {fixed[0].ell}")
    if spec.scale is not None and fixed:
        try:
            expect = spec.scale(fixed, node.attrs)
        except _ops.ShapeError as e:
            fail(name, f"{node.op}: {e}")
        if expect != out.scale:
            fail(
                name,
                f"result scale {out.scale} but {node.op} of scales "
                f"{[d.scale for d in fixed]} gives {expect}",
            )
