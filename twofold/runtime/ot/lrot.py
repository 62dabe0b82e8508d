"""Random OT with long messages: IKNP rows (ALSZ) expanded into keystreams by the tweakable
correlation-robust hash (Guo-Katz-Wang-Yu, S&P 2020; the role crhash plays for one block).

OT j (global extension index ``index0 + j``) has the messages
``m_b[j] = H(q_j ^ b*s, T(j, 0)) || H(q_j ^ b*s, T(j, 1)) || ...`` (128-bit blocks), tweak
``T(j, blk) = (index0 + j, domain | blk << 16)``; the receiver's row t_j = q_j ^ c_j*s gives it
m_{c_j}[j] only. Every (row, tweak) pair is hashed once, so a stream is as good as the OTs' random
128-bit messages expanded by a PRG (the same hash and model as the k-bit COT pads). Used where
one OT must carry a long vector (the per-channel affine: DESIGN.md §5, CrypTFlow2 §5).
"""

from __future__ import annotations

import numpy as np

from .crhash import mmo_into


class LongOT:
    """The long-message OTs of one extension batch: the sender holds ``s`` (both streams), the
    receiver ``s=None`` (its chosen stream). Stream blocks are uint64[..., 2]."""

    def __init__(self, rows: np.ndarray, index0: int, domain: int, s: np.ndarray | None) -> None:
        if domain >> 16:
            raise ValueError("LongOT: the domain must fit in 16 bits (block index above it)")
        self.rows = np.ascontiguousarray(rows, np.uint64)
        self.n = self.rows.shape[0]
        self.index0, self.domain = int(index0), int(domain)
        self.s = None if s is None else np.asarray(s, np.uint64).reshape(1, 2)
        self._buf: dict[str, np.ndarray] = {}
        self._hi_key: tuple[int, int, int] | None = None

    def _scratch(self, name: str, n_words: int) -> np.ndarray:
        b = self._buf.get(name)
        if b is None or b.size < n_words:
            b = self._buf[name] = np.empty(max(n_words, 1), np.uint64)
        return b

    def blocks(self, sel: np.ndarray, blk0: int, nblk: int, both: bool = False):  # noqa: ANN201
        """Blocks blk0..blk0+nblk-1 of the streams of OTs ``sel`` as uint64[len(sel), nblk, 2]:
        the receiver's chosen stream, or with ``both`` the sender's (m_0, m_1). The arrays are
        scratch space, valid until the next call."""
        sel = np.asarray(sel, np.int64)
        if sel.size and (sel.min() < 0 or sel.max() >= self.n):
            raise IndexError(f"LongOT: OT index out of range [0, {self.n})")
        if blk0 < 0 or blk0 + nblk > 1 << 48:
            raise ValueError("LongOT: block index out of range")
        if both and self.s is None:
            raise ValueError("LongOT: only the sender has both streams")
        r = self.rows[sel]
        r[:, 0] ^= sel.astype(np.uint64) + np.uint64(self.index0)
        r[:, 1] ^= np.uint64(self.domain)
        if both:
            r = np.concatenate([r, r ^ self.s])
        m = r.shape[0]
        if self._hi_key != (m, blk0, nblk):  # the block tweaks, the same for every bit position
            hi = np.arange(blk0, blk0 + nblk, dtype=np.uint64) << np.uint64(16)
            self._hi, self._hi_key = np.tile(hi, m), (m, blk0, nblk)
        z = np.repeat(r, nblk, axis=0)  # one contiguous pass (a length-2 inner axis is slow)
        z[:, 1] ^= self._hi
        o = self._scratch("out", 2 * (m * nblk + 1)).reshape(-1, 2)
        mmo_into(z, o)
        out = o[: m * nblk].reshape(m, nblk, 2)
        return (out[: m // 2], out[m // 2 :]) if both else out
