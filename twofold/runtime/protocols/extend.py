"""Ring extension and reduction (SiRNN §3: signed extension from Z_2^ell to Z_2^out_ell).

Extension: the server adds 2^(ell-1) (signed -> unsigned); then x' = x_0' + x_1' - w·2^ell with
w = 1{(2^ell - 1 - x_0') < x_1'} (a millionaires' protocol on ell bits), B2A of w in the ring
2^(out_ell - ell), and the server subtracts 2^(ell-1) again.  Reduction is local (mod 2^out_ell).
"""

from __future__ import annotations

import numpy as np

from ._util import as_ring, mask, wrap
from .b2a import b2a
from .millionaire import millionaire


def extend(party, x: np.ndarray, ell: int, out_ell: int, *, signed: bool = True) -> np.ndarray:  # noqa: ANN001
    """Shares mod 2^out_ell of the same (signed or unsigned) value shared mod 2^ell."""
    x = as_ring(x, ell, "extend input")
    if not ell <= out_ell <= 64:
        raise ValueError(f"extend: out_ell={out_ell} must be in {ell}..64")
    if out_ell == ell:
        return x.copy()
    half = np.uint64(1) << np.uint64(ell - 1)
    xb = wrap(x + half, ell) if (signed and party.is_server) else x
    w = millionaire(party, mask(ell) - xb if party.is_server else xb, ell)
    wa = b2a(party, w, out_ell - ell)
    out = xb - (wa << np.uint64(ell))
    if signed and party.is_server:
        out -= half
    return wrap(out, out_ell)


def reduce(party, x: np.ndarray, ell: int, out_ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares mod 2^out_ell (out_ell <= ell) of x mod 2^out_ell; local, no communication."""
    x = as_ring(x, ell, "reduce input")
    if not 1 <= out_ell <= ell:
        raise ValueError(f"reduce: out_ell={out_ell} must be in 1..{ell}")
    del party
    return wrap(x.copy(), out_ell)
