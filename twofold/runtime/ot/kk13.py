"""1-out-of-N OT for N <= 256 (Kolesnikov-Kumaresan, CRYPTO 2013), on the width-256 extension.

The receiver's choice r is encoded by the Walsh-Hadamard code C(r)_i = <r, i> mod 2 for
i in [0, 256): distinct codewords differ in exactly 128 positions, so the sender's key for a
message x != r, H(q ^ (C(x) & s)), keeps 128 unknown bits of s. Message j, entry x is sent as
T[j, x] ^ H(j, q_j ^ (C(x) & s)) truncated to k bits; the receiver unmasks entry r_j with H(j, t_j).
"""

from __future__ import annotations

import numpy as np

from .crhash import mmo_into, tweaks
from .iknp import ExtReceiver, ExtSender
from .parts import Parts, check_op, seal

WIDTH = 256
_SUB = 1 << 12  # OTs per batched hash call on the sender (N x 4096 blocks stay in cache)


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


class _RowHasher:
    """crhash256 of the rows of one chunk, XORed with a per-message offset: f(f(a ^ T) ^ b),
    f(z) = pi(z) ^ z (MMO chaining of fixed-key AES), keeping the low 64 bits. The tweaked
    halves are split out once per chunk; two scratch buffers alternate as AES input/output."""

    def __init__(self, rows: np.ndarray, tw: np.ndarray) -> None:
        m = rows.shape[0]
        self.m = m
        self.a = np.bitwise_xor(rows[:, :2], tw)
        self.b = np.ascontiguousarray(rows[:, 2:])
        self.z = np.empty((m + 1, 2), np.uint64)
        self.h = np.empty((m + 1, 2), np.uint64)

    def __call__(self, off: np.ndarray) -> np.ndarray:
        m, z, h = self.m, self.z, self.h
        np.bitwise_xor(self.a[:, 0], off[0], out=z[:m, 0])  # limb by limb: a broadcast over
        np.bitwise_xor(self.a[:, 1], off[1], out=z[:m, 1])  # a length-2 axis is ~7x slower
        mmo_into(z[:m], h)
        h[:m] ^= self.b
        h[:m, 0] ^= off[2]
        h[:m, 1] ^= off[3]
        mmo_into(h[:m], z)
        return z[:m, 0]


def codeword_columns(choices: np.ndarray, npad: int, nmsg: int) -> np.ndarray:
    """The packed columns (WIDTH, npad/8) of the codewords C(r_j) of ``choices`` (zero rows up
    to npad): column i is <r_j, i> mod 2, which for r < 2^b depends on i mod 2^b only, so it is
    the XOR of the packed bit planes of r selected by i's low b bits (no bit transpose)."""
    b = max(1, (int(nmsg) - 1).bit_length())
    c = np.zeros(npad, np.uint8)
    c[: choices.shape[0]] = choices
    comb = np.zeros((1 << b, npad // 8), np.uint8)
    for j in range(b):
        plane = np.packbits((c >> np.uint8(j)) & np.uint8(1), bitorder="little")
        comb[1 << j : 2 << j] = comb[: 1 << j] ^ plane
    return comb[np.arange(WIDTH) & ((1 << b) - 1)]


def kk_send(
    ext: ExtSender, chan, tables: np.ndarray, k: int | Parts, domain: int, op: str | None = None
):  # noqa: ANN001, ANN201, E501
    """Sender side: ``tables`` uint64[n, N] of k-bit messages (or rows in ``Parts``), or
    uint8[n, N] when every k is at most 8. With ``op`` (the shares flavour, ``Parts(implicit=
    True)``: ``parts.seal``) the tables are values and the sender's shares r are returned."""
    n, nmsg = tables.shape
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    check_op(parts, op)
    shares = np.empty(n, tables.dtype) if op else None
    cs = CODEWORDS64[:nmsg] & ext.s[None, :]
    wire = parts.wire()

    sub = _SUB
    z = np.empty((nmsg * sub + 1, 2), np.uint64)
    h = np.empty((nmsg * sub + 1, 2), np.uint64)
    # C(x) & s per message, repeated over `sub` OTs once: then every XOR below is between arrays
    # whose (OT, limb) axes are contiguous (a broadcast over a length-2 axis is ~7x slower)
    cs_lo = np.ascontiguousarray(np.broadcast_to(cs[:, None, :2], (nmsg, sub, 2)))
    cs_hi = np.ascontiguousarray(np.broadcast_to(cs[:, None, 2:], (nmsg, sub, 2)))

    def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
        a = np.bitwise_xor(q[:, :2], tweaks(tw, hi - lo, domain))
        b = np.ascontiguousarray(q[:, 2:])
        out = np.empty((hi - lo, nmsg), np.uint64)
        for s0 in range(0, hi - lo, sub):  # all N messages of `sub` OTs per AES call
            s1 = min(hi - lo, s0 + sub)
            r = s1 - s0
            z3, h3 = z[: nmsg * r].reshape(nmsg, r, 2), h[: nmsg * r].reshape(nmsg, r, 2)
            np.bitwise_xor(a[None, s0:s1], cs_lo[:, :r], out=z3)
            mmo_into(z[: nmsg * r], h)
            h3 ^= b[None, s0:s1]
            h3 ^= cs_hi[:, :r]
            mmo_into(h[: nmsg * r], z)
            if op:  # the keys, sealed below with the sender's shares
                out[s0:s1] = z3[:, :, 0].T
            else:
                np.bitwise_xor(tables[lo + s0 : lo + s1], z3[:, :, 0].T, out=out[s0:s1])
        if op:
            out = seal(parts, lo, tables[lo:hi], out, op, shares)
        parts.put(wire, lo, out)  # chunks start at multiples of 64 OTs: byte aligned

    ext.extend(chan, n, each)
    chan.send(wire)
    return shares


def kk_recv(ext: ExtReceiver, chan, choices: np.ndarray, nmsg: int, k: int | Parts, domain: int):  # noqa: ANN001, ANN201, E501
    """Receiver side: choices uint8[n] in [0, nmsg); returns the chosen k-bit messages."""
    n = choices.shape[0]
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    h = np.empty(n, np.uint64)

    def cols(lo: int, hp: int) -> np.ndarray:
        return codeword_columns(choices[lo : min(n, hp)], hp - lo, nmsg)

    zero = np.zeros(4, np.uint64)

    def each(t: np.ndarray, tw: int, lo: int, hi: int) -> None:
        h[lo:hi] = _RowHasher(t, tweaks(tw, hi - lo, domain))(zero)

    ext.extend(chan, n, cols, each)
    return parts.take(chan.recv_array(np.uint8, parts.nbytes), choices, h)
