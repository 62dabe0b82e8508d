"""The public output function recorded in ``graph.meta["output_function"]``.

The compiler removes a final Sigmoid/Softmax from the secure part (DESIGN.md §4, pass 7);
the client applies it in the clear to the revealed logits. Cleartext backend and 2PC client
share this one definition so their outputs agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OUTPUT_FUNCTIONS = ("sigmoid", "softmax", "identity")


def apply_output_function(fn: str, logits: np.ndarray) -> np.ndarray:
    """``fn`` applied to ``logits`` in float64 (softmax over the last axis)."""
    x = np.asarray(logits, np.float64)
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if fn == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
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
