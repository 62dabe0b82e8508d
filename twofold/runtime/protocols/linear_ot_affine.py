"""Per-channel affine by correlated OT: shares of g[c] * x_c[c, :] mod 2^ell, where the server
holds the scale g (one number per channel) and the client its share x_c (CrypTFlow2 §5's
OT multiplication with the roles set by who holds what; DESIGN.md §5).

g*x = sum_i 2^i g_i x with g_i the bits of g, and 2^i * v mod 2^ell needs only the low ell-i bits
of v. So each (channel c, bit i) is one COT over Z_2^(ell-i): the server's choice is g_i, the
client's correlation the whole channel vector x_c[c, :]. From random OTs with long messages
(``ot.lrot``, m_0 and m_1 streams of words P_0, P_1) the client sends u = P_0 - P_1 + x_c and
keeps -P_0; the server keeps P_g + g*u (= P_0 + g*x_c). Each share sums its terms times 2^i.

Cost: ell OTs per channel (16 bytes each) plus ell(ell+1)/2 bits per element on the wire (66
bytes at ell=32, 88 at ell=37): the fields u_i of one element are packed without gaps into
machine words (first-fit decreasing, so no field straddles a word), sent word-major. The work is
a few vectorised passes per bit over chunks of ~2^15 elements (cache-sized); the client
streams chunks as it computes them, so the server works on one while the client does the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

CHUNK = 1 << 16  # elements (channels x positions) per chunk: fewer Python calls vs. cache


@dataclass(frozen=True)
class Layout:
    """Where each bit's field u_i lives: ``words[w]`` = ((i, offset), ...), bottom field first;
    word w goes on the wire as its low ``nbytes[w]`` bytes per element."""

    ell: int
    dtype: type
    wb: int
    words: tuple[tuple[tuple[int, int], ...], ...]
    nbytes: tuple[int, ...]

    @property
    def bytes_per_element(self) -> int:
        return sum(self.nbytes)


@cache
def layout(ell: int) -> Layout:
    """First-fit decreasing packing of the field widths ell, ell-1, ..., 1 into words (uint32
    for ell <= 32, else uint64); full words first, so only the tail may be trimmed."""
    if not 1 <= ell <= 64:
        raise ValueError(f"affine: ring bit width ell must be in [1, 64], got {ell}")
    dt, wb = (np.uint32, 32) if ell <= 32 else (np.uint64, 64)
    bins: list[list] = []  # [fill, [(i, off), ...]]
    for i in range(ell):
        k = ell - i
        for b in bins:
            if b[0] + k <= wb:
                b[1].append((i, b[0]))
                b[0] += k
                break
        else:
            bins.append([k, [(i, 0)]])
    bins.sort(key=lambda b: -b[0])
    return Layout(
        ell,
        dt,
        wb,
        tuple(tuple(b[1]) for b in bins),
        tuple((b[0] + 7) // 8 for b in bins),
    )


def chunks(C: int, d: int, per: int | None = None) -> list[tuple[int, int, int, int]]:  # noqa: N803
    """(c0, c1, e0, e1): whole channels while they fit, else one channel in 4-aligned slices
    (a slice starts on a stream block: 4 words of 32 bits, 2 of 64)."""
    per = CHUNK if per is None else per
    if d <= per:
        cc = max(1, per // max(1, d))
        return [(c0, min(C, c0 + cc), 0, d) for c0 in range(0, C, cc)]
    seg = max(4, per // 4 * 4)
    return [(c, c + 1, e0, min(d, e0 + seg)) for c in range(C) for e0 in range(0, d, seg)]


def _words(lay: Layout, buf: np.ndarray, cc: int, ne: int) -> list[np.ndarray]:
    """Views of the chunk's wire buffer as [cc, ne] words (full words) or fresh arrays (tail)."""
    wbytes = lay.wb // 8
    out, off = [], 0
    for nb in lay.nbytes:
        if nb == wbytes:
            out.append(buf[off : off + cc * ne * nb].view(lay.dtype).reshape(cc, ne))
        else:
            out.append(np.zeros((cc, ne), lay.dtype))
        off += cc * ne * nb
    return out


