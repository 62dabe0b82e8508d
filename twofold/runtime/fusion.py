"""Run-time fusion plan: which ReLUs the Executor runs together with the truncation after them.

The IR keeps ``relu`` and ``trunc`` apart (the cleartext interpreter, ``inspect`` and the
compiler's cost model read them as they are); the 2PC run fuses them. A ReLU is fused when its
only reader is a ``trunc`` of kind ``msb0`` that keeps the ring and the ReLU is not an output:
:meth:`Executor.relu` then hands the trunc its input unchanged and :meth:`Executor.trunc` runs
:func:`~twofold.runtime.protocols.relu_trunc.relu_trunc` (one protocol call) on it. The plan is
a function of the public IR alone, so both parties derive the same one.
"""

from __future__ import annotations

from typing import Any


def relu_trunc_plan(graph: Any) -> frozenset[str]:  # noqa: ANN401 - twofold.ir.Graph
    """Names of the ReLU nodes of ``graph`` whose only reader is a fusable ``msb0`` trunc."""
    ell = int(graph.meta.get("ell") or max((n.type.dtype.ell for n in graph.nodes), default=0))
    fused = set()
    for node in graph.nodes:
        if node.op != "relu" or graph.is_output(node.name):
            continue
        users = graph.users(node.name)
        if len(users) != 1:
            continue
        t = graph[users[0]]
        if (
            t.op == "trunc"
            and t.attrs.get("kind") == "msb0"
            and t.inputs.count(node.name) == 1
            and t.type.dtype.ell == ell
            and 0 < int(t.attrs.get("shift", 0)) < ell - 1
        ):
            fused.add(node.name)
    return frozenset(fused)


__all__ = ["relu_trunc_plan"]
