"""Pass ``output_function``: take a final Sigmoid/Softmax out of the secure program.

The client applies the public, monotone function to the revealed logits in the clear
(DESIGN.md §4, pass 7). Invariant established: no sigmoid/softmax node remains, and
``graph.meta["output_function"]`` maps each output name to ``"sigmoid"``, ``"softmax"``
(over the last axis) or ``"identity"``.
"""

from __future__ import annotations

from ..ir import Graph
from .errors import CompileError


def output_function(graph: Graph) -> Graph:
    g = graph.copy()
    fns: dict[str, str] = {}
    outs = []
    for o in g.outputs:
        node = g[o]
        fn = "identity"
        if node.op in ("sigmoid", "softmax") and g.users(o) == []:
            if node.op == "softmax" and node.attrs["axis"] not in (-1, node.type.rank - 1):
                raise CompileError(
                    f"softmax %{o} over axis {node.attrs['axis']}: only the last axis"
                )
            fn, o = node.op, node.inputs[0]
        outs.append(o)
        fns[o] = fn
    g.outputs = outs
    g.remove_dead()
    for n in g.nodes:
        if n.op in ("sigmoid", "softmax"):
            raise CompileError(
                f"%{n.name}: {n.op} inside the network has no secure form; "
                "only a final sigmoid/softmax is supported"
            )
    g.meta["output_function"] = fns
    return g