def _tail(lay: Layout, buf: np.ndarray, words: list[np.ndarray], cc: int, ne: int, put: bool):  # noqa: ANN202, PLR0913
    """Copy the trimmed (partial) words into (``put``) or out of the wire buffer."""
    wbytes = lay.wb // 8
    off = 0
    for w, nb in zip(words, lay.nbytes, strict=True):
        if nb != wbytes:
            seg = buf[off : off + cc * ne * nb].reshape(cc * ne, nb)
            wv = w.reshape(cc * ne).view(np.uint8).reshape(cc * ne, wbytes)
            if put:
                seg[...] = wv[:, :nb]
            else:
                wv[:, :nb] = seg
        off += cc * ne * nb


def _pads(blocks: np.ndarray, dt: type, ne: int) -> np.ndarray:
    """Stream blocks uint64[cc, nblk, 2] as words [cc, ne] of dtype dt (a view)."""
    return blocks.view(dt).reshape(blocks.shape[0], -1)[:, :ne]


def client(party, xc: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """COT sender: xc [C, d] uint64 (the client's share per channel); returns its share."""
    C, d = xc.shape  # noqa: N806
    lay = layout(ell)
    dt, epb = lay.dtype, 128 // lay.wb
    lot = party.ot.lrot_send(C * ell)
    y = np.empty((C, d), np.uint64)
    for c0, c1, e0, e1 in chunks(C, d):
        cc, ne = c1 - c0, e1 - e0
        blk0, nblk = e0 // epb, -(-ne // epb)
        x = xc[c0:c1, e0:e1].astype(dt)
        acc = np.zeros((cc, ne), dt)
        u = np.empty((cc, ne), dt)
        buf = np.empty(cc * ne * lay.bytes_per_element, np.uint8)
        words = _words(lay, buf, cc, ne)
        base = np.arange(c0, c1, dtype=np.int64) * ell
        for w, fields in zip(words, lay.words, strict=True):
            top = len(fields) - 1
            for fi, (i, off) in enumerate(fields):
                k = ell - i
                b0, b1 = lot.blocks(base + i, blk0, nblk, both=True)
                p0, p1 = _pads(b0, dt, ne), _pads(b1, dt, ne)
                np.subtract(p0, p1, out=u)
                u += x
                if not (fi == top and off + k == lay.wb):  # only the top field needs no mask
                    u &= dt((1 << k) - 1)
                if fi == 0:
                    w[...] = u
                else:
                    u <<= dt(off)
                    w |= u
                p0 <<= dt(i)
                acc -= p0
        _tail(lay, buf, words, cc, ne, put=True)
        party.chan.send(buf)
        y[c0:c1, e0:e1] = acc
    return y & np.uint64((1 << ell) - 1)


def server(party, g: np.ndarray, d: int, ell: int) -> np.ndarray:  # noqa: ANN001
    """COT receiver: g [C] ring scales (uint64 < 2^ell); returns the server's share [C, d]."""
    C = g.shape[0]  # noqa: N806
    lay = layout(ell)
    dt, epb = lay.dtype, 128 // lay.wb
    bits = ((g[:, None] >> np.arange(ell, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(
        np.uint8
    )
    lot = party.ot.lrot_recv(bits.reshape(-1))
    sel_mask = np.zeros((C, ell), dt) - bits.astype(dt)  # all ones where the bit is set
    y = np.empty((C, d), np.uint64)
    for c0, c1, e0, e1 in chunks(C, d):
        cc, ne = c1 - c0, e1 - e0
        blk0, nblk = e0 // epb, -(-ne // epb)
        buf = party.chan.recv_array(np.uint8, cc * ne * lay.bytes_per_element)
        words = _words(lay, buf, cc, ne)
        _tail(lay, buf, words, cc, ne, put=False)
        acc = np.zeros((cc, ne), dt)
        t = np.empty((cc, ne), dt)
        base = np.arange(c0, c1, dtype=np.int64) * ell
        for w, fields in zip(words, lay.words, strict=True):
            for i, off in fields:
                p = _pads(lot.blocks(base + i, blk0, nblk), dt, ne)
                bm = sel_mask[c0:c1, i : i + 1]
                if off:
                    np.right_shift(w, dt(off), out=t)
                    t &= bm
                else:  # bits above the field are other fields: they leave the ring below
                    np.bitwise_and(w, bm, out=t)
                t += p
                t <<= dt(i)
                acc += t
        y[c0:c1, e0:e1] = acc
    return y & np.uint64((1 << ell) - 1)
