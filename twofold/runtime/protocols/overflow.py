"""In-protocol overflow detection for checked ReLUs (issue 13; compiler/headroom.py).

``exceeds``: boolean shares of 1{signed(x) ≥ limit} per element, with the limit private to
the server: the server subtracts it from its share and both run DReLU (CrypTFlow2 §3.2,
Algorithm 2) on x − limit, which cannot wrap because the compiler sized ℓ so that every value
of x and every limit lies below 2^(ℓ−2) in magnitude. The client's inputs do not depend on the
limit, so it learns nothing of it.

``any_of``: the OR of each group of boolean-shared bits, one shared bit per group, by a tree
of ANDs with Beaver bit triples (a ∨ b = ¬(¬a ∧ ¬b); the server negates its shares): one round
per level for all groups together, in chunks so that memory stays bounded. Only these per-
ReLU bits are opened, to the client alone (``Executor.verdict``).
"""

from __future__ import annotations

import numpy as np

from ._util import CHUNK, as_ring
from .and_ import and_
from .drelu import drelu

#: Run each checked ReLU's check with the ReLU's own millionaire (protocols/relu_check.py) where
#: its grain allows; False runs every check apart with ``exceeds`` (the former path, kept for
#: benchmarks/headroom.py to measure old against new in one run; both parties must agree).
MERGED = True

#: ANDs per call of the OR tree (each call is one round; bounds triple generation memory).
OR_CHUNK = 1 << 18


def exceeds(party, x: np.ndarray, limit: np.ndarray | None, ell: int) -> np.ndarray:  # noqa: ANN001
    """Boolean shares (uint8, x's shape) of 1{signed(x) ≥ limit}; the server passes the signed
    integer ``limit`` (broadcastable to x), the client ``None``."""
    x = as_ring(x, ell, "checked value")
    if party.is_server:
        lim = np.broadcast_to(np.asarray(limit, np.int64), x.shape).view(np.uint64)
        x = (x - lim) & np.uint64((1 << ell) - 1 if ell < 64 else 0xFFFFFFFFFFFFFFFF)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, np.uint8)
    for lo in range(0, flat.size, CHUNK):
        out[lo : lo + CHUNK] = drelu(party, flat[lo : lo + CHUNK], ell)
    return out.reshape(x.shape)


def any_of(party, groups: list[np.ndarray]) -> np.ndarray:  # noqa: ANN001
    """One boolean share per group: the OR of the group's shared bits (empty group: 0)."""
    flip = np.uint8(1 if party.is_server else 0)
    cur = [np.asarray(g, np.uint8).reshape(-1) ^ flip for g in groups]  # work on negations
    while any(c.size > 1 for c in cur):
        us, vs, plan = [], [], []
        for c in cur:
            m = c.size // 2
            us.append(c[0 : 2 * m : 2])
            vs.append(c[1 : 2 * m : 2])
            plan.append((m, c[2 * m :]))
        u, v = np.concatenate(us), np.concatenate(vs)
        z = np.empty_like(u)
        for lo in range(0, u.size, OR_CHUNK):
            z[lo : lo + OR_CHUNK] = and_(party, u[lo : lo + OR_CHUNK], v[lo : lo + OR_CHUNK])
        nxt, at = [], 0
        for m, rest in plan:
            nxt.append(np.concatenate([z[at : at + m], rest]))
            at += m
        cur = nxt
    out = np.array([c[0] if c.size else flip for c in cur], np.uint8)
    return out ^ flip
