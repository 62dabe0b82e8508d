"""Pack k-bit ring elements (1 <= k <= 64) densely for the wire: m values cost ceil(m*k/8) bytes.

Little-endian: value i occupies bits [i*k, (i+1)*k) of the little-bit-order byte stream. Byte
multiples of k take a zero-copy-ish fast path (slicing the uint64 bytes).
"""

from __future__ import annotations

import numpy as np


def packed_size(m: int, k: int) -> int:
    """Bytes that m k-bit values occupy on the wire."""
    return (m * k + 7) // 8 if k % 8 else m * (k // 8)


def pack(vals: np.ndarray, k: int) -> np.ndarray:
    """Values (any shape and unsigned dtype, already < 2^k) -> packed uint8[packed_size(size,
    k)]. uint8 values are packed as they are (no widening to uint64)."""
    vals = np.asarray(vals)
    if k in (1, 2, 4):  # 8/k values per byte by shifts (the 1-of-16 OT leaves)
        per = 8 // k
        small = np.ascontiguousarray(vals).reshape(-1).astype(np.uint8, copy=False)
        if small.size % per:
            small = np.concatenate([small, np.zeros(-small.size % per, np.uint8)])
        small = small.reshape(-1, per)
        out = small[:, 0].copy()
        for i in range(1, per):
            out |= small[:, i] << np.uint8(i * k)
        return out
    if k == 8 and vals.dtype == np.uint8:
        return np.ascontiguousarray(vals).reshape(-1).copy()
    v = np.ascontiguousarray(vals, dtype=np.uint64).reshape(-1)
    if k % 8 == 0:  # whole bytes: the low bytes of each uint64
        return np.ascontiguousarray(v.view(np.uint8).reshape(-1, 8)[:, : k // 8]).reshape(-1)
    return _pack_words(v, k)


def unpack(buf: np.ndarray, m: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack`: m k-bit values as uint64[m]."""
    nb = (k + 7) // 8
    if k in (1, 2, 4):
        per = 8 // k
        sh = (np.arange(per, dtype=np.uint8) * np.uint8(k))[None, :]
        vals = (np.asarray(buf, dtype=np.uint8)[:, None] >> sh) & np.uint8((1 << k) - 1)
        return vals.reshape(-1)[:m].astype(np.uint64)
    if k % 8:
        return _unpack_words(np.asarray(buf, np.uint8), m, k)
    out = np.zeros((m, 8), dtype=np.uint8)
    out[:, :nb] = buf.reshape(m, nb)
    return out.view(np.uint64).reshape(m)


def _pack_words(v: np.ndarray, k: int) -> np.ndarray:
    """Value i's bits start at bit i*k of a little-endian stream of 64-bit words; the low part
    of every value goes into word (i*k) >> 6, the high part (if it straddles) into the next.
    Word indices are non-decreasing in i, so each word is one OR-reduction of a run."""
    m = v.size
    n_words = -(-(m * k) // 64) + 1
    off = np.arange(m, dtype=np.int64) * k
    word, sh = off >> 6, (off & 63).astype(np.uint64)
    words = np.zeros(n_words, np.uint64)
    if m:
        starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        words[word[starts]] = np.bitwise_or.reduceat(v << sh, starts)
        spill = sh + np.uint64(k) > np.uint64(64)
        if spill.any():
            hi = v[spill] >> (np.uint64(64) - sh[spill])  # shift < 64 where it spills
            words[word[spill] + 1] |= hi  # at most one straddling value starts per word
    return words.view(np.uint8)[: packed_size(m, k)].copy()


def _unpack_words(buf: np.ndarray, m: int, k: int) -> np.ndarray:
    """Inverse of :func:`_pack_words`: read each value's (at most two) words and shift."""
    n = packed_size(m, k)
    n_words = -(-n // 8) + 1
    words = np.zeros(n_words * 8, np.uint8)
    words[:n] = buf[:n]
    w = words.view(np.uint64)
    off = np.arange(m, dtype=np.int64) * k
    word, sh = off >> 6, (off & 63).astype(np.uint64)
    lo = w[word] >> sh
    hi_sh = np.where(sh == 0, np.uint64(63), np.uint64(64) - sh)
    hi = np.where(sh == 0, np.uint64(0), w[word + 1] << hi_sh)
    return (lo | hi) & np.uint64((1 << k) - 1)


def take(buf: np.ndarray, idx: np.ndarray, m: int, k: int) -> np.ndarray:
    """Values ``idx`` of m packed k-bit values, without unpacking the others (uint64)."""
    idx = np.asarray(idx, dtype=np.int64)
    b = np.asarray(buf, np.uint8)
    if k in (1, 2, 4):
        bits = idx * k
        byte = b[bits >> 3]
        return ((byte >> (bits & 7).astype(np.uint8)) & np.uint8((1 << k) - 1)).astype(np.uint64)
    if k % 8 == 0:
        nb = k // 8
        out = np.zeros((idx.size, 8), np.uint8)
        out[:, :nb] = b[: m * nb].reshape(m, nb)[idx]
        return out.view(np.uint64).reshape(-1)
    return unpack(b, m, k)[idx]
