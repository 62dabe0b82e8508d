"""Pack k-bit ring elements (1 <= k <= 64) densely for the wire: m values cost ceil(m*k/8) bytes.

Little-endian: value i occupies bits [i*k, (i+1)*k) of the little-bit-order byte stream. Byte
multiples of k take a zero-copy-ish fast path (slicing the uint64 bytes).
"""

from __future__ import annotations

import math

import numpy as np

#: Values from which the periodic packers take over from the per-value ones (their loop over
#: a period of up to 64 values costs more than it saves on short arrays).
PERIODIC_MIN = 1024
#: Periods per block of the periodic packers (a block's columns stay in cache).
_BLOCK = 4096


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
    if v.size >= PERIODIC_MIN:
        return _pack_periodic(v, k)
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
        if m >= PERIODIC_MIN:
            return _unpack_periodic(np.asarray(buf, np.uint8), m, k)
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


def _period(k: int) -> tuple[int, int]:
    """(values, 64-bit words) of one period of the k-bit layout: P values fill Q words exactly,
    and value j of every period sits at the same bits of its period's words."""
    g = math.gcd(k, 64)
    return 64 // g, k // g


def _pack_periodic(v: np.ndarray, k: int) -> np.ndarray:
    """:func:`_pack_words`'s layout by periods: value j of a period goes to word (j*k) >> 6 at
    shift (j*k) & 63 (spilling into the next word), the same place in every period, so each j
    is one shift-and-or over a column of periods. Blocks of periods are transposed first, so
    the columns are contiguous and stay in cache."""
    p, q = _period(k)
    m = v.size
    n_per = -(-m // p)
    src = np.zeros(n_per * p, np.uint64)
    src[:m] = v
    src = src.reshape(n_per, p)
    out = np.empty((n_per, q), np.uint64)
    for lo in range(0, n_per, _BLOCK):
        cols = np.ascontiguousarray(src[lo : lo + _BLOCK].T)
        dst = np.zeros((q, cols.shape[1]), np.uint64)
        for j in range(p):
            word, sh = divmod(j * k, 64)
            dst[word] |= cols[j] << np.uint64(sh)
            if sh + k > 64:
                dst[word + 1] |= cols[j] >> np.uint64(64 - sh)
        out[lo : lo + _BLOCK] = dst.T
    return out.view(np.uint8).reshape(-1)[: packed_size(m, k)].copy()


def _unpack_periodic(buf: np.ndarray, m: int, k: int) -> np.ndarray:
    """Inverse of :func:`_pack_periodic` (any k-bit layout of :func:`pack`)."""
    p, q = _period(k)
    n_per = -(-m // p)
    n = packed_size(m, k)
    raw = np.zeros(n_per * q * 8, np.uint8)
    raw[:n] = buf[:n]
    words = raw.view(np.uint64).reshape(n_per, q)
    out = np.empty((n_per, p), np.uint64)
    low = np.uint64((1 << k) - 1)
    for lo in range(0, n_per, _BLOCK):
        src = np.ascontiguousarray(words[lo : lo + _BLOCK].T)
        cols = np.empty((p, src.shape[1]), np.uint64)
        for j in range(p):
            word, sh = divmod(j * k, 64)
            cols[j] = src[word] >> np.uint64(sh)
            if sh + k > 64:
                cols[j] |= src[word + 1] << np.uint64(64 - sh)
        cols &= low
        out[lo : lo + _BLOCK] = cols.T
    return out.reshape(-1)[:m]


def put_bits(wire: np.ndarray, bit_off: int, packed: np.ndarray, nbits: int) -> None:
    """OR the first ``nbits`` bits of a packed stream (``pack``'s output, bit 0 first) into
    ``wire`` (uint8) from bit ``bit_off`` on. The bytes it touches must hold zeros where the
    stream goes (a zeroed buffer filled by such calls), so neighbouring streams may share a
    byte at either end and be written in any order."""
    if nbits <= 0:
        return
    o, b = divmod(int(bit_off), 8)
    p = np.asarray(packed, np.uint8)[: (nbits + 7) // 8]
    if b == 0:
        wire[o : o + p.size] |= p
        return
    nb = (b + nbits + 7) // 8
    s = np.zeros(p.size + 1, np.uint8)
    s[:-1] = p << np.uint8(b)
    s[1:] |= p >> np.uint8(8 - b)
    wire[o : o + nb] |= s[:nb]


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
