"""The wire layout of one batch of 1-out-of-N OTs whose rows come in parts of different message
widths (``OTPack.kkot_send`` with a list of tables): one extension batch, one message, so
several leaf tables of one protocol step cost one flight, not one each.

Part i holds rows [start_i, start_i + size_i) with k_i-bit messages, packed at k_i bits
(bitpack) one part after the other. The OT keys are derived for the widest part and truncated
to each part's width: a truncated pseudorandom key is still a one-time pad for its message.
A single part is byte for byte the layout of a plain batch.
"""

from __future__ import annotations

import numpy as np

from .. import bitpack
from ..ring import mask


class Parts:
    """Rows of a 1-of-``nmsg`` OT batch in parts of ``sizes`` rows with ``ks``-bit messages."""

    def __init__(self, sizes: list[int], ks: list[int], nmsg: int) -> None:
        if len(sizes) != len(ks) or not sizes:
            raise ValueError("OT parts: one width per part, at least one part")
        if len(sizes) > 1 and any(nmsg * k % 8 for k in ks):  # every part's rows on bytes
            raise ValueError(f"OT parts: N·k must be a multiple of 8 (N={nmsg}, k={ks})")
        self.nmsg = int(nmsg)
        self.sizes = [int(s) for s in sizes]
        self.ks = [int(k) for k in ks]
        self.k = max(self.ks)
        self.starts = np.cumsum([0, *self.sizes]).tolist()
        sk = zip(self.sizes, self.ks, strict=True)
        nb = [bitpack.packed_size(s * self.nmsg, k) for s, k in sk]
        self.offs = np.cumsum([0, *nb]).tolist()
        self.n = self.starts[-1]
        self.nbytes = self.offs[-1]

    def overlap(self, lo: int, hi: int):  # noqa: ANN201
        """(i, a, b, k, offset): part i's rows [a, b) within [lo, hi), its width and the wire
        offset of row a, for every part that has some."""
        for i, k in enumerate(self.ks):
            a, b = max(lo, self.starts[i]), min(hi, self.starts[i + 1])
            if a < b:
                yield i, a, b, k, self.offs[i] + (a - self.starts[i]) * self.nmsg * k // 8

    def put(self, wire: np.ndarray, lo: int, out: np.ndarray) -> None:
        """Pack the masked messages ``out`` (uint64[r, nmsg], or uint8 when every width is at
        most 8) of rows [lo, lo + r) into ``wire``; ``lo`` must start a byte in every part (a
        multiple of 8 rows will do)."""
        for _, a, b, k, off in self.overlap(lo, lo + out.shape[0]):
            packed = pack_rows(out[a - lo : b - lo], k)
            wire[off : off + packed.size] = packed

    def take(self, wire: np.ndarray, choices: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The receiver's chosen messages (uint64[n]): entry ``choices`` of each row, unmasked
        by its ``key`` and cut to its part's width."""
        got = np.empty(self.n, np.uint64)
        for i, k in enumerate(self.ks):
            a, b = self.starts[i], self.starts[i + 1]
            idx = np.arange(b - a, dtype=np.int64) * self.nmsg + choices[a:b]
            seg = wire[self.offs[i] : self.offs[i + 1]]
            got[a:b] = bitpack.take(seg, idx, (b - a) * self.nmsg, k)
            got[a:b] ^= key[a:b]
            got[a:b] &= mask(k)
        return got


def pack_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """Rows of N messages cut to k bits and packed as they go on the wire (``bitpack.pack``:
    entry x of a row at bits [x*k, x*k + k) of the row's bits), uint8."""
    return bitpack.pack(rows & rows.dtype.type(mask(k)), k)
