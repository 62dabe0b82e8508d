"""MSB and DReLU of an additively shared value (CrypTFlow2 §3.2, Algorithm 2).

With x = a0 + a1 mod 2^ell and a_i' = a_i mod 2^(ell-1):
MSB(x) = msb(a0) ^ msb(a1) ^ carry, carry = 1{a0' + a1' >= 2^(ell-1)}
= 1{(2^(ell-1) - 1 - a0') < a1'}, one millionaires' protocol on ell-1 bits.
DReLU(x) = 1 ^ MSB(x) = 1{signed(x) >= 0}.
"""

from __future__ import annotations

import numpy as np

from ._util import as_ring, mask
from .millionaire import millionaire


def msb(party, x: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Boolean shares (uint8) of the most significant bit of the shared x mod 2^ell."""
    x = as_ring(x, ell)
    low = x & mask(ell - 1) if ell > 1 else np.zeros_like(x)
    top = ((x >> np.uint64(ell - 1)) & np.uint64(1)).astype(np.uint8)
    val = (mask(ell - 1) - low) if (party.is_server and ell > 1) else low
    return top ^ millionaire(party, val, ell - 1)


def drelu(party, x: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Boolean shares (uint8) of 1{signed(x) >= 0}."""
    b = msb(party, x, ell)
    if party.is_server:
        b ^= 1
    return b
