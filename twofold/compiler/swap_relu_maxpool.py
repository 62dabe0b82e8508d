"""Pass ``swap_relu_maxpool``: relu → maxpool becomes maxpool → relu.

Both orders compute the same values (max and ReLU are monotone), but the ReLU then runs
on the pooled, smaller tensor (DESIGN.md §4, pass 3; CrypTFlow2 §6). Only done when the
ReLU output has no other user, so no ReLU is duplicated. Invariant established: no
maxpool reads a single-use ReLU.
"""

from __future__ import annotations

from ..ir import Graph


def swap_relu_maxpool(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.nodes:
        if node.op != "maxpool":
            continue
        r = g[node.inputs[0]]
        if r.op != "relu" or g.users(r.name) != [node.name] or g.is_output(r.name):
            continue
        pooled = g.add("maxpool", [r.inputs[0]], dict(node.attrs), name=node.name + "_pre")
        relu = g.add("relu", [pooled], name=r.name + "_post")
        g.replace_uses(node.name, relu)
    g.remove_dead()
    g.toposort()
    return g
