"""Single-point correlated OT from GGM trees, semi-honest (Ferret §4, Fig. 6 without the
consistency check; Boyle-Couteau-Gilboa-Ishai-Kohl-Scholl, CCS 2019, for the punctured PRF).

t instances at once, each over 2^h positions. Inputs are t*h base COTs with the global offset
Delta: the sender holds q (uint64[t*h, 2]), the receiver random choice bits b and
w = q ^ b*Delta (COT index ``i * t + j`` serves level i + 1 of tree j). Outputs: the sender
gets the GGM leaves s (uint64[2^h * t, 2], row ``slot * t + tree``), the receiver one position
alpha_j per tree and r = s ^ e*Delta, e the indicator of the positions.

The receiver's path bits are a_i = 1 - b_i, so alpha is uniform and hidden without any message
from the receiver (no derandomisation bits); per level the sender sends the two side sums
masked by the correlation-robust hash, H(q) ^ K^0 and H(q ^ Delta) ^ K^1, and the receiver
unmasks K^{b_i} = K^{1 - a_i}, the side that does not contain its path. Last, the sender sends
psi_j = Delta ^ XOR of tree j's leaves, from which the receiver gets r at alpha_j =
s_alpha ^ Delta. Traffic: t * (2h + 1) blocks, sender to receiver, in two flights (no round
trip): the sums of the levels before the last as soon as they are known, then the last
level's and psi, so that the receiver rebuilds its trees while the sender finishes its own.
Semi-honest: a corrupt sender could only send inconsistent sums, which the malicious version's
check catches and which this threat model excludes (SECURITY.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..prg import PRG
from .crhash import crhash
from .ggm import PuncturedTrees, expand_level, path_slots, tree_buffer


def spcot_send(
    chan,  # noqa: ANN001 - Channel
    q: np.ndarray,
    delta: np.ndarray,
    t: int,
    h: int,
    index0: int,
    domain: int,
    buf: np.ndarray | None = None,
    after: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Sender side; returns the leaves s (a view of ``buf``, a ``ggm.tree_buffer``, new if
    None). Hash tweaks are index0 .. index0 + t*h - 1. ``after`` runs as the last level is
    written (``ggm.expand_level``)."""
    if q.shape != (t * h, 2):
        raise ValueError(f"spcot: need {t * h} base COTs, got {q.shape[0]}")
    d = np.asarray(delta, np.uint64).reshape(1, 2)
    h0 = crhash(q, index0, domain)
    h1 = crhash(q ^ d, index0, domain)
    buf = tree_buffer(t, h) if buf is None else buf
    buf[:t] = PRG().block(t)
    sums = np.empty((h, 2, t, 2), np.uint64)
    head = (h - 1) * t  # the COTs of the levels before the last
    for i in range(h - 1):
        expand_level(buf, (1 << i) * t, t, sums[i])
    if h > 1:  # the first flight: the receiver rebuilds these levels while the last expands
        msg = np.empty((2 * head, 2), np.uint64)
        msg[:head] = h0[:head] ^ sums[: h - 1, 0].reshape(head, 2)
        msg[head:] = h1[:head] ^ sums[: h - 1, 1].reshape(head, 2)
        chan.send(msg)
    expand_level(buf, (1 << (h - 1)) * t, t, sums[h - 1], after)
    last = np.empty((3 * t, 2), np.uint64)
    last[:t] = h0[head:] ^ sums[h - 1, 0]
    last[t : 2 * t] = h1[head:] ^ sums[h - 1, 1]
    last[2 * t :] = sums[h - 1, 0] ^ sums[h - 1, 1] ^ d
    chan.send(last)
    return buf[:-1]


def spcot_recv(
    chan,  # noqa: ANN001 - Channel
    b: np.ndarray,
    w: np.ndarray,
    t: int,
    h: int,
    index0: int,
    domain: int,
    buf: np.ndarray | None = None,
    after: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Receiver side; returns (r, the rows ``alpha_j * t + j`` of the noise positions); r is a
    view of ``buf`` as for the sender, ``after`` likewise (whatever it XORs into the last
    level's rows stays: the path nodes are fixed by XOR)."""
    if w.shape != (t * h, 2) or b.shape != (t * h,):
        raise ValueError(f"spcot: need {t * h} base COTs, got {w.shape[0]}")
    head = (h - 1) * t
    bb = b.astype(bool)[:, None]
    hw = crhash(w, index0, domain)
    path = (1 - b).astype(np.uint8).reshape(h, t)
    trees = PuncturedTrees(path, tree_buffer(t, h) if buf is None else buf)
    if h > 1:
        msg = chan.recv_array(np.uint64, (2 * head, 2))
        known = np.where(bb[:head], msg[head:], msg[:head])
        known ^= hw[:head]
        trees.levels(known.reshape(h - 1, t, 2), h - 1)
        trees.expand_last(after)
    last = chan.recv_array(np.uint64, (3 * t, 2))
    known = np.where(bb[head:], last[t : 2 * t], last[:t])
    known ^= hw[head:]
    if h > 1:
        leaves, others = trees.fix_last(known)
    else:  # a single level: nothing to expand, its two nodes set from the sums directly
        trees.levels(known.reshape(1, t, 2), 1)
        leaves, others = trees.buf[:-1], known
    pos = path_slots(path) * t + np.arange(t)
    # the path leaf is zero (plus whatever ``after`` XORed in), so the XOR of the whole tree is
    # the XOR of the other leaves
    leaves[pos] ^= last[2 * t :] ^ others
    return leaves, pos
