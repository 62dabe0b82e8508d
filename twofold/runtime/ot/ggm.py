"""GGM trees for silent OT: t trees of depth h expanded level by level, all at once
(Goldreich-Goldwasser-Micali PRF; Ferret §4, Yang-Weng-Lan-Zhang-Wang, CCS 2020).

Length-doubling PRG from fixed-key AES (ideal-permutation model, as in emp-ot):
G(x) = (pi_0(x) ^ x, pi_1(x) ^ x), pi_b = AES-128 under the public key K_b.

Layout: a level of t trees with S = 2^i nodes each is uint64[S * t, 2], node (slot, tree) at row
``slot * t + tree``; the children of slot p are slots p (left, pi_0) and S + p (right, pi_1) of
the next level. So the left children of a level are its first half and the right children its
second half, both contiguous (one AES call each, no interleave), and the leaf of tree j reached
by the path bits a_1..a_h (a_i chosen at level i) is slot sum_i a_i 2^(i-1). ``level_sums``
K_i^b[j] = XOR of all side-b children of tree j at level i are what the receiver needs, by one
OT per level, to rebuild every node but the ones on its path (the punctured PRF).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEYS = tuple(hashlib.sha256(b"twofold GGM PRG key %d" % b).digest()[:16] for b in (0, 1))
_TLS = threading.local()
_ROWS = 1 << 16  # rows per AES call: 1 MiB of input stays in cache


def _ecb(b: int):  # noqa: ANN202
    ctx = getattr(_TLS, "ggm", None)
    if ctx is None:
        ctx = _TLS.ggm = [Cipher(algorithms.AES(k), modes.ECB()).encryptor() for k in KEYS]
    return ctx[b]


def _prg_into(b: int, x: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """out = pi_b(x) ^ x for contiguous uint64[m, 2] x (m <= _ROWS); ``out`` may alias ``x``."""
    m = x.shape[0]
    _ecb(b).update_into(
        memoryview(x.reshape(-1).view(np.uint8)),
        memoryview(scratch.reshape(-1).view(np.uint8))[: m * 16 + 15],
    )
    np.bitwise_xor(scratch[:m], x, out=out)


def expand_level(buf: np.ndarray, rows: int) -> None:
    """In place: the level in ``buf[:rows]`` becomes the next level in ``buf[:2 * rows]``
    (left children over the parents, right children after them)."""
    scratch = np.empty((min(rows, _ROWS) + 1, 2), np.uint64)
    for r0 in range(0, rows, _ROWS):
        r1 = min(rows, r0 + _ROWS)
        x = buf[r0:r1]
        _prg_into(1, x, buf[rows + r0 : rows + r1], scratch)  # right child first: needs x
        _prg_into(0, x, x, scratch)


def side_sums(buf: np.ndarray, rows: int, t: int) -> np.ndarray:
    """uint64[2, t, 2]: per tree, the XOR of the left and of the right children of a level
    that occupies ``buf[:2 * rows]`` (rows = t * slots of the parent level)."""
    s = rows // t
    lvl = buf[: 2 * rows].reshape(2, s, t, 2)
    return np.bitwise_xor.reduce(lvl, axis=1)


def sender_expand(roots: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Full trees from t random roots (uint64[t, 2]): the leaves uint64[2^depth * t, 2] and the
    level sums uint64[depth, 2, t, 2] (K_i^b of tree j at [i - 1, b, j])."""
    t = roots.shape[0]
    buf = np.empty(((1 << depth) * t, 2), np.uint64)
    buf[:t] = roots
    sums = np.empty((depth, 2, t, 2), np.uint64)
    for i in range(depth):
        rows = (1 << i) * t
        expand_level(buf, rows)
        sums[i] = side_sums(buf, rows, t)
    return buf, sums


def receiver_expand(path: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The punctured trees: ``path`` uint8[depth, t] holds the path bits a_i of every tree,
    ``known`` uint64[depth, t, 2] the sums K_i^{1 - a_i} learnt by OT. Returns the leaves
    uint64[2^depth * t, 2] with every node off the path right and the path leaf zero."""
    depth, t = path.shape
    buf = np.zeros(((1 << depth) * t, 2), np.uint64)
    trees = np.arange(t)
    slot = np.zeros(t, np.int64)  # the path node's slot at the current level (its value is 0)
    for i in range(depth):
        s = 1 << i
        rows = s * t
        if i:
            expand_level(buf, rows)
        a = path[i].astype(np.int64)
        on = (slot + a * s) * t + trees  # the path child: stays unknown (zero)
        off = (slot + (1 - a) * s) * t + trees  # its sibling: K^{1-a} ^ (the others on its side)
        buf[on] = 0
        buf[off] = 0
        sums = side_sums(buf, rows, t) if i else np.zeros((2, t, 2), np.uint64)
        buf[off] = known[i] ^ sums[1 - a, trees]
        slot = slot + a * s
    return buf


def path_slots(path: np.ndarray) -> np.ndarray:
    """The leaf slot of every tree's path: sum_i a_i 2^(i-1), int64[t]."""
    w = (np.int64(1) << np.arange(path.shape[0], dtype=np.int64))[:, None]
    return (path.astype(np.int64) * w).sum(axis=0)
