"""A product by a server weight that varies along axes other than the channel axis.

The runtime multiplies a shared tensor by a weight per channel (axis 1; ``affine``). A
weight broadcast along other axes (LayerNorm's γ over the last axis, as torch exports it below
opset 17) is moved there: x → transpose (the weight's axes last) → reshape [rows, C] → ``mul``
by the weight as a vector of C → reshape → transpose back. Data movement is free on shares, so
the secure cost is the per-channel product's. Invariant: the value is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node


def per_channel(shape: tuple[int, ...], wshape: tuple[int, ...]) -> bool:
    """True when the weight varies at most along axis 1 of x (what the runtime multiplies)."""
    w = (1,) * (len(shape) - len(wshape)) + tuple(wshape)
    return len(shape) >= 2 and all(d == 1 for i, d in enumerate(w) if i != 1)


def lower_weight_mul(g: Graph, node: Node) -> str | None:
    """The rewrite of ``mul(x, w)`` (a weight broadcast along other axes), or None."""
    for x, w in (node.inputs, node.inputs[::-1]):
        wn = g[w]
        shape = g[x].type.shape
        if wn.op != "weight" or tuple(shape) != tuple(node.type.shape):
            continue
        value = np.asarray(g.params[wn.attrs["key"]])
        if value.ndim > len(shape) or per_channel(shape, value.shape):
            return None
        full = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
        axes = [i for i, d in enumerate(full.shape) if d > 1]
        rest = [i for i in range(len(shape)) if i not in axes]
        perm = rest + axes
        n = node.name
        t = g.add("transpose", [x], {"perm": perm}, name=n + "_t")
        cols = math.prod(shape[i] for i in axes)
        r = g.add("reshape", [t], {"shape": [math.prod(shape[i] for i in rest), cols]},
                  name=n + "_rows")  # fmt: skip
        vec = g.add_param(g.fresh_name(wn.attrs["key"] + ".vec"), full.reshape(cols))
        m = g.add("mul", [r, vec], name=n + "_pc")
        back = g.add("reshape", [m], {"shape": [shape[i] for i in perm]}, name=n + "_unrows")
        return g.add("transpose", [back], {"perm": list(np.argsort(perm))}, name=n + "_ut")
    return None
