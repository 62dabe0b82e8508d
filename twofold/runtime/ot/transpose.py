"""Bit-matrix transpose for OT extension, with an 8x8 SWAR kernel on uint64 (Hacker's Delight 7-3).

Layout (little bit order everywhere): a packed bit matrix ``M`` of shape (rows, cols/8) uint8 holds
bit (r, c) at byte ``M[r, c // 8]``, bit ``c % 8``. :func:`transpose_bits` returns the packed
(cols, rows/8) matrix with bit (c, r) = bit (r, c). One numpy pass: gather 8x8 blocks into uint64
words, transpose every word with three masked delta swaps, scatter the words back (~0.06 s for
128 x 2^20 here, against ~1 s through unpackbits/transpose/packbits).
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0x00AA00AA00AA00AA)
_M2 = np.uint64(0x0000CCCC0000CCCC)
_M3 = np.uint64(0x00000000F0F0F0F0)
_S1, _S2, _S3 = np.uint64(7), np.uint64(14), np.uint64(28)


def transpose8x8_words(x: np.ndarray) -> np.ndarray:
    """In place: each uint64 word (byte k = row k, bit b = column b) becomes its transpose."""
    t = np.empty_like(x)
    for m, s in ((_M1, _S1), (_M2, _S2), (_M3, _S3)):
        np.right_shift(x, s, out=t)
        t ^= x
        t &= m
        x ^= t
        t <<= s
        x ^= t
    return x


_CHUNK_WORDS = 256  # column words per block: a 128-row block is 256 KiB and stays in cache


def transpose_bits(m: np.ndarray) -> np.ndarray:
    """Transpose a packed bit matrix (rows, cols/8) uint8 -> (cols, rows/8).

    Needs rows % 8 == 0 and cols % 64 == 0. Per cache-sized block of 64-column words: a word-level
    transpose, an in-cache byte shuffle into 8x8 bit blocks, the SWAR kernel, and the scatter.
    """
    rows, cb = m.shape
    if rows % 8 or cb % 8:
        raise ValueError(f"transpose_bits needs rows % 8 == 0 and cols % 64 == 0, got {m.shape}")
    m = np.ascontiguousarray(m)
    rb, cbw = rows // 8, cb // 8
    m64 = m.view(np.uint64)
    out = np.empty((cb * 8, rb), np.uint8)
    o3 = out.reshape(cb, 8, rb)
    for s in range(0, cbw, _CHUNK_WORDS):
        e = min(cbw, s + _CHUNK_WORDS)
        w = np.ascontiguousarray(m64[:, s:e].T)  # (words, rows): row r's 64 columns
        # blocks[j, J, i, k] = byte J of row 8i+k in word column j: one 8x8 bit block per uint64
        blocks = np.ascontiguousarray(
            w.view(np.uint8).reshape(e - s, rb, 8, 8).transpose(0, 3, 1, 2)
        )
        words = transpose8x8_words(blocks.view(np.uint64).reshape(-1, rb))
        o3[8 * s : 8 * e] = words.view(np.uint8).reshape(-1, rb, 8).transpose(0, 2, 1)
    return out
