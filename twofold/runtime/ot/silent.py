"""Silent COTs behind the IKNP extension's interface (``iknp.ExtSender`` / ``ExtReceiver``), so
every OTPack flavour (random OT, COT over Z_2^k, chosen-message OT, long-message OT) hashes
Ferret rows exactly as it hashes IKNP rows.

Ferret's COTs have random choice bits x; a chosen choice c costs one bit on the wire (Beaver's
derandomisation): the receiver sends d = x ^ c and the sender flips its rows where d = 1,
K' = K ^ d*Delta, so that M = K' ^ c*Delta. ``extend_random`` skips that bit: the receiver
keeps x as its (uniform) choices, for protocols that need random OTs only (bit triples).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import PeerError
from . import iknp
from .ferret import FerretReceiver, FerretSender
from .iknp import Chunk, padded


def _chunks(n: int) -> list[tuple[int, int]]:
    step = iknp.CHUNK
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class SilentSender:
    """Extension sender over Ferret: the same ``s``/``count``/``extend`` as ``ExtSender``."""

    w = 128

    def __init__(self, ferret: FerretSender) -> None:
        self.ferret = ferret
        self.s = ferret.delta
        self.count = 0

    def _run(self, q: np.ndarray, n: int, each: Chunk) -> None:
        base = self.count
        self.count += n
        for lo, hi in _chunks(n):
            each(q[lo:hi], base + lo, lo, hi)

    def extend_rows(self, chan, n: int) -> tuple[np.ndarray, int]:  # noqa: ANN001 - Channel
        """n COTs with the receiver's chosen bits, all at once: receive d = x ^ c and flip;
        returns the rows uint64[n, 2] and the hash tweak index of the first."""
        peer_n = int(chan.recv_array(np.int64, (1,))[0])
        if peer_n != n:
            raise PeerError(f"OT batch size mismatch: this side has {n}, the peer {peer_n}")
        q = self.ferret.take(n)
        d = chan.recv_array(np.uint8, ((n + 7) // 8,))
        flip = np.unpackbits(d, count=n, bitorder="little").astype(np.uint64)
        flip = np.uint64(0) - flip  # all ones where the choice was flipped
        q[:, 0] ^= flip & self.s[0]
        q[:, 1] ^= flip & self.s[1]
        base = self.count
        self.count += n
        return q, base

    def extend(self, chan, n: int, each: Chunk) -> None:  # noqa: ANN001 - Channel
        """As :meth:`extend_rows`, handing the rows out chunk by chunk (``ExtSender.extend``)."""
        q, base = self.extend_rows(chan, n)
        for lo, hi in _chunks(n):
            each(q[lo:hi], base + lo, lo, hi)

    def extend_random(self, n: int, each: Chunk) -> None:
        """n COTs with the receiver's random choices; no traffic beyond Ferret's."""
        self._run(self.ferret.take(n), n, each)


class SilentReceiver:
    """Extension receiver over Ferret: the same ``count``/``extend`` as ``ExtReceiver``."""

    w = 128

    def __init__(self, ferret: FerretReceiver) -> None:
        self.ferret = ferret
        self.count = 0

    def _run(self, t: np.ndarray, n: int, each: Chunk) -> None:
        base = self.count
        self.count += n
        for lo, hi in _chunks(n):
            each(t[lo:hi], base + lo, lo, hi)

    def extend_rows(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        cols: Callable[[int, int], np.ndarray | None],
    ) -> tuple[np.ndarray, int]:
        """n COTs with the choice bits ``cols(0, padded(n))`` (packed, little bit order), all
        at once: returns the rows uint64[n, 2] and the hash tweak index of the first."""
        chan.send(np.array([n], np.int64))
        x, t = self.ferret.take(n)
        c = cols(0, padded(n))
        if c is not None and c.ndim != 1:
            raise ValueError("silent OT serves 1-out-of-2 choices only (one bit per OT)")
        d = np.packbits(x, bitorder="little")
        if c is not None:
            d ^= c[: d.size]
        chan.send(d)
        base = self.count
        self.count += n
        return t, base

    def extend(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        cols: Callable[[int, int], np.ndarray | None],
        each: Chunk,
    ) -> None:
        """As :meth:`extend_rows`, handing the rows out chunk by chunk (``ExtReceiver.extend``)."""
        t, base = self.extend_rows(chan, n, cols)
        for lo, hi in _chunks(n):
            each(t[lo:hi], base + lo, lo, hi)

    def extend_random(self, n: int, each: Chunk) -> np.ndarray:
        """n COTs with random choice bits, returned (uint8[n]); no traffic beyond Ferret's."""
        x, t = self.ferret.take(n)
        self._run(t, n, each)
        return x
