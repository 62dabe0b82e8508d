"""Silent COTs behind the IKNP extension's interface (``iknp.ExtSender`` / ``ExtReceiver``), so
every OTPack flavour (random OT, COT over Z_2^k, chosen-message OT, long-message OT) hashes
Ferret rows exactly as it hashes IKNP rows.

Ferret's COTs have random choice bits x; a chosen choice c costs one bit on the wire (Beaver's
derandomisation): the receiver sends d = x ^ c and the sender flips its rows where d = 1,
K' = K ^ d*Delta, so that M = K' ^ c*Delta. ``extend_random`` skips that bit: the receiver
keeps x as its (uniform) choices, for protocols that need random OTs only (bit triples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..errors import PeerError
from . import iknp
from .ferret import FerretReceiver, FerretSender
from .iknp import Chunk, padded


def _chunks(n: int, step: int = 0) -> list[tuple[int, int]]:
    step = step or iknp.CHUNK
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _chunk_rows(
    parts: list[np.ndarray], n: int, step: int = 0
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, rows lo..hi) for the chunks of ``step`` rows (default ``iknp.CHUNK``) of the
    concatenation of ``parts`` (n rows): views into the parts, a copy only for a chunk that
    straddles two."""
    i, off = 0, 0  # the current part and the offset in it
    for lo, hi in _chunks(n, step):
        need = hi - lo
        while parts[i].shape[0] == off:
            i, off = i + 1, 0
        if parts[i].shape[0] - off >= need:
            yield lo, hi, parts[i][off : off + need]
            off += need
            continue
        pieces = []
        while need:
            if parts[i].shape[0] == off:
                i, off = i + 1, 0
            take = min(need, parts[i].shape[0] - off)
            pieces.append(parts[i][off : off + take])
            off += take
            need -= take
        yield lo, hi, np.concatenate(pieces)


def _check_n(chan, n: int) -> None:  # noqa: ANN001 - Channel
    """The sender's side of a batch: the receiver's batch size must be n."""
    peer_n = int(chan.recv_array(np.int64, (1,))[0])
    if peer_n != n:
        raise PeerError(f"OT batch size mismatch: this side has {n}, the peer {peer_n}")


class SilentSender:
    """Extension sender over Ferret: the same ``s``/``count``/``extend`` as ``ExtSender``."""

    w = 128

    def __init__(self, ferret: FerretSender) -> None:
        self.ferret = ferret
        self.s = ferret.delta
        self.count = 0

    def _run(self, parts: list[np.ndarray], n: int, each: Chunk) -> None:
        base = self.count
        self.count += n
        for lo, hi, q in _chunk_rows(parts, n):
            each(q, base + lo, lo, hi)

    def _flip(self, q: np.ndarray, d: np.ndarray, lo: int) -> None:
        """q ^= d_j * Delta for the rows lo.. of a batch (lo a multiple of 8, d packed)."""
        n = q.shape[0]
        flip = np.unpackbits(d[lo // 8 :], count=n, bitorder="little")
        limb = np.multiply(flip, self.s[0], dtype=np.uint64)  # Delta's limb where flipped
        q[:, 0] ^= limb
        np.multiply(flip, self.s[1], out=limb)
        q[:, 1] ^= limb

    def extend_chunks(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        step: int = 0,
    ) -> Iterator[tuple[int, int, np.ndarray, int]]:
        """n COTs with the receiver's chosen bits: receive d = x ^ c, flip the rows where
        d = 1; yields (lo, hi, rows, hash tweak index of row lo) per chunk of ``step`` rows (a
        multiple of 8; default ``iknp.CHUNK``), straight from Ferret's pool (no copy of the
        batch). The messages are exchanged at the first chunk."""
        _check_n(chan, n)
        parts = self.ferret.take_parts(n)
        d = chan.recv_array(np.uint8, ((n + 7) // 8,))
        base = self.count
        self.count += n
        for lo, hi, q in _chunk_rows(parts, n, step):
            self._flip(q, d, lo)
            yield lo, hi, q, base + lo

    def extend(self, chan, n: int, each: Chunk) -> None:  # noqa: ANN001 - Channel
        """As :meth:`extend_chunks`, handing each chunk to ``each`` (``ExtSender.extend``)."""
        for lo, hi, q, tw in self.extend_chunks(chan, n):
            each(q, tw, lo, hi)

    def extend_random(self, n: int, each: Chunk) -> None:
        """n COTs with the receiver's random choices; no traffic beyond Ferret's."""
        self._run(self.ferret.take_parts(n), n, each)


class SilentReceiver:
    """Extension receiver over Ferret: the same ``count``/``extend`` as ``ExtReceiver``."""

    w = 128

    def __init__(self, ferret: FerretReceiver) -> None:
        self.ferret = ferret
        self.count = 0

    def _run(self, parts: list[np.ndarray], n: int, each: Chunk) -> None:
        base = self.count
        self.count += n
        for lo, hi, t in _chunk_rows(parts, n):
            each(t, base + lo, lo, hi)

    @staticmethod
    def _send_flips(chan, n: int, x: np.ndarray, cols) -> None:  # noqa: ANN001
        """Send the derandomisation bits d = x ^ c (c = ``cols(0, padded(n))``)."""
        c = cols(0, padded(n))
        if c is not None and c.ndim != 1:
            raise ValueError("silent OT serves 1-out-of-2 choices only (one bit per OT)")
        d = np.packbits(x, bitorder="little")
        if c is not None:
            d ^= c[: d.size]
        chan.send(d)

    def extend_chunks(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        cols: Callable[[int, int], np.ndarray | None],
        step: int = 0,
    ) -> Iterator[tuple[int, int, np.ndarray, int]]:
        """n COTs with the choice bits ``cols(0, padded(n))`` (packed, little bit order): send
        d = x ^ c; yields (lo, hi, rows, hash tweak index of row lo) per chunk of ``step`` rows
        (default ``iknp.CHUNK``), straight from Ferret's pool (no copy of the batch). The
        messages are exchanged at the first chunk."""
        chan.send(np.array([n], np.int64))
        x, parts = self.ferret.take_parts(n)
        self._send_flips(chan, n, x, cols)
        base = self.count
        self.count += n
        for lo, hi, t in _chunk_rows(parts, n, step):
            yield lo, hi, t, base + lo

    def extend(
        self,
        chan,  # noqa: ANN001 - Channel
        n: int,
        cols: Callable[[int, int], np.ndarray | None],
        each: Chunk,
    ) -> None:
        """As :meth:`extend_chunks`, handing each chunk to ``each`` (``ExtReceiver.extend``)."""
        for lo, hi, t, tw in self.extend_chunks(chan, n, cols):
            each(t, tw, lo, hi)

    def extend_random(self, n: int, each: Chunk) -> np.ndarray:
        """n COTs with random choice bits, returned (uint8[n]); no traffic beyond Ferret's."""
        x, parts = self.ferret.take_parts(n)
        self._run(parts, n, each)
        return x
