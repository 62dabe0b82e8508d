"""Pass ``output_function``: take a final Sigmoid/Softmax out of the secure program.

The client applies the public, monotone function to the revealed logits in the clear
(DESIGN.md §4, pass 7); a sigmoid inside the network becomes a table lookup (``lut``,
SIRNN-style, ir/lut.py), a softmax the secure recipe of ``compiler/softmax.py``. A function
followed only by data movement (reshape, flatten, transpose, e.g. SqueezeNet's softmax over
channels then a reshape) counts as final: the data movement is applied to the logits
instead, provided each softmax group still ends up as one row of the last axis. Invariant
established: no sigmoid/softmax node remains, and ``graph.meta["output_function"]`` maps
each output name to ``"sigmoid"``, ``"softmax"``, ``"log_softmax"`` (over the last axis) or
``"identity"``.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ir.output_function import softmax_axis
from .errors import CompileError
from .softmax import lower_softmax

_MOVES = ("reshape", "flatten", "transpose")
_FUNCTIONS = ("sigmoid", "softmax", "log_softmax")


def _move(op: str, attrs: dict, v: np.ndarray) -> np.ndarray:
    if op == "transpose":
        return v.transpose(attrs["perm"])
    if op == "flatten":
        a = attrs["axis"] % (v.ndim + 1) if v.ndim else 0
        return v.reshape(int(np.prod(v.shape[:a])), -1)
    return v.reshape(attrs["shape"])


def _hoist(g: Graph, o: str) -> None:
    """If output ``o`` is sigmoid/softmax → data movement only, move the function last."""
    chain = []
    cur = g[o]
    while cur.op in _MOVES and len(g.users(cur.inputs[0])) == 1:
        chain.append(cur)
        cur = g[cur.inputs[0]]
    if not chain or cur.op not in _FUNCTIONS or g.is_output(cur.name):
        return
    if cur.op != "sigmoid":
        shape, axis = cur.type.shape, cur.attrs["axis"] % cur.type.rank
        groups = np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), axis, -1)
        labels = np.moveaxis(np.broadcast_to(groups[..., :1], groups.shape), -1, axis)
        for n in reversed(chain):
            labels = _move(n.op, n.attrs, labels)
        labels = np.moveaxis(labels, softmax_axis(labels.shape), -1)
        rows = labels.reshape(-1, labels.shape[-1])
        if labels.shape[-1] != shape[axis] or not np.all(rows == rows[:, :1]):
            return  # the groups no longer lie along the output axis: left for the check below
    g.set_inputs(chain[-1].name, [cur.inputs[0]])
    last = g.add(cur.op, [o], dict(cur.attrs), name=cur.name + "_last")
    if cur.op != "sigmoid":
        g[last].attrs["axis"] = softmax_axis(g[o].type.shape)
    g.outputs[g.outputs.index(o)] = last
    g.remove(cur.name)


def output_function(graph: Graph) -> Graph:
    g = graph.copy()
    fns: dict[str, str] = {}
    outs = []
    for o in list(g.outputs):
        _hoist(g, o)
    for o in g.outputs:
        node = g[o]
        fn = "identity"
        if node.op in _FUNCTIONS and g.users(o) == []:
            axis = node.attrs.get("axis", -1) % node.type.rank
            if node.op != "sigmoid" and axis != softmax_axis(node.type.shape):
                raise CompileError(
                    f"{node.op} %{o} over axis {node.attrs['axis']}: only the last axis "
                    "(not counting trailing axes of size 1)"
                )
            fn, o = node.op, node.inputs[0]
        outs.append(o)
        fns[o] = fn
    g.outputs = outs
    g.remove_dead()
    for n in list(g.nodes):
        if n.op == "sigmoid":  # inside the network: by table lookup (ir/lut.py)
            new = g.add("lut", n.inputs, {"fn": "sigmoid"}, name=n.name + "_lut")
            g.replace_uses(n.name, new)
            g.remove(n.name)
        elif n.op in ("softmax", "log_softmax"):  # inside: max, exp table, sum, 1/s or log s
            new = lower_softmax(g, n)
            g.replace_uses(n.name, new)
            g.remove(n.name)
    g.toposort()
    for n in g.nodes:
        if n.op in _FUNCTIONS:
            raise CompileError(
                f"%{n.name}: {n.op} inside the network has no secure form; "
                "only a final one (or one followed by reshapes) is supported"
            )
    g.meta["output_function"] = fns
    return g
