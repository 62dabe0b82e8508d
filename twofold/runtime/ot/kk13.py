"""1-out-of-N OT for N <= 256 (Kolesnikov-Kumaresan, CRYPTO 2013), on the width-256 extension.

The receiver's choice r is encoded by the Walsh-Hadamard code C(r)_i = <r, i> mod 2 for
i in [0, 256): distinct codewords differ in exactly 128 positions, so the sender's key for a
message x != r, H(q ^ (C(x) & s)), keeps 128 unknown bits of s. Message j, entry x is sent as
T[j, x] ^ H(j, q_j ^ (C(x) & s)) truncated to k bits; the receiver unmasks entry r_j with H(j, t_j).
"""

from __future__ import annotations

import numpy as np

from .. import bitpack
from ..ring import mask
from .crhash import mmo_into, tweaks
from .iknp import ExtReceiver, ExtSender
from .transpose import transpose_bits

WIDTH = 256


def _codewords() -> np.ndarray:
    x = np.arange(256, dtype=np.uint16)[:, None]
    i = np.arange(256, dtype=np.uint16)[None, :]
    par = np.bitwise_count(x & i) & 1 if hasattr(np, "bitwise_count") else None
    if par is None:  # numpy < 2.0
        v = x & i
        par = np.zeros_like(v)
        for b in range(8):
            par ^= (v >> b) & 1
    return np.packbits(par.astype(np.uint8), axis=1, bitorder="little")  # (256, 32) bytes


CODEWORDS = _codewords()
CODEWORDS64 = CODEWORDS.view(np.uint64)  # (256, 4)


def _hash_rows(rows: np.ndarray, tw: np.ndarray, off: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Low 64 bits of crhash256(rows ^ off) with precomputed tweaks ``tw``: f(f(a ^ T) ^ b),
    f(z) = pi(z) ^ z. ``h`` is scratch uint64[m + 1, 2]; returns a view of it."""
    z = np.bitwise_xor(tw, off[:2])
    z ^= rows[:, :2]
    mmo_into(z, h)
    m = rows.shape[0]
    h[:m] ^= rows[:, 2:]
    h[:m] ^= off[2:]
    z[:] = h[:m]
    mmo_into(z, h)
    return h[:m, 0]


def kk_send(ext: ExtSender, chan, tables: np.ndarray, k: int, domain: int) -> None:  # noqa: ANN001
    """Sender side: ``tables`` uint64[n, N] of k-bit messages."""
    n, nmsg = tables.shape
    m = mask(k)
    cs = CODEWORDS64[:nmsg] & ext.s[None, :]
    out = np.empty((n, nmsg), np.uint64)

    def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
        t = tweaks(tw, hi - lo, domain)
        h = np.empty((hi - lo + 1, 2), np.uint64)
        for x in range(nmsg):
            np.bitwise_xor(tables[lo:hi, x], _hash_rows(q, t, cs[x], h), out=out[lo:hi, x])

    ext.extend(chan, n, each)
    out &= m
    chan.send(bitpack.pack(out, k))


def kk_recv(ext: ExtReceiver, chan, choices: np.ndarray, nmsg: int, k: int, domain: int):  # noqa: ANN001, ANN201
    """Receiver side: choices uint8[n] in [0, nmsg); returns the chosen k-bit messages."""
    n = choices.shape[0]
    h = np.empty(n, np.uint64)

    def cols(lo: int, hp: int) -> np.ndarray:
        cw = np.zeros((hp - lo, WIDTH // 8), np.uint8)
        hi = min(n, hp)
        cw[: hi - lo] = CODEWORDS[choices[lo:hi]]
        return transpose_bits(cw)

    zero = np.zeros(4, np.uint64)

    def each(t: np.ndarray, tw: int, lo: int, hi: int) -> None:
        scratch = np.empty((hi - lo + 1, 2), np.uint64)
        h[lo:hi] = _hash_rows(t, tweaks(tw, hi - lo, domain), zero, scratch)

    ext.extend(chan, n, cols, each)
    y = bitpack.unpack(chan.recv_array(np.uint8, bitpack.packed_size(n * nmsg, k)), n * nmsg, k)
    got = y.reshape(n, nmsg)[np.arange(n), choices]
    return (got ^ h) & mask(k)
