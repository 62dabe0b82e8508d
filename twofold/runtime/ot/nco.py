"""1-out-of-N OT (N <= 256) from m = ceil(log2 N) correlated OTs (the Naor-Pinkas style reduction
used with silent OT in Cheetah, USENIX Security 2022, §2-§5), k-bit messages.

The receiver with choice c takes COT i with choice bit c_i (m chosen bits on the wire). For
COT (j, i) and bit v the sender derives R_{j,i,v} = H(q_{j,i} ^ v*Delta) (tweakable
correlation-robust hash, as many 128-bit blocks as needed), read as 2^(m-1) fields of k' bits
(k' = k rounded up to a power of two). Entry x of OT j is masked by

    key_j(x) = XOR_i field_{x without bit i}(R_{j,i,x_i}),

and the receiver knows R_{j,i,c_i} only, hence key_j(c). For x != c pick i with x_i != c_i:
field x-without-i of R_{j,i,1-c_i} appears in key_j(x) and in no other key, so all keys but
key_j(c) are jointly pseudorandom to the receiver. Sender: 2m hashes per OT; traffic m bits up
and N*k bits down per OT (1-of-16, k = 2: 36 bits, against 288 with KK13 on IKNP).
"""

from __future__ import annotations

import numpy as np

from .crhash import crhash_wide
from .parts import Parts

_SUB = 1 << 15  # OTs per hashing batch


