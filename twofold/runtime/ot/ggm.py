"""GGM trees for silent OT: t trees of depth h expanded level by level, all at once
(Goldreich-Goldwasser-Micali PRF; Ferret §4, Yang-Weng-Lan-Zhang-Wang, CCS 2020).

Length-doubling PRG from fixed-key AES (ideal-permutation model, as in emp-ot):
G(x) = (pi_0(x) ^ x, pi_1(x) ^ x), pi_b = AES-128 under the public key K_b.

Layout: a level of t trees with S = 2^i nodes each is uint64[S * t, 2], node (slot, tree) at row
``slot * t + tree``; the children of slot p are slots p (left, pi_0) and S + p (right, pi_1) of
the next level. So the left children of a level are its first half and the right children its
second half, both contiguous (one AES call each, no interleave), and the leaf of tree j reached
by the path bits a_1..a_h (a_i chosen at level i) is slot sum_i a_i 2^(i-1). The level sums
K_i^b[j] = XOR of all side-b children of tree j at level i are what the receiver needs, by one
OT per level, to rebuild every node but the ones on its path (the punctured PRF).

Cost: one fixed-key AES call per side over all t trees' nodes of a level, in chunks of whole
slots sized for the L2 cache; the level sums are XOR-reduced from each chunk while it is still
in cache. The whole tree lives in one buffer with a spare row after the leaves, so the AES
output goes straight to its place (``update_into`` wants 15 bytes of slack).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEYS = tuple(hashlib.sha256(b"twofold GGM PRG key %d" % b).digest()[:16] for b in (0, 1))
_TLS = threading.local()
_ROWS = 1 << 14  # parent rows per AES call: parents, children and scratch (768 KiB) stay in L2


def _ecb(b: int):  # noqa: ANN202
    ctx = getattr(_TLS, "ggm", None)
    if ctx is None:
        ctx = _TLS.ggm = [Cipher(algorithms.AES(k), modes.ECB()).encryptor() for k in KEYS]
    return ctx[b]


def _aes_into(b: int, x: np.ndarray, out: np.ndarray) -> None:
    """out[:m] = pi_b(x) for contiguous uint64[m, 2] x; ``out`` (contiguous) has a spare row
    after its first m (it may be clobbered)."""
    m = x.shape[0]
    _ecb(b).update_into(
        memoryview(x.reshape(-1).view(np.uint8)),
        memoryview(out.reshape(-1).view(np.uint8))[: m * 16 + 15],
    )


def tree_shape(t: int, depth: int) -> tuple[int, int]:
    """The shape of the buffer for t trees of 2^depth leaves and the spare row."""
    return ((1 << depth) * t + 1, 2)


def tree_buffer(t: int, depth: int, buf: np.ndarray | None = None) -> np.ndarray:
    """Room for t trees of 2^depth leaves and the spare row, uint64[2^depth * t + 1, 2]: ``buf``
    (any content; it is overwritten) if given, else a new array."""
    shape = tree_shape(t, depth)
    if buf is None:
        return np.empty(shape, np.uint64)
    if buf.shape != shape or buf.dtype != np.uint64 or not buf.flags.c_contiguous:
        raise ValueError(f"GGM tree buffer: need uint64{list(shape)}, got {buf.dtype}{buf.shape}")
    return buf


def expand_level(buf: np.ndarray, rows: int, t: int, sums: np.ndarray | None = None) -> None:
    """In place: the level in ``buf[:rows]`` (rows = t * slots) becomes the next level in
    ``buf[:2 * rows]`` (left children over the parents, right children after them); ``buf``
    has a spare row after ``2 * rows``. With ``sums`` (uint64[2, t, 2]): the XOR of every
    tree's left and of its right children."""
    step = t * max(1, _ROWS // t)  # whole slots: a chunk's rows reshape to (slots, t)
    scratch = np.empty((min(rows, step) + 1, 2), np.uint64)
    if sums is not None:
        sums[:] = 0
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        x = buf[r0:r1]
        right = buf[rows + r0 : rows + r1 + 1]  # + the slack row (not yet written, or spare)
        _aes_into(1, x, right)  # right child first: needs x
        right = right[:-1]
        right ^= x
        _aes_into(0, x, scratch)
        x ^= scratch[: r1 - r0]
        if sums is not None:
            sums[0] ^= np.bitwise_xor.reduce(x.reshape(-1, t, 2), axis=0)
            sums[1] ^= np.bitwise_xor.reduce(right.reshape(-1, t, 2), axis=0)


def sender_expand(
    roots: np.ndarray, depth: int, buf: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Full trees from t random roots (uint64[t, 2]): the leaves uint64[2^depth * t, 2] (a
    C-contiguous view of ``buf``, see :func:`tree_buffer`, with one spare row) and the level
    sums uint64[depth, 2, t, 2] (K_i^b of tree j at [i - 1, b, j])."""
    t = roots.shape[0]
    buf = tree_buffer(t, depth, buf)
    buf[:t] = roots
    sums = np.empty((depth, 2, t, 2), np.uint64)
    for i in range(depth):
        expand_level(buf, (1 << i) * t, t, sums[i])
    return buf[:-1], sums


def receiver_expand(
    path: np.ndarray, known: np.ndarray, buf: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The punctured trees: ``path`` uint8[depth, t] holds the path bits a_i of every tree,
    ``known`` uint64[depth, t, 2] the sums K_i^{1 - a_i} learnt by OT. Returns the leaves
    uint64[2^depth * t, 2] (as :func:`sender_expand`) with every node off the path right and
    the path leaf zero, and the XOR of every tree's leaves, uint64[t, 2]. The leaves are a
    view of ``buf`` (see :func:`tree_buffer`)."""
    depth, t = path.shape
    buf = tree_buffer(t, depth, buf)
    trees = np.arange(t)
    slot = np.zeros(t, np.int64)  # the path node's slot at the current level (its value is 0)
    sums = np.zeros((2, t, 2), np.uint64)
    for i in range(depth):
        s = 1 << i
        a = path[i].astype(np.int64)
        on = (slot + a * s) * t + trees  # the path child: stays unknown (zero)
        off = (slot + (1 - a) * s) * t + trees  # its sibling: K^{1-a} ^ (the others on its side)
        if i:
            expand_level(buf, s * t, t, sums)
            # the children of the zero path node are junk: out of the sums, then overwritten
            sums[a, trees] ^= buf[on]
            sums[1 - a, trees] ^= buf[off]
        buf[on] = 0
        buf[off] = known[i] ^ sums[1 - a, trees]
        slot = slot + a * s
    # the leaves of tree j: its side-a sum (the path leaf is zero) and the whole side 1 - a
    return buf[:-1], sums[a, trees] ^ known[depth - 1]


def path_slots(path: np.ndarray) -> np.ndarray:
    """The leaf slot of every tree's path: sum_i a_i 2^(i-1), int64[t]."""
    w = (np.int64(1) << np.arange(path.shape[0], dtype=np.int64))[:, None]
    return (path.astype(np.int64) * w).sum(axis=0)
