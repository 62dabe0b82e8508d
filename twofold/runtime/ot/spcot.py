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
s_alpha ^ Delta. Traffic: t * (2h + 1) blocks, sender to receiver, one flight. Semi-honest: a
corrupt sender could only send inconsistent sums, which the malicious version's check catches
and which this threat model excludes (SECURITY.md).
"""

from __future__ import annotations

import numpy as np

from ..prg import PRG
from .crhash import crhash
from .ggm import path_slots, receiver_expand, sender_expand


def spcot_send(
    chan,  # noqa: ANN001 - Channel
    q: np.ndarray,
    delta: np.ndarray,
    t: int,
    h: int,
    index0: int,
    domain: int,
    buf: np.ndarray | None = None,
) -> np.ndarray:
    """Sender side; returns the leaves s (in ``buf``, see ``ggm.tree_buffer``, if given). Hash
    tweaks are index0 .. index0 + t*h - 1."""
    if q.shape != (t * h, 2):
        raise ValueError(f"spcot: need {t * h} base COTs, got {q.shape[0]}")
    leaves, sums = sender_expand(PRG().block(t), h, buf)
    d = np.asarray(delta, np.uint64).reshape(1, 2)
    msg = np.empty((2 * t * h + t, 2), np.uint64)
    msg[: t * h] = crhash(q, index0, domain) ^ sums[:, 0].reshape(t * h, 2)
    msg[t * h : 2 * t * h] = crhash(q ^ d, index0, domain) ^ sums[:, 1].reshape(t * h, 2)
    msg[2 * t * h :] = sums[h - 1, 0] ^ sums[h - 1, 1] ^ d
    chan.send(msg)
    return leaves


def spcot_recv_message(
    chan,  # noqa: ANN001 - Channel
    b: np.ndarray,
    w: np.ndarray,
    t: int,
    h: int,
    index0: int,
    domain: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver side, the part that talks: the sender's flight, unmasked. Returns (the path
    bits uint8[h, t], the known level sums uint64[h, t, 2], psi uint64[t, 2]) for
    :func:`spcot_recv_expand`, the local part, which returns (r, the rows ``alpha_j * t + j``
    of the noise positions)."""
    if w.shape != (t * h, 2) or b.shape != (t * h,):
        raise ValueError(f"spcot: need {t * h} base COTs, got {w.shape[0]}")
    msg = chan.recv_array(np.uint64, (2 * t * h + t, 2))
    bb = b.astype(bool)
    known = np.where(bb[:, None], msg[t * h : 2 * t * h], msg[: t * h])
    known ^= crhash(w, index0, domain)
    path = (1 - b).astype(np.uint8).reshape(h, t)
    return path, known.reshape(h, t, 2), msg[2 * t * h :]


def spcot_recv_expand(
    path: np.ndarray, known: np.ndarray, psi: np.ndarray, buf: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The receiver's local part: the punctured trees, and r at the path leaves from psi."""
    h, t = path.shape
    leaves, others = receiver_expand(path, known, buf)
    pos = path_slots(path) * t + np.arange(t)
    # the path leaf is zero, so the XOR of the whole tree is the XOR of the other leaves
    leaves[pos] = psi ^ others
    return leaves, pos
