"""Scalar-times-vector products by correlated OT with long messages: the receiver holds ring
scalars g[c], the sender vectors v[c, :]; both end with additive shares of g[c]*v[c, :] mod 2^ell,
optionally summed over groups of consecutive c (CrypTFlow2 §5's OT multiplication; DESIGN.md §5).
The per-channel affine (g = the server's scale, v = the client's channel vector) and the OT
matmul (g = the client's share entries, v = the server's weight columns) are both this.

g*v = sum_i 2^i g_i v with g_i the bits of g, and 2^i * v mod 2^ell needs only the low ell-i bits
of v. So each (c, bit i) is one COT over Z_2^(ell-i) with the choice g_i and the correlation the
whole vector v[c, :]. From random OTs with long messages (``ot.lrot``, m_0 and m_1 streams of
words P_0, P_1) the sender sends u = P_0 - P_1 + v and keeps -P_0; the receiver keeps
P_g + g*u (= P_0 + g*v). Each share sums its terms times 2^i.

Cost: ell OTs per scalar (16 bytes each) plus ell(ell+1)/2 bits per vector entry on the wire (66
bytes at ell=32, 88 at ell=37): the fields u_i of one entry are packed without gaps into
machine words (first-fit decreasing, so no field straddles a word), sent word-major. The work is
a few vectorised passes per bit over chunks of ~2^16 entries; the sender streams chunks as it
computes them, so the receiver works on one while the sender does the next. Memory is bounded
by the chunk and by extension batches of ``BATCH_OTS`` OTs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

CHUNK = 1 << 16  # vector entries per chunk: fewer Python calls vs. cache
BATCH_OTS = 1 << 20  # OTs per extension batch (their rows take 16 bytes each)


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
def layout(ell: int, lo: int = 0, hi: int | None = None) -> Layout:
    """First-fit decreasing packing of the field widths ell - i for the scalar bits i in
    [lo, hi) (default all: ell, ell-1, ..., 1) into words (uint32 for ell <= 32, else uint64);
    full words first, so only the tail may be trimmed."""
    hi = ell if hi is None else hi
    if not 1 <= ell <= 64:
        raise ValueError(f"affine: ring bit width ell must be in [1, 64], got {ell}")
    if not 0 <= lo < hi <= ell:
        raise ValueError(f"COT products: scalar bits [{lo}, {hi}) outside [0, {ell})")
    dt, wb = (np.uint32, 32) if ell <= 32 else (np.uint64, 64)
    bins: list[list] = []  # [fill, [(i, off), ...]]
    for i in range(lo, hi):
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
    """(c0, c1, e0, e1): whole channels while they fit, else one channel in 16-aligned slices
    (a slice starts on a stream block: 16 pad words of 8 bits, 8 of 16, ...)."""
    per = CHUNK if per is None else per
    if d <= per:
        cc = max(1, per // max(1, d))
        return [(c0, min(C, c0 + cc), 0, d) for c0 in range(0, C, cc)]
    seg = max(16, per // 16 * 16)
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


_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def pad_dtype(k: int) -> type:
    """The narrowest unsigned type holding a k-bit field: the pad words of a bit position with
    k = ell - i bits (streams are cut into words of this width, so small fields hash less)."""
    return _UINT[next(b for b in (8, 16, 32, 64) if b >= k)]


def _pads(lot, sel: np.ndarray, e0: int, ne: int, k: int, both: bool):  # noqa: ANN001, ANN202
    """Words e0..e0+ne of the streams of OTs ``sel`` as [len(sel), ne] views of the k-bit
    field's pad type (the sender gets both streams)."""
    pdt = pad_dtype(k)
    epb = 16 // np.dtype(pdt).itemsize
    blocks = lot.blocks(sel, e0 // epb, -(-ne // epb), both=both)
    view = [b.view(pdt).reshape(b.shape[0], -1)[:, :ne] for b in (blocks if both else (blocks,))]
    return tuple(view) if both else view[0]


Rows = Callable[[int, int, int, int], np.ndarray]


def _ot(party):  # noqa: ANN001, ANN202
    ot = getattr(party, "ot", None)
    if ot is None:
        raise ValueError("the OT linear protocols need a session with an OT extension (party.ot)")
    return ot


def _batches(C: int, nb: int, group: int) -> list[tuple[int, int]]:  # noqa: N803
    """Scalar ranges of one extension batch each (``nb`` OTs per scalar), aligned to whole
    groups."""
    per = max(group, BATCH_OTS // max(1, nb) // group * group)
    return [(b0, min(C, b0 + per)) for b0 in range(0, C, per)]


def _reduce_into(y: np.ndarray, acc: np.ndarray, c0: int, c1: int, e0: int, group: int) -> None:
    """y[c // group, e0:...] += acc[c - c0] for c in c0..c1-1 (sums over each group)."""
    if group == 1:
        y[c0:c1, e0 : e0 + acc.shape[1]] += acc
        return
    gidx = np.arange(c0, c1) // group
    starts = np.flatnonzero(np.r_[True, gidx[1:] != gidx[:-1]])
    y[gidx[starts], e0 : e0 + acc.shape[1]] += np.add.reduceat(acc, starts, axis=0, dtype=y.dtype)


def sender(  # noqa: PLR0913
    party,  # noqa: ANN001
    v: Rows | np.ndarray,
    C: int,  # noqa: N803
    d: int,
    ell: int,
    group: int = 1,
    lo: int = 0,
    hi: int | None = None,
) -> np.ndarray:
    """COT sender of the vectors ``v`` [C, d] (an array or ``v(c0, c1, e0, e1)`` giving that
    block; uint64, low ell bits used). Returns its share of sum over each group of ``group``
    consecutive c of g[c]*v[c, :], uint64 [C // group, d]. Only the scalar bits [lo, hi) are
    used (the receiver's g has no others): hi - lo OTs per scalar."""
    if C % group:
        raise ValueError(f"COT products: {C} scalars are not whole groups of {group}")
    rows = (lambda c0, c1, e0, e1: v[c0:c1, e0:e1]) if isinstance(v, np.ndarray) else v
    lay = layout(ell, lo, hi)
    nb = (ell if hi is None else hi) - lo
    dt = lay.dtype
    y = np.zeros((C // group, d), dt)
    for b0, b1 in _batches(C, nb, group):
        lot = _ot(party).lrot_send((b1 - b0) * nb)
        for c0, c1, e0, e1 in chunks(b1 - b0, d):
            cc, ne = c1 - c0, e1 - e0
            x = np.asarray(rows(b0 + c0, b0 + c1, e0, e1)).astype(dt)
            xs, us = {dt: x}, {}  # the vectors and a scratch field per pad type
            acc = np.zeros((cc, ne), dt)
            tmp = np.empty((cc, ne), dt)
            buf = np.empty(cc * ne * lay.bytes_per_element, np.uint8)
            words = _words(lay, buf, cc, ne)
            base = np.arange(c0, c1, dtype=np.int64) * nb - lo
            for w, fields in zip(words, lay.words, strict=True):
                top = len(fields) - 1
                for fi, (i, off) in enumerate(fields):
                    k = ell - i
                    pdt = pad_dtype(k)
                    if pdt not in us:
                        us[pdt] = np.empty((cc, ne), pdt)
                        xs.setdefault(pdt, x.astype(pdt))
                    u = us[pdt]
                    p0, p1 = _pads(lot, base + i, e0, ne, k, both=True)
                    np.subtract(p0, p1, out=u)
                    u += xs[pdt]
                    exact = k == 8 * u.itemsize or (fi == top and off + k == lay.wb)
                    if not exact:  # bits above the field would spill into the next one
                        u &= pdt((1 << k) - 1)
                    if fi == 0:
                        w[...] = u
                    else:
                        np.left_shift(u, dt(off), out=tmp)
                        w |= tmp
                    np.left_shift(p0, dt(i), out=tmp)
                    acc -= tmp
            _tail(lay, buf, words, cc, ne, put=True)
            party.chan.send(buf)
            _reduce_into(y, acc, b0 + c0, b0 + c1, e0, group)
    return y.astype(np.uint64) & np.uint64((1 << ell) - 1)


def receiver(  # noqa: PLR0913
    party,  # noqa: ANN001
    g: np.ndarray,
    d: int,
    ell: int,
    group: int = 1,
    lo: int = 0,
    hi: int | None = None,
) -> np.ndarray:
    """COT receiver of the scalars g [C] (uint64 < 2^ell, only bits [lo, hi) set); returns its
    share [C // group, d]."""
    C = g.shape[0]  # noqa: N806
    if C % group:
        raise ValueError(f"COT products: {C} scalars are not whole groups of {group}")
    lay = layout(ell, lo, hi)
    hi = ell if hi is None else hi
    nb = hi - lo
    dt = lay.dtype
    y = np.zeros((C // group, d), dt)
    for b0, b1 in _batches(C, nb, group):
        gb = np.asarray(g[b0:b1], np.uint64)
        pos = np.arange(lo, hi, dtype=np.uint64)[None, :]
        bits = ((gb[:, None] >> pos) & np.uint64(1)).astype(np.uint8)
        lot = _ot(party).lrot_recv(bits.reshape(-1))
        sel_mask = np.zeros((b1 - b0, nb), dt) - bits.astype(dt)  # all ones where the bit is set
        for c0, c1, e0, e1 in chunks(b1 - b0, d):
            cc, ne = c1 - c0, e1 - e0
            buf = party.chan.recv_array(np.uint8, cc * ne * lay.bytes_per_element)
            words = _words(lay, buf, cc, ne)
            _tail(lay, buf, words, cc, ne, put=False)
            acc = np.zeros((cc, ne), dt)
            t = np.empty((cc, ne), dt)
            base = np.arange(c0, c1, dtype=np.int64) * nb - lo
            for w, fields in zip(words, lay.words, strict=True):
                for i, off in fields:
                    p = _pads(lot, base + i, e0, ne, ell - i, both=False)
                    bm = sel_mask[c0:c1, i - lo : i - lo + 1]
                    if off:
                        np.right_shift(w, dt(off), out=t)
                        t &= bm
                    else:  # bits above the field are other fields: they leave the ring below
                        np.bitwise_and(w, bm, out=t)
                    t += p  # the pad's bits above the field leave the ring too
                    t <<= dt(i)
                    acc += t
            _reduce_into(y, acc, b0 + c0, b0 + c1, e0, group)
    return y.astype(np.uint64) & np.uint64((1 << ell) - 1)
