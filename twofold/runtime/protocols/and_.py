"""AND of boolean-shared bits with Beaver bit triples (CrypTFlow2 §3.1.1).

Given triples a & b = c, both parties open d = u ^ a and e = v ^ b (2 bits each way per AND)
and set z = c ^ d·b ^ e·a (^ d·e at the server); z0 ^ z1 = u & v.
"""

from __future__ import annotations

import numpy as np

from ._util import as_bits, exchange_bits
from .triples import bit_triples

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


def and_(party, u: np.ndarray, v: np.ndarray, triples: Triples | None = None) -> np.ndarray:  # noqa: ANN001
    """Boolean shares of u AND v (same shape); one round once the triples exist."""
    u = as_bits(u, "AND operand u")
    v = as_bits(v, "AND operand v")
    if u.shape != v.shape:
        raise ValueError(f"AND operands differ in shape: {u.shape} vs {v.shape}")
    n = u.size
    a, b, c = triples if triples is not None else bit_triples(party, n)
    if a.size != n:
        raise ValueError(f"AND needs {n} triples, got {a.size}")
    mine = np.concatenate([u.reshape(-1) ^ a, v.reshape(-1) ^ b])
    both = mine ^ exchange_bits(party, mine)
    d, e = both[:n], both[n:]
    z = c ^ (d & b) ^ (e & a)
    if party.is_server:
        z ^= d & e
    return z.reshape(u.shape)


def and_level(
    party,
    u: np.ndarray,
    v: np.ndarray,
    pu: np.ndarray,
    pv1: np.ndarray,  # noqa: ANN001
    pv2: np.ndarray,
    triples: Triples,
    ctriples: tuple,
) -> tuple:  # noqa: ANN001
    """In ONE round: u & v (independent triples) and pu & pv1, pu & pv2 (correlated triple
    pairs sharing a: pu is opened once).  All arguments flat uint8 arrays."""
    a, b, c = triples
    ca, cb1, cb2, cc1, cc2 = ctriples
    mine = np.concatenate([u ^ a, v ^ b, pu ^ ca, pv1 ^ cb1, pv2 ^ cb2])
    op = mine ^ exchange_bits(party, mine)
    n, m = u.size, pu.size
    d, e = op[:n], op[n : 2 * n]
    pd, pe1, pe2 = op[2 * n : 2 * n + m], op[2 * n + m : 2 * n + 2 * m], op[2 * n + 2 * m :]
    z = c ^ (d & b) ^ (e & a)
    z1 = cc1 ^ (pd & cb1) ^ (pe1 & ca)
    z2 = cc2 ^ (pd & cb2) ^ (pe2 & ca)
    if party.is_server:
        z ^= d & e
        z1 ^= pd & pe1
        z2 ^= pd & pe2
    return z, z1, z2
