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
from collections.abc import Callable

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


# G(0) = (pi_0(0), pi_1(0)): the children of a zero node, uint64[2 (b), 2]
JUNK = np.stack(
    [
        np.frombuffer(Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(bytes(16)), "<u8")
        for k in KEYS
    ]
)


def tree_buffer(t: int, depth: int) -> np.ndarray:
    """Room for t trees of 2^depth leaves and the spare row: uint64[2^depth * t + 1, 2]."""
    return np.empty(((1 << depth) * t + 1, 2), np.uint64)


def expand_level(
    buf: np.ndarray,
    rows: int,
    t: int,
    sums: np.ndarray | None = None,
    after: Callable[[int, int], None] | None = None,
) -> None:
    """In place: the level in ``buf[:rows]`` (rows = t * slots) becomes the next level in
    ``buf[:2 * rows]`` (left children over the parents, right children after them); ``buf``
    has a spare row after ``2 * rows``. With ``sums`` (uint64[2, t, 2]): the XOR of every
    tree's left and of its right children. ``after(r0, r1)`` runs once the children of the
    parents r0..r1 are written (rows r0..r1 and rows + r0 .. rows + r1), while in cache."""
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
        if after is not None:
            after(r0, r1)


def sender_expand(
    roots: np.ndarray,
    depth: int,
    buf: np.ndarray | None = None,
    after: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full trees from t random roots (uint64[t, 2]): the leaves uint64[2^depth * t, 2] (a
    C-contiguous view of ``buf``, a :func:`tree_buffer`, new if None) and the level sums
    uint64[depth, 2, t, 2] (K_i^b of tree j at [i - 1, b, j]). ``after`` as in
    :func:`expand_level`, for the last level."""
    t = roots.shape[0]
    buf = tree_buffer(t, depth) if buf is None else buf
    buf[:t] = roots
    sums = np.empty((depth, 2, t, 2), np.uint64)
    for i in range(depth):
        expand_level(buf, (1 << i) * t, t, sums[i], after if i == depth - 1 else None)
    return buf[:-1], sums


class PuncturedTrees:
    """The receiver's t trees, every node but the path's (the punctured PRF), level by level:
    :meth:`levels` rebuilds the levels before the last from their known sums; the last level
    is expanded by :meth:`expand_last` before its sums are known (so the LPN encoding can
    start on its leaves) and :meth:`fix_last` then sets its two path-adjacent nodes per tree
    by XOR (so that whatever was XORed into the leaves meanwhile stays).

    The path node of every level is zero, so its two children are the public constants
    ``JUNK[b]`` = pi_b(0) until fixed: the level sums are corrected by them, not read back."""

    def __init__(self, path: np.ndarray, buf: np.ndarray | None = None) -> None:
        self.path = path
        self.depth, self.t = path.shape
        self.buf = tree_buffer(self.t, self.depth) if buf is None else buf
        self.trees = np.arange(self.t)
        self.slot = np.zeros(self.t, np.int64)  # the path node's slot at the current level
        self.sums = np.zeros((2, self.t, 2), np.uint64)
        self.level = 0  # levels done

    def _nodes(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, on, off) at level i: the path bit, the path child's row, its sibling's row."""
        s, t = 1 << i, self.t
        a = self.path[i].astype(np.int64)
        return a, (self.slot + a * s) * t + self.trees, (self.slot + (1 - a) * s) * t + self.trees

    def levels(self, known: np.ndarray, upto: int) -> None:
        """Rebuild levels ``self.level`` .. upto - 1 from ``known`` (uint64[>= upto, t, 2],
        the sums K_i^{1 - a_i})."""
        buf, sums, trees = self.buf, self.sums, self.trees
        for i in range(self.level, upto):
            a, on, off = self._nodes(i)
            if i:
                expand_level(buf, (1 << i) * self.t, self.t, sums)
                sums[a, trees] ^= JUNK[a]  # the zero path node's children: out of the sums
                sums[1 - a, trees] ^= JUNK[1 - a]
            buf[on] = 0
            buf[off] = known[i] ^ sums[1 - a, trees]
            self.slot = self.slot + a * (1 << i)
        self.level = upto

    def expand_last(self, after: Callable[[int, int], None] | None = None) -> None:
        """Expand the last level (depth >= 2) with its sums; ``after`` as in
        :func:`expand_level`. Its path-adjacent nodes hold ``JUNK`` until :meth:`fix_last`."""
        i = self.depth - 1
        a, _, _ = self._nodes(i)
        expand_level(self.buf, (1 << i) * self.t, self.t, self.sums, after)
        self.sums[a, self.trees] ^= JUNK[a]
        self.sums[1 - a, self.trees] ^= JUNK[1 - a]

    def fix_last(self, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Set the last level's path leaf to zero and its sibling from ``known`` (uint64[t, 2],
        K^{1 - a}), by XOR. Returns the leaves uint64[2^depth * t, 2] (a view of the buffer)
        and the XOR of every tree's leaves, uint64[t, 2]."""
        i = self.depth - 1
        a, on, off = self._nodes(i)
        buf, sums = self.buf, self.sums
        buf[on] ^= JUNK[a]
        buf[off] ^= JUNK[1 - a] ^ known ^ sums[1 - a, self.trees]
        # the leaves of tree j: its side-a sum (the path leaf is zero) and the whole side 1 - a
        return buf[:-1], sums[a, self.trees] ^ known


def path_slots(path: np.ndarray) -> np.ndarray:
    """The leaf slot of every tree's path: sum_i a_i 2^(i-1), int64[t]."""
    w = (np.int64(1) << np.arange(path.shape[0], dtype=np.int64))[:, None]
    return (path.astype(np.int64) * w).sum(axis=0)