def layout(nmsg: int, k: int) -> tuple[int, int, int, int]:
    """(m, fields per hash, field bits k', 128-bit blocks per hash) for N = nmsg, k bits."""
    m = max(1, (int(nmsg) - 1).bit_length())
    f = 1 << (m - 1)
    kk = 1 << max(0, (int(k) - 1).bit_length())
    return m, f, kk, max(1, (f * kk + 127) // 128)


def _fields(h: np.ndarray, f: int, kk: int) -> np.ndarray:
    """The first f fields of kk bits of every row of h (uint64[r, 2*blocks]), uint64[r, f]."""
    r = h.shape[0]
    if kk >= 8:
        return h.view(np.dtype(f"<u{kk // 8}"))[:, :f].astype(np.uint64)
    b = h.view(np.uint8)[:, : (f * kk + 7) // 8]
    per = 8 // kk
    sh = (np.arange(per, dtype=np.uint8) * np.uint8(kk))[None, None, :]
    v = (b[:, :, None] >> sh) & np.uint8((1 << kk) - 1)
    return v.reshape(r, -1)[:, :f].astype(np.uint64)


def _narrow(bits: int) -> np.dtype:
    """The narrowest unsigned dtype of at least ``bits`` bits."""
    return np.dtype(
        next(
            t
            for t in (np.uint8, np.uint16, np.uint32, np.uint64)
            if 8 * np.dtype(t).itemsize >= bits
        )
    )


def _drop_bit(x: np.ndarray, i: int) -> np.ndarray:
    """x with bit i removed (the higher bits move down by one)."""
    return ((x >> (i + 1)) << i) | (x & ((1 << i) - 1))


def _perm(nmsg: int, m: int, f: int) -> list[np.ndarray]:
    """Per COT i: the column of entry x in the concatenation [fields(R_0) | fields(R_1)]."""
    x = np.arange(nmsg, dtype=np.int64)
    return [((x >> i) & 1) * f + _drop_bit(x, i) for i in range(m)]


def _row_chunks(ext, chan, n: int, cols, step: int):  # noqa: ANN001, ANN202
    """The n COT rows of one extension batch as (lo, hi, rows, tweak index of row lo) per
    chunk of ``step`` rows: the silent source's pool views, or the IKNP chunks collected and
    cut (``cols`` None: the sender)."""
    if hasattr(ext, "extend_chunks"):
        if cols is None:
            yield from ext.extend_chunks(chan, n, step)
        else:
            yield from ext.extend_chunks(chan, n, cols, step)
        return
    rows = np.empty((n, 2), np.uint64)
    start = [0]

    def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
        if lo == 0:
            start[0] = tw
        rows[lo:hi] = q

    if cols is None:
        ext.extend(chan, n, each)
    else:
        ext.extend(chan, n, cols, each)
    for lo in range(0, n, step):
        yield lo, min(n, lo + step), rows[lo : lo + step], start[0] + lo


def nco_send(ext, chan, tables: np.ndarray, k: int | Parts, domain: int) -> None:  # noqa: ANN001
    """Sender: ``tables`` uint64[n, N] of k-bit messages (or rows in ``Parts`` of several
    widths), or uint8[n, N] when every k is at most 8; ``ext`` a 128-bit COT sender."""
    n, nmsg = tables.shape
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    m, f, kk, nblk = layout(nmsg, parts.k)
    s = np.asarray(ext.s, np.uint64)
    word = f * kk <= 64  # all fields of a hash in its first 64-bit word: shifts, no gathers
    dt = _narrow(min(f * kk, 64))
    perm = _perm(nmsg, m, f)
    x = np.arange(nmsg, dtype=np.int64)
    sel = [(x >> i) & 1 for i in range(m)]
    shift = [(_drop_bit(x, i) * kk).astype(dt) for i in range(m)]
    wire = np.empty(parts.nbytes, np.uint8)
    for lo, hi, r, tw in _row_chunks(ext, chan, n * m, None, _SUB * m):
        j0, j1 = lo // m, hi // m
        h0 = crhash_wide(r, tw, domain, nblk)
        r1 = r.copy()
        r1[:, 0] ^= s[0]
        r1[:, 1] ^= s[1]
        h1 = crhash_wide(r1, tw, domain, nblk)
        if word:  # in the narrowest dtype that holds the fields: less memory traffic
            both = np.empty((j1 - j0, m, 2), dt)
            both[:, :, 0] = h0[:, 0].reshape(j1 - j0, m)
            both[:, :, 1] = h1[:, 0].reshape(j1 - j0, m)
            key = both[:, 0, sel[0]] >> shift[0]
            for i in range(1, m):
                key ^= both[:, i, sel[i]] >> shift[i]
        else:
            f0 = _fields(h0, f, kk).reshape(j1 - j0, m, f)
            f1 = _fields(h1, f, kk).reshape(j1 - j0, m, f)
            both = np.concatenate([f0, f1], axis=2)
            key = both[:, 0, perm[0]]
            for i in range(1, m):
                key ^= both[:, i, perm[i]]
        # in the tables' dtype: a uint8 table has k <= 8, so the key's low byte is its field
        out = np.bitwise_xor(tables[j0:j1], key, dtype=tables.dtype, casting="unsafe")
        parts.put(wire, j0, out)  # _SUB * N * k bits: every chunk starts on a byte
    chan.send(wire)


def nco_recv(ext, chan, choices: np.ndarray, nmsg: int, k: int | Parts, domain: int) -> np.ndarray:  # noqa: ANN001, E501
    """Receiver: choices uint8[n] in [0, N); returns the chosen k-bit messages uint64[n]."""
    n = choices.shape[0]
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    m, f, kk, nblk = layout(nmsg, parts.k)
    c = choices.astype(np.int64)
    bits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8).reshape(-1)
    npad = max(64, (n * m + 63) // 64 * 64)
    packed = np.packbits(
        np.concatenate([bits, np.zeros(npad - n * m, np.uint8)]), bitorder="little"
    )
    cols = lambda lo, hi: packed[lo // 8 : hi // 8]  # noqa: E731
    key = np.zeros(n, np.uint64)
    ar = np.arange(n)
    word = f * kk <= 64
    for lo, hi, r, tw in _row_chunks(ext, chan, n * m, cols, _SUB * m):
        j0, j1 = lo // m, hi // m
        h = crhash_wide(r, tw, domain, nblk)
        cj = c[j0:j1]
        if word:
            w = h[:, 0].reshape(j1 - j0, m)
            for i in range(m):
                key[j0:j1] ^= w[:, i] >> (_drop_bit(cj, i) * kk).astype(np.uint64)
        else:
            fr = _fields(h, f, kk).reshape(j1 - j0, m, f)
            for i in range(m):
                key[j0:j1] ^= fr[ar[: j1 - j0], i, _drop_bit(cj, i)]
    return parts.take(chan.recv_array(np.uint8, parts.nbytes), c, key)
