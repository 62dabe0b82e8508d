"""The public view of a compiled IR: what the client bundle holds and the program hash covers.

Invariant (DESIGN.md §1, §6): nothing in the public view depends on the server's weights or
on the calibration inputs. Two compiles of one architecture at the same ℓ and scale give the
same public view, byte for byte, whatever their weights and calibration images. It keeps:

* the op graph in program order: names, ops, operands, attributes, types (shape, ``fix<ℓ,s>``,
  visibility) — all fixed by the architecture, ``--bitlength`` and ``--scale``;
* per-node liveness (``last_use``, ``free``) and ``clamp`` bounds (from Clip attributes);
* graph meta: the input (name, shape, scale, *declared* range, preprocessing), the scale, ℓ,
  the output function, the labels, the reveal declaration (who learns each output), the
  values of public constants (``public_params``: clip bounds, reciprocal window counts) and
  ``overflow_checked`` (whether every overflow is flagged: a compile option, not a value);

and drops everything derived from weights or calibration: per-tensor ``range``/``bits``/
``observed``, ``bits_needed``, ``widest_tensor``, compile settings (calibration file names,
margin), the model file name. A key that is not listed here is dropped, so metadata a pass
adds later stays on the server until someone decides it is public.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graph import Graph

#: Graph meta kept in the public view.
PUBLIC_META = (
    "input",
    "scale",
    "ell",
    "output_function",
    "labels",
    "reveal",
    "public_params",
    "overflow_checked",
)
#: Keys of ``meta["input"]`` kept (the range is the *declared* one, never the calibrated one).
PUBLIC_INPUT = ("name", "shape", "scale", "range", "preprocess")
#: Node meta kept (structural only).
PUBLIC_NODE_META = ("last_use", "free", "clamp")
#: Node meta (server side only) naming the model initializers a *public* value of the node was
#: read from, directly or through the frontend's folding on constants (``T + 1``): a scalar
#: Mul/Div (``mul_const``), a Clip bound, a Pad value. An exporter keeps
#: learned values in initializers (torch: parameters; literals are Constant nodes), so such a
#: value may be learned, and the client bundle holds it (``compile`` prints a note).
FROM_INITIALIZERS = "from_initializers"


def overflow_checked(graph: Graph) -> bool | None:
    """Whether the program flags every overflow it can have (its result is exact or flagged):
    ``meta["overflow_checked"]``, which the compiler sets — False for ``--range-model
    calibrated`` or a network with no ReLU to check, whose ranges come from calibration alone.
    An IR compiled before that key existed: True if it has checked ReLUs (operand 2, the
    server's limit: only the checked range model adds them), else None (cannot tell)."""
    flag = graph.meta.get("overflow_checked")
    if isinstance(flag, bool):
        return flag
    if any(n.op == "relu" and len(n.inputs) == 2 for n in graph.nodes):
        return True
    return None


def unchecked_reason(checked: bool | None) -> str:
    """Why a program whose :func:`overflow_checked` is ``checked`` (False or None) cannot be
    trusted to flag an overflow, as a clause after "the program": the one wording of the
    refusal by ``run client`` and by ``twofold eval``, which each add what it would cost."""
    if checked is None:
        return (
            "does not say whether it flags overflows (compiled by an older twofold: recompile it)"
        )
    return (
        "cannot flag an overflow (compiled with --range-model calibrated, or it has no ReLU to "
        "check)"
    )


def public_from_initializers(graph: Graph) -> list[dict[str, Any]]:
    """The nodes of ``graph`` whose public values came from model initializers (see
    :data:`FROM_INITIALIZERS`), in program order: ``{node, op, initializers}``."""
    return [
        {"node": n.name, "op": n.op, "initializers": list(n.meta[FROM_INITIALIZERS])}
        for n in graph.nodes
        if n.meta.get(FROM_INITIALIZERS)
    ]


def public_params(graph: Graph) -> dict[str, dict[str, Any]]:
    """Values of the public constants (``const`` nodes) as ``{key: {shape, values}}``.

    Taken from ``graph.params`` when present, else from ``meta["public_params"]`` (a graph
    read back without its parameters).
    """
    stored = graph.meta.get("public_params", {})
    out: dict[str, dict[str, Any]] = {}
    for n in graph.nodes:
        if n.op != "const":
            continue
        key = n.attrs["key"]
        if key in graph.params:
            v = np.asarray(graph.params[key])
            v = v.astype(np.int64) if v.dtype.kind in "iub" else v.astype(np.float64)
            out[key] = {"shape": list(v.shape), "values": v.ravel().tolist()}
        elif key in stored:
            out[key] = stored[key]
    return out


def public_ir(graph: Graph) -> Graph:
    """The graph without any weight- or calibration-derived metadata (see the module doc)."""
    g = graph.copy()
    g.params = {}
    meta = {k: graph.meta[k] for k in PUBLIC_META if k in graph.meta}
    if "input" in meta and isinstance(meta["input"], dict):
        meta["input"] = {k: meta["input"][k] for k in PUBLIC_INPUT if k in meta["input"]}
    pp = public_params(graph)
    if pp or "public_params" in meta:
        meta["public_params"] = pp
    g.meta = meta
    for n in g.nodes:
        n.meta = {k: n.meta[k] for k in PUBLIC_NODE_META if k in n.meta}
    for key, pv in pp.items():
        g.params[key] = graph.params.get(key, _array(pv))
    return g


def _array(pv: dict[str, Any]) -> np.ndarray:
    v = np.asarray(pv["values"])
    return (v.astype(np.int64) if v.dtype.kind in "iub" else v).reshape(pv["shape"])


__all__ = [
    "FROM_INITIALIZERS",
    "PUBLIC_INPUT",
    "PUBLIC_META",
    "PUBLIC_NODE_META",
    "public_from_initializers",
    "public_ir",
    "public_params",
]
