"""The public output function recorded in ``graph.meta["output_function"]``.

The compiler removes a final Sigmoid/Softmax from the secure part (DESIGN.md §4, pass 7);
the client applies it in the clear to the revealed logits. Cleartext backend and 2PC client
share this one definition so their outputs agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OUTPUT_FUNCTIONS = ("sigmoid", "softmax", "log_softmax", "identity")


def softmax_axis(shape: tuple[int, ...]) -> int:
    """The axis the output softmax normalises: the last one of size > 1 (else the last)."""
    ax = len(shape) - 1
    while ax > 0 and shape[ax] == 1:
        ax -= 1
    return max(ax, 0)


def apply_output_function(fn: str, logits: np.ndarray) -> np.ndarray:
    """``fn`` applied to ``logits`` in float64 (softmax over the last axis, not counting
    trailing axes of size 1: SqueezeNet's [1, 1000, 1, 1] is normalised over its 1000)."""
    x = np.asarray(logits, np.float64)
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if fn in ("softmax", "log_softmax"):
        ax = softmax_axis(x.shape)
        z = x - x.max(axis=ax, keepdims=True)
        if fn == "log_softmax":
            return z - np.log(np.exp(z).sum(axis=ax, keepdims=True))
        e = np.exp(z)
        return e / e.sum(axis=ax, keepdims=True)
    if fn == "identity":
        return x
    raise ValueError(f"unknown output function {fn!r}; known: {', '.join(OUTPUT_FUNCTIONS)}")


def invalid_result(name: str) -> dict[str, Any]:
    """The out.json document of a run whose overflow check fired (simulate and 2PC alike): no
    probabilities, the checked tensor at fault (issue 13, compiler/headroom.py)."""
    return {
        "valid": False,
        "overflow_at": f"%{name}",
        "error": f"result invalid: value out of range at %{name}",
    }
