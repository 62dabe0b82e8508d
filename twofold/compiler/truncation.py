"""Pass ``truncation``: make the eager truncations lazy and mark the cheap ones.

Rules (DESIGN.md §4, pass 5; CrypTFlow2 §5):

* sink a ``trunc`` below its only user when that user is a ReLU, MaxPool,
  reshape/flatten/transpose, zero padding or a power-of-two rescale (``mul_const``
  with value 1): fewer elements are truncated, and after a ReLU the input is known
  non-negative. These commute with the floor shift exactly. Not past a SumPool: the
  sum at scale 2s would need log2(window) more ring bits;
* merge ``trunc(trunc(x, a), b)`` into ``trunc(x, a + b)`` (floor division composes);
* merge ``add/sub/concat`` whose operands are all single-use truncations by the same
  shift into one truncation of the sum;
* round to nearest at no protocol cost: 2^(shift−1) is added to the bias of the product
  a truncation reads through ReLU/MaxPool/data movement (x + h commutes with max, and
  relu(x + h) >> k = relu(x) + h >> k because h < 2^k), so floor becomes rounding;
* ``kind = "msb0"`` when the operand is non-negative (ReLU output, or max/sum/data
  movement of non-negative tensors), else ``"faithful"``.

Invariant established: every ``trunc`` has ``kind`` set soundly, and no trunc sits
directly before an op it commutes with.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, TensorType, Visibility

_UNARY = {"relu", "maxpool", "flatten", "reshape", "transpose", "slice"}
_MERGE = {"add", "sub", "concat"}
_NONNEG_KEEP = {"maxpool", "sumpool", "flatten", "reshape", "transpose", "concat", "trunc"}
_NONNEG_KEEP |= {"slice", "reduce_sum"}


def _sinkable(g: Graph, user) -> bool:  # noqa: ANN001
    if user.op in _UNARY:
        return True
    if user.op == "pad":
        return float(user.attrs.get("value", 0.0)) == 0.0 or user.attrs.get("mode") is not None
    return user.op == "mul_const" and user.attrs["value"] == 1


def _retype(g: Graph, name: str, scale: int) -> None:
    node = g[name]
    node.type = node.type.with_(dtype=type(node.type.dtype)(node.type.dtype.ell, scale))


def _users(g: Graph, name: str) -> list[str]:
    return list(dict.fromkeys(g.nx_graph().successors(name)))


def _sink_sweep(g: Graph) -> bool:
    changed = False
    for t in g.nodes:
        if t.op == "trunc" and t.name in g and _sink_one(g, t):
            changed = True
    return changed


def _sink_one(g: Graph, t) -> bool:  # noqa: ANN001
    src = t.inputs[0]
    users = _users(g, t.name)
    if g.is_output(t.name) or len(users) != 1:
        return False
    u = g[users[0]]
    shift = t.attrs["shift"]
    if g[src].op == "trunc" and len(_users(g, src)) == 1 and not g.is_output(src):
        inner = g[src]
        g.set_inputs(t.name, [inner.inputs[0]])
        t.attrs["shift"] = shift + inner.attrs["shift"]
        g.remove(src)
        return True
    if _sinkable(g, u) and len(u.inputs) == 1:
        g.set_inputs(u.name, [src])
        _retype(g, u.name, u.type.dtype.scale + shift)
        g.replace_uses(u.name, t.name)
        g.set_inputs(t.name, [u.name])
        t.type = u.type.with_(dtype=t.type.dtype)
        _retype(g, t.name, u.type.dtype.scale - shift)
        return True
    if u.op in _MERGE:
        ops = [g[i] for i in u.inputs]
        if all(
            o.op == "trunc"
            and o.attrs["shift"] == shift
            and _users(g, o.name) == [u.name]
            and not g.is_output(o.name)
            and u.inputs.count(o.name) == 1
            for o in ops
        ):
            g.set_inputs(u.name, [o.inputs[0] for o in ops])
            _retype(g, u.name, u.type.dtype.scale + shift)
            new = g.add("trunc", [u.name], dict(t.attrs), type=u.type, name=u.name + "_t")
            g.replace_uses(u.name, new)
            g.set_inputs(new, [u.name])
            _retype(g, new, u.type.dtype.scale - shift)
            for o in ops:
                g.remove(o.name)
            return True
    return False


_ROUND_THROUGH = {"relu", "maxpool", "flatten", "reshape", "transpose"}
_BIASED = {"conv2d": 2, "gemm": 2, "affine": 2}


def _round_to_nearest(g: Graph, t) -> None:  # noqa: ANN001
    """Add 2^(shift-1) to the bias of the product feeding trunc ``t``, if it is private to it."""
    src = g[t.inputs[0]]
    while src.op in _ROUND_THROUGH and len(_users(g, src.name)) == 1:
        src = g[src.inputs[0]]
    if src.op not in _BIASED or len(_users(g, src.name)) != 1 or g.is_output(src.name):
        return
    if src.type.dtype.scale != t.type.dtype.scale + t.attrs["shift"]:
        return
    half = 1 << (t.attrs["shift"] - 1)
    pos = _BIASED[src.op]
    ty = src.type
    if len(src.inputs) > pos:
        b = g[src.inputs[pos]]
        if b.op != "weight" or len(_users(g, b.name)) != 1:
            return
        g.params[b.attrs["key"]] = np.asarray(g.params[b.attrs["key"]], np.int64) + half
        return
    n = ty.shape[1] if src.op != "gemm" else ty.shape[-1]
    key = g.fresh_name(src.name + ".round")
    b = g.add_param(key, np.full(n, half, np.int64))
    g[b].type = TensorType((n,), ty.dtype, Visibility.SERVER)
    g.set_inputs(src.name, [*src.inputs, b])


def nonnegative(g: Graph) -> set[str]:
    """Names of tensors known to be ≥ 0 from the graph structure alone."""
    nonneg: set[str] = set()
    for n in g.nodes:
        if n.op == "relu" or (n.op in _NONNEG_KEEP and all(i in nonneg for i in n.inputs)):
            nonneg.add(n.name)
        elif (
            n.op == "pad"
            and n.inputs[0] in nonneg
            and (float(n.attrs.get("value", 0)) >= 0 or n.attrs.get("mode") is not None)
        ):
            nonneg.add(n.name)
    return nonneg


def truncation(graph: Graph) -> Graph:
    g = graph.copy()
    if not any(n.op == "trunc" for n in g.nodes):
        return g
    while _sink_sweep(g):
        pass
    g.toposort()
    for t in [n for n in g.nodes if n.op == "trunc"]:
        _round_to_nearest(g, t)
    g.toposort()
    nonneg = nonnegative(g)
    for n in g.nodes:
        if n.op == "trunc":
            n.attrs["kind"] = "msb0" if n.inputs[0] in nonneg else "faithful"
    return g
