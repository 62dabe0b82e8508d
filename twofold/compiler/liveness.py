"""Pass ``liveness``: record where each run-time tensor dies.

Every non-parameter node gets ``meta["last_use"]`` (the name of its last reader in
program order, or null for outputs and unread values) and every node gets
``meta["free"]``: the tensors whose last use it is, so an emitted program can ``del``
them right after it (DESIGN.md §4, pass 8). Outputs are never freed.
"""

from __future__ import annotations

from ..ir import Graph


def liveness(graph: Graph) -> Graph:
    g = graph.copy()
    order = {n.name: i for i, n in enumerate(g.nodes)}
    last: dict[str, str | None] = {}
    for node in g.nodes:
        if node.op in ("weight", "const"):
            continue
        readers = list(g.nx_graph().successors(node.name))
        last[node.name] = (
            None if g.is_output(node.name) or not readers else max(readers, key=order.__getitem__)
        )
    free: dict[str, list[str]] = {n.name: [] for n in g.nodes}
    for name, user in last.items():
        g[name].meta["last_use"] = user
        if user is not None:
            free[user].append(name)
    for node in g.nodes:
        node.meta["free"] = free[node.name]
    return g
