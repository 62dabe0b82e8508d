"""IKNP OT extension (Ishai-Kilian-Nissim-Petrank, CRYPTO 2003) with the ALSZ optimisations
(Asharov-Lindell-Schneider-Zohner, CCS 2013): random base-OT seeds expanded by a PRG, one message
u_i = G(k_i^0) ^ G(k_i^1) ^ c_i per column, and no second message for random OT.

Generic width w (128 for IKNP, 256 for KK13). The receiver holds seed pairs (k_i^0, k_i^1) and
chooses a w-bit row c_j per OT; it learns t_j. The sender holds s (w bits) and k_i^{s_i}; it learns
q_j = t_j ^ (c_j & s). Rows are uint64[n, w/64]; the PRG streams continue across batches, and a
running OT counter feeds the hash tweak, so no (seed stream, tweak) pair is ever reused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import PeerError
from ..prg import PRG
from .transpose import transpose_bits

CHUNK = 1 << 16  # OTs per chunk: a 128 x 2^16 bit block (1 MiB) stays in cache

Chunk = Callable[[np.ndarray, int, int, int], None]


def padded(n: int) -> int:
    """Batch size rounded up to a multiple of 64 (the transpose works on 64-column words)."""
    return max(64, (n + 63) // 64 * 64)


def chunks(n: int) -> list[tuple[int, int, int]]:
    """(lo, hi, hi_padded) per chunk of a batch of n OTs; only the last chunk is padded."""
    npad = padded(n)
    return [(lo, min(n, lo + CHUNK), min(npad, lo + CHUNK)) for lo in range(0, npad, CHUNK)]


def expand(prgs: list[PRG], nb: int) -> np.ndarray:
    """Next nb keystream bytes of every PRG as the rows of a (len(prgs), nb) uint8 matrix."""
    if nb > 1 << 20:
        raise ValueError("expand: at most 1 MiB per row")
    buf = np.empty(len(prgs) * nb + 16, np.uint8)
    mv = memoryview(buf)
    for i, g in enumerate(prgs):
        g.fill_raw(mv[i * nb :], nb)
    return buf[: len(prgs) * nb].reshape(len(prgs), nb)


class ExtSender:
    """Extension sender: base-OT *receiver* with choice bits s and keys k_i^{s_i}."""

    def __init__(self, s: np.ndarray, keys: list[bytes]) -> None:
        self.w = len(keys)
        self.s_bits = np.asarray(s, np.uint8)
        self.s = np.packbits(self.s_bits, bitorder="little").view(np.uint64)  # (w/64,)
        self._smask = (self.s_bits * np.uint8(0xFF))[:, None]
        self._prgs = [PRG(k) for k in keys]
        self.count = 0

    def extend(self, chan, n: int, each: Chunk) -> None:  # noqa: ANN001 - Channel
        """For every chunk, receive u and call ``each(q_rows, tweak0, lo, hi)`` with the q rows
        uint64[hi - lo, w/64] of OTs lo..hi-1 and the hash tweak index of OT lo."""
        peer_n = int(chan.recv_array(np.int64, (1,))[0])
        if peer_n != n:
            raise PeerError(f"OT batch size mismatch: this side has {n}, the peer {peer_n}")
        base = self.count
        self.count += n
        for lo, hi, hp in chunks(n):
            nb = (hp - lo) // 8
            u = chan.recv_array(np.uint8, (self.w, nb))
            q = expand(self._prgs, nb)
            u &= self._smask
            q ^= u
            each(transpose_bits(q).view(np.uint64)[: hi - lo], base + lo, lo, hi)


class ExtReceiver:
    """Extension receiver: base-OT *sender* holding both keys (k_i^0, k_i^1)."""

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.w = len(pairs)
        self._g0 = [PRG(k0) for k0, _ in pairs]
        self._g1 = [PRG(k1) for _, k1 in pairs]
        self.count = 0

    def extend(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        cols: Callable[[int, int], np.ndarray | None],
        each: Chunk,
    ) -> None:
        """For every chunk, send u = G(k^0) ^ G(k^1) ^ cols(lo, hi_padded) (packed bit columns
        (w, nb) or (nb,) broadcast to all) and call ``each(t_rows, tweak0, lo, hi)``."""
        chan.send(np.array([n], np.int64))
        base = self.count
        self.count += n
        for lo, hi, hp in chunks(n):
            nb = (hp - lo) // 8
            t = expand(self._g0, nb)
            u = expand(self._g1, nb)
            u ^= t
            c = cols(lo, hp)
            if c is not None:
                u ^= c
            chan.send(u)
            del u
            each(transpose_bits(t).view(np.uint64)[: hi - lo], base + lo, lo, hi)
