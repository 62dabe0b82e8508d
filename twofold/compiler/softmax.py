"""A softmax inside the network, on secure building blocks (issue 17; SIRNN §5's recipe).

softmax(x)_i = e_i / Σ_j e_j with e = exp(x − max(x)) over one axis:

* max by a halving tree of max(a, b) = b + relu(a − b) over slices (⌈log2 L⌉ ReLU layers;
  an odd element is carried to the next level by concatenation);
* d = x − max ≤ 0 (tagged ``meta.clamp = [None, 0]``: exact, the max is one of the x_j);
* e = ``lut exp_neg`` (ir/lut.py, exp on [−16, 0), saturating at e^−16);
* s = Σ e over the axis (local), r = ``reciprocal`` (s, floor ½): s ≥ e at the maximum's
  position = T[last cell] ≥ e^(−2^-8), so the floor never binds;
* y = e · r (a COT product of two shared tensors); a log-softmax is d − ``log``(s) instead
  (ir/newton.py: the MSB exponent and a table of ln w).

Error against float: |y_i − softmax_i| ≤ softmax_i·(2η + ε) + a few ulps, η = e^(δ/2) − 1 ≈
2e-3 the table's relative error (δ = 2^-8), ε = ir/newton.py's reciprocal bound; a
log-softmax's |Δ| ≤ η + 2^-9 + 2^-s (the log table's bound).
"""

from __future__ import annotations

from ..ir import Graph, Node


def _max_along(g: Graph, x: str, axis: int, hint: str) -> str:
    """max over ``axis`` (kept, size 1) by a halving tree of ReLUs."""
    cur = x
    size = g[x].type.shape[axis]
    while size > 1:
        h = size // 2

        def part(lo: int, hi: int, c: str = cur) -> str:
            return g.add("slice", [c], {"starts": [lo], "ends": [hi], "axes": [axis]},
                         name=f"{hint}_sl")  # fmt: skip

        a, b = part(0, h), part(h, 2 * h)
        diff = g.add("sub", [a, b], name=f"{hint}_d")
        m = g.add("add", [b, g.add("relu", [diff], name=f"{hint}_r")], name=f"{hint}_max")
        if size % 2:
            m = g.add("concat", [m, part(2 * h, size)], {"axis": axis}, name=f"{hint}_cat")
        cur, size = m, h + size % 2
    return cur


def lower_softmax(g: Graph, node: Node) -> str:
    """The secure form of ``node`` (a softmax or log-softmax inside the network); returns the
    new value."""
    x, n = node.inputs[0], node.name
    axis = node.attrs["axis"] % node.type.rank
    m = _max_along(g, x, axis, n)
    d = g.add("sub", [x, m], name=n + "_shift")
    g[d].meta["clamp"] = [None, 0.0]
    e = g.add("lut", [d], {"fn": "exp_neg"}, name=n + "_exp")
    s = g.add("reduce_sum", [e], {"axes": [axis], "keepdims": 1}, name=n + "_sum")
    if node.op == "log_softmax":
        return g.add("sub", [d, g.add("log", [s], {"floor": 0.5}, name=n + "_log")], name=n + "_y")
    r = g.add("reciprocal", [s], {"floor": 0.5}, name=n + "_inv")
    return g.add("mul", [e, r], name=n + "_y")
