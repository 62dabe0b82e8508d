"""The client's input check: an input outside the range the program was compiled for is
refused before anything else happens (DESIGN.md §6, "no silent wrong answer").

The compiler sizes every tensor from the *declared* input range (``meta["input"]["range"]``,
carried by both bundles); an input outside it may overflow the ring and give a wrong answer
that nothing in the protocol would notice. The check compares the quantized input
``rint(x·2^s)`` with the quantized range ``[floor(lo·2^s), ceil(hi·2^s)]``, exactly the
interval the range analysis starts from, so an input that passes is one the analysis covered.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class InputOutOfRange(ValueError):
    """The input (after preprocessing) leaves the declared range; names the file and both ranges.

    ``reason`` is the machine-readable tag evaluation records carry ("input_out_of_range").
    """

    reason = "input_out_of_range"

    def __init__(self, message: str, found: tuple[float, float], expected: tuple[float, float]):
        super().__init__(message)
        self.found = found
        self.expected = expected


def quantized_bounds(lo: float, hi: float, scale: int) -> tuple[int, int]:
    """The integer range [floor(lo·2^s), ceil(hi·2^s)] an input may take at scale s."""
    return math.floor(lo * 2.0**scale), math.ceil(hi * 2.0**scale)


def check_input_range(x: np.ndarray, meta: dict[str, Any], source: str) -> None:
    """Raise :class:`InputOutOfRange` (or ValueError for NaN/inf) unless every value of ``x``
    lies in the declared range of ``meta`` at its scale. No range declared: nothing to check."""
    rng = meta.get("range")
    if rng is None or np.size(x) == 0:
        return
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"input {source} has non-finite values (NaN or infinity)")
    lo, hi = float(rng[0]), float(rng[1])
    scale = int(meta.get("scale", 0))
    qlo, qhi = quantized_bounds(lo, hi, scale)
    q = np.rint(x * 2.0**scale)
    if q.min() >= qlo and q.max() <= qhi:
        return
    found = (float(x.min()), float(x.max()))
    n_out = int(np.count_nonzero((q < qlo) | (q > qhi)))
    raise InputOutOfRange(
        f"input {source} is outside the range the program was compiled for: values span "
        f"[{found[0]:.6g}, {found[1]:.6g}] after preprocessing "
        f"({meta.get('preprocess', 'none')}), expected [{lo:.6g}, {hi:.6g}] "
        f"({n_out} of {x.size} values outside); refused before any traffic "
        "(raw pixels not normalised? compile with the matching --preprocess/--input-range)",
        found,
        (lo, hi),
    )
