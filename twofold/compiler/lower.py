"""Pass ``lower``: rewrite float-only activations and pools into ops the 2PC runtime has.

* ``clip(x, a, b)`` = a + r − relu(r − (b − a)), r = relu(x − a)  (ReLU6: r − relu(r − 6));
* ``leaky_relu(x)`` = α·x + (1 − α)·relu(x)  (two public multiplications);
* ``avgpool`` = sumpool × public reciprocal (a scalar, or a public tensor of
  reciprocal window counts when padding is excluded), ``global_avgpool`` likewise;
* ``mul`` by a public scalar = ``mul_const``.

Invariant established: no ``clip``, ``leaky_relu``, ``avgpool``, ``global_avgpool``
remains (DESIGN.md §4; the 2PC runtime only has ReLU, MaxPool and truncation).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ir.ops import pool_out_dim


def _scalar(g: Graph, value: float, hint: str) -> str:
    return g.add_param(g.fresh_name(hint), np.array(value, np.float32), public=True)


def _lower_clip(g: Graph, node) -> str:  # noqa: ANN001
    """r = relu(x − a); clip = a + r − relu(r − (b − a)).

    Both ReLUs read (a shift of) r, so the truncation of the producing layer sinks below
    the first ReLU and becomes the cheap known-MSB kind.
    """
    x, lo, hi = node.inputs[0], node.attrs["min"], node.attrs["max"]
    n = node.name
    if lo is None and hi is None:
        return x
    if lo is None:  # min(x, b) = x − relu(x − b)
        over = g.add("sub", [x, _scalar(g, hi, n + ".hi")], name=n + "_subhi")
        return g.add("sub", [x, g.add("relu", [over], name=n + "_relu_hi")], name=n + "_min")
    base = x if lo == 0 else g.add("sub", [x, _scalar(g, lo, n + ".lo")], name=n + "_sublo")
    out = g.add("relu", [base], name=n + "_relu")
    if hi is not None:
        over = g.add("sub", [out, _scalar(g, hi - lo, n + ".hi")], name=n + "_subhi")
        r_hi = g.add("relu", [over], name=n + "_relu_hi")
        out = g.add("sub", [out, r_hi], name=n + "_clip")
    if lo != 0:
        out = g.add("add", [out, _scalar(g, lo, n + ".lo2")], name=n + "_addlo")
    return out


def _lower_leaky(g: Graph, node) -> str:  # noqa: ANN001
    x, alpha, n = node.inputs[0], float(node.attrs["alpha"]), node.name
    lin = g.add("mul_const", [x], {"value": alpha, "scale": 0}, name=n + "_lin")
    r = g.add("relu", [x], name=n + "_relu")
    rel = g.add("mul_const", [r], {"value": 1.0 - alpha, "scale": 0}, name=n + "_pos")
    return g.add("add", [lin, rel], name=n + "_leaky")


def _window_counts(shape, attrs: dict, include_pad: bool) -> np.ndarray:  # noqa: ANN001
    _, _, h, w = shape
    kh, kw = attrs["kernel"]
    sh, sw = attrs["strides"]
    pt, pl, pb, pr = attrs["pads"]
    ceil = bool(attrs.get("ceil_mode", 0))
    oh = pool_out_dim(h, kh, sh, pt, pb, 1, ceil)
    ow = pool_out_dim(w, kw, sw, pl, pr, 1, ceil)
    ones = np.zeros((h + pt + pb + kh, w + pl + pr + kw))
    ones[(0 if include_pad else pt) : (pt + h + (pb if include_pad else 0)),
         (0 if include_pad else pl) : (pl + w + (pr if include_pad else 0))] = 1  # fmt: skip
    counts = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            counts[i, j] = ones[i * sh : i * sh + kh, j * sw : j * sw + kw].sum()
    return counts


def _lower_avgpool(g: Graph, node) -> str:  # noqa: ANN001
    x, n = node.inputs[0], node.name
    if node.op == "global_avgpool":
        _, _, h, w = g[x].type.shape
        attrs = {"kernel": [h, w], "strides": [1, 1], "pads": [0, 0, 0, 0]}
        counts = np.full((1, 1), float(h * w))
    else:
        attrs = {k: node.attrs[k] for k in ("kernel", "strides", "pads", "ceil_mode")}
        counts = _window_counts(g[x].type.shape, attrs, bool(node.attrs["count_include_pad"]))
    s = g.add("sumpool", [x], attrs, name=n + "_sum")
    if np.all(counts == counts.flat[0]):
        return g.add("mul_const", [s], {"value": 1.0 / counts.flat[0], "scale": 0}, name=n)
    recip = g.add_param(
        g.fresh_name(n + ".recip"), (1.0 / counts)[None, None].astype(np.float32), True
    )
    return g.add("mul", [s, recip], name=n + "_avg")


def _lower_mul(g: Graph, node) -> str | None:  # noqa: ANN001
    for a, b in (node.inputs, node.inputs[::-1]):
        c = g[b]
        if c.op == "const" and np.asarray(g.params[c.attrs["key"]]).size == 1:
            v = float(np.asarray(g.params[c.attrs["key"]]).reshape(()))
            if g[a].type.shape == node.type.shape:
                return g.add("mul_const", [a], {"value": v, "scale": 0}, name=node.name + "_c")
    return None


def lower(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.nodes:
        if node.op == "clip":
            new = _lower_clip(g, node)
            if new != node.inputs[0]:
                g[new].meta["clamp"] = [node.attrs["min"], node.attrs["max"]]
        elif node.op == "leaky_relu":
            new = _lower_leaky(g, node)
        elif node.op in ("avgpool", "global_avgpool"):
            new = _lower_avgpool(g, node)
        elif node.op == "mul":
            new = _lower_mul(g, node)
            if new is None:
                continue
        else:
            continue
        g.replace_uses(node.name, new)
    g.remove_dead()
    g.toposort()
    return g
