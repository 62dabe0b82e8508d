"""Pass ``fold_bn``: remove every ``batchnorm``.

A BN whose input is a Conv/Gemm used by nothing else is folded into that layer's weight
and bias (W' = W·γ/σ, b' = (b − μ)·γ/σ + β). Every other BN (DenseNet's pre-activation
BN) becomes ``affine(x, mul, add)`` with server-private per-channel vectors, which the
2PC runtime evaluates as a multiplication by a server vector (DESIGN.md §4, pass 2).
Invariant established: no ``batchnorm`` node remains.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph
from .errors import CompileError


def _bn_vectors(g: Graph, node) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    vals = []
    for i in node.inputs[1:]:
        src = g[i]
        if src.op not in ("weight", "const"):
            raise CompileError(
                f"batchnorm %{node.name}: parameter %{i} is computed at run time, "
                "only constant BN statistics are supported"
            )
        vals.append(np.asarray(g.params[src.attrs["key"]], np.float64))
    gamma, beta, mean, var = vals
    mul = gamma / np.sqrt(var + node.attrs["epsilon"])
    return mul, beta - mean * mul


def _foldable(g: Graph, node) -> bool:  # noqa: ANN001
    prod = g[node.inputs[0]]
    if prod.op not in ("conv2d", "gemm") or g.users(prod.name) != [node.name]:
        return False
    if g.is_output(prod.name) or g[prod.inputs[1]].op != "weight":
        return False
    if len(prod.inputs) == 3 and g[prod.inputs[2]].op not in ("weight", "const"):
        return False
    return prod.op == "conv2d" or len(g[prod.inputs[1]].type.shape) == 2


def fold_bn(graph: Graph) -> Graph:
    g = graph.copy()
    for node in g.nodes:
        if node.op != "batchnorm":
            continue
        mul, add = _bn_vectors(g, node)
        if _foldable(g, node):
            prod = g[node.inputs[0]]
            w = np.asarray(g.params[g[prod.inputs[1]].attrs["key"]], np.float64)
            cout = w.shape[0] if prod.op == "conv2d" else w.shape[1]
            b = (
                np.asarray(g.params[g[prod.inputs[2]].attrs["key"]], np.float64)
                if len(prod.inputs) == 3
                else np.zeros(cout)
            )
            if b.shape != (cout,):
                b = np.broadcast_to(b, (1, cout)).reshape(cout)
            if prod.op == "conv2d":
                w = w * mul[:, None, None, None]
            else:
                w = w * mul[None, :]
            wk = g.add_param(g.fresh_name(prod.name + ".w_bn"), w.astype(np.float32))
            bk = g.add_param(g.fresh_name(prod.name + ".b_bn"), (b * mul + add).astype(np.float32))
            g.set_inputs(prod.name, [prod.inputs[0], wk, bk])
            g.replace_uses(node.name, prod.name)
        else:
            mk = g.add_param(g.fresh_name(node.name + ".mul"), mul.astype(np.float32))
            ak = g.add_param(g.fresh_name(node.name + ".add"), add.astype(np.float32))
            aff = g.add("affine", [node.inputs[0], mk, ak], name=node.name + "_affine")
            g.replace_uses(node.name, aff)
    g.remove_dead()
    g.toposort()
    return g
