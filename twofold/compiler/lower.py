"""Pass ``lower``: rewrite float-only activations and pools into ops the 2PC runtime has.

* ``clip(x, a, b)`` = a + r − relu(r − (b − a)), r = relu(x − a)  (ReLU6: r − relu(r − 6));
* ``leaky_relu(x)`` = α·x + (1 − α)·relu(x)  (two public multiplications);
* ``avgpool`` = sumpool × public reciprocal (a scalar — as 2^-t × (2^t / count), see
  :func:`_mean_of_sum` — or a public tensor of reciprocal window counts when padding is
  excluded), ``global_avgpool`` likewise;
* ``mul`` by a public scalar = ``mul_const``;
* ``max(a, b)`` = b + relu(a − b), ``min(a, b)`` = a − relu(a − b), ``abs(x)`` =
  2·relu(x) − x, ``prelu(x, α)`` = relu(x) + α·(x − relu(x)) with the server's slope α
  a weight of the elementwise product: comparisons on the existing ReLU (millionaires'
  + MUX), so 2PC stays bit-exact through existing ops.

Invariant established: no ``clip``, ``leaky_relu``, ``avgpool``, ``global_avgpool``,
``max``, ``min``, ``abs``, ``prelu`` remains (DESIGN.md §4; the 2PC runtime only has
ReLU, MaxPool and truncation). A product by a weight that varies along axes other than
the channel is moved onto the channel axis (``weight_axes.py``).
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ir.ops import pool_out_dim
from ..ir.public import FROM_INITIALIZERS
from .errors import CompileError
from .weight_axes import lower_weight_mul


def _scalar(g: Graph, value: float, hint: str) -> str:
    return g.add_param(g.fresh_name(hint), np.array(value, np.float32), public=True)


def _lower_clip(g: Graph, node) -> str:  # noqa: ANN001
    """r = relu(x − a); clip = a + r − relu(r − (b − a)).

    Both ReLUs read (a shift of) r, so the truncation of the producing layer sinks below
    the first ReLU and becomes the cheap known-MSB kind.
    """
    x, lo, hi = node.inputs[0], node.attrs["min"], node.attrs["max"]
    n = node.name
    origin = node.meta.get(FROM_INITIALIZERS)

    def bound(value: float, hint: str) -> str:  # a public scalar; the bounds' origin goes along
        key = _scalar(g, value, hint)
        if origin:
            g[key].meta[FROM_INITIALIZERS] = list(origin)
        return key

    if lo is None and hi is None:
        return x
    if lo is None:  # min(x, b) = x − relu(x − b)
        over = g.add("sub", [x, bound(hi, n + ".hi")], name=n + "_subhi")
        return g.add("sub", [x, g.add("relu", [over], name=n + "_relu_hi")], name=n + "_min")
    base = x if lo == 0 else g.add("sub", [x, bound(lo, n + ".lo")], name=n + "_sublo")
    out = g.add("relu", [base], name=n + "_relu")
    if hi is not None:
        over = g.add("sub", [out, bound(hi - lo, n + ".hi")], name=n + "_subhi")
        r_hi = g.add("relu", [over], name=n + "_relu_hi")
        # bounded by the check of ``out``'s ReLU: no calibration-scaled limit of its own
        g[r_hi].meta["bounded_by"] = out
        out = g.add("sub", [out, r_hi], name=n + "_clip")
    if lo != 0:
        out = g.add("add", [out, bound(lo, n + ".lo2")], name=n + "_addlo")
    return out


def _lower_leaky(g: Graph, node) -> str:  # noqa: ANN001
    x, alpha, n = node.inputs[0], float(node.attrs["alpha"]), node.name
    lin = g.add("mul_const", [x], {"value": alpha, "scale": 0}, name=n + "_lin")
    r = g.add("relu", [x], name=n + "_relu")
    rel = g.add("mul_const", [r], {"value": 1.0 - alpha, "scale": 0}, name=n + "_pos")
    return g.add("add", [lin, rel], name=n + "_leaky")


def _lower_compare(g: Graph, node) -> str:  # noqa: ANN001
    """max(a, b) = b + relu(a − b); min(a, b) = a − relu(a − b)."""
    a, b = node.inputs
    n = node.name
    r = g.add("relu", [g.add("sub", [a, b], name=n + "_diff")], name=n + "_relu")
    if node.op == "max":
        return g.add("add", [b, r], name=n + "_max")
    return g.add("sub", [a, r], name=n + "_min")


def _lower_abs(g: Graph, node) -> str:  # noqa: ANN001
    x, n = node.inputs[0], node.name
    r = g.add("relu", [x], name=n + "_relu")
    two = g.add("mul_const", [r], {"value": 2.0, "scale": 0}, name=n + "_2relu")
    return g.add("sub", [two, x], name=n + "_abs")


def _lower_prelu(g: Graph, node) -> str:  # noqa: ANN001
    """relu(x) + α·(x − relu(x)); α is broadcast to one value per channel (axis 1), the
    form the linear protocols multiply by (a public α stays a public product)."""
    x, slope, n = node.inputs[0], node.inputs[1], node.name
    shape = g[x].type.shape
    s_node = g[slope]
    if s_node.op in ("weight", "const"):
        v = np.asarray(g.params[s_node.attrs["key"]], np.float32)
        ch = shape[1] if len(shape) >= 2 else 1
        full = np.broadcast_to(v, shape) if v.ndim <= len(shape) else None
        if full is None:
            raise CompileError(f"%{n}: PRelu slope {list(v.shape)} does not fit {list(shape)}")
        per = np.moveaxis(full, 1, 0).reshape(ch, -1) if len(shape) >= 2 else full.reshape(1, -1)
        if not np.all(per == per[:, :1]):
            raise CompileError(
                f"%{n}: PRelu slope of shape {list(v.shape)} varies within a channel; "
                "only one slope per channel (axis 1) is supported"
            )
        vec = per[:, 0].reshape((ch,) + (1,) * max(len(shape) - 2, 0))
        slope = g.add_param(
            g.fresh_name(s_node.attrs["key"] + ".c"), vec, public=s_node.op == "const"
        )
    r = g.add("relu", [x], name=n + "_relu")
    neg = g.add("sub", [x, r], name=n + "_neg")
    return g.add("add", [r, g.add("mul", [neg, slope], name=n + "_scaled")], name=n + "_prelu")


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


def _mean_of_sum(g: Graph, s: str, count: int, n: str) -> str:
    """sum / count as ``mul_const(2^-t)`` (an exact power-of-two rescale: a truncation by t)
    then ``mul_const(2^t / count)`` with t = floor(log2 count), so the second factor lies in
    (½, 1] and keeps the scale's full precision. One factor 1/count at scale s would round
    to round(2^s / count): 0 for a 112² squeeze-excitation pool at s = 11 (EfficientNet-B0 at
    224²), 42 for 1/49 (0.5 % off); the split's error is one unit in the last place."""
    t = count.bit_length() - 1
    if count == 1 << t:
        return g.add("mul_const", [s], {"value": 1.0 / count, "scale": 0}, name=n)
    half = g.add("mul_const", [s], {"value": 2.0**-t, "scale": 0}, name=n + "_pow2")
    return g.add("mul_const", [half], {"value": 2.0**t / count, "scale": 0}, name=n)


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
        return _mean_of_sum(g, s, int(counts.flat[0]), n)
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
    return lower_weight_mul(g, node)


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
        elif node.op in ("max", "min"):
            new = _lower_compare(g, node)
        elif node.op == "abs":
            new = _lower_abs(g, node)
            g[new].meta["clamp"] = [0.0, None]  # |x| ≥ 0 (a divisor 1 + |x| is positive)
        elif node.op == "prelu":
            new = _lower_prelu(g, node)
        else:
            continue
        g.replace_uses(node.name, new)
    g.remove_dead()
    g.toposort()
    return g
