"""Piecewise-linear table evaluation of a public function on a shared input (SIRNN, Rathee et
al., IEEE S&P 2021, §4: LUTs over 1-out-of-N OT on the high bits; the tables and the rule are
``ir/lut.py``).

1. clamp: U = relu(x − LO) − relu(x − (HI − 1)) ∈ [0, HI − LO) (one ReLU call on both);
2. index: i = U >> shift by the known-MSB truncation (U ≥ 0), exact; the low bits
   r = U − i·2^shift locally; the shares of i mod 2^ell reduced mod 2^m are shares
   a (server) + b (client) = i mod 2^m;
3. tables: the server, as OT sender, offers for every element the rotated tables
   T[(a + j) mod 2^m] − ρ; the client chooses j = b and gets T[i] − ρ; the server keeps ρ.
   The intercept and the slope travel in ONE message: each as a k-bit number (k = its table's
   span + 1 bits, the table's minimum subtracted; ρ uniform mod 2^k), packed side by side
   (12 + 7 bits for a sigmoid at s = 11, against two ell-bit messages). A 2^m-entry choice
   with m > 8 is split into b = 256·b_hi + b_lo (KK13 offers N ≤ 256): for each
   q < 2^(m−8) the server offers T[(a + 256q + j) mod 2^m] − ρ + M_q under choice b_lo, and
   M_q by a 1-out-of-2^(m−8) OT under b_hi; the client unmasks the row q = b_hi and learns
   nothing of the other rows;
4. lift: shares c (client) + ρ (server) = v mod 2^k of a value v < 2^(k−1) become shares
   mod 2^ell (SIRNN §3's zero extension, with the known-MSB wrap of CrypTFlow2 §4.2):
   v = c + ρ − 2^k·w, w = msb(c) ∨ msb(ρ) (both top bits set: the sum wraps; one set:
   v < 2^(k−1) forces the wrap; none: it cannot). Shares of w mod 2^(ell − k) by one
   correlated OT: the server sends correlation 1 − msb(ρ), the client chooses msb(c), and
   w = msb(ρ) + msb(c)·(1 − msb(ρ)); both tables' lifts in one COT call. The server adds the
   table's minimum back;
5. y = a_i + trunc(b_i·r + 2^(shift−1), shift): one product of two shared values (correlated
   OT), one truncation — known-MSB when every b_i ≥ 0 (then b_i·r + 2^(shift−1) ≥ 0).

Communication per element: two ReLUs, two truncations, one product, 2^m·(k_a + k_b) bits of
tables and one COT of ell − min(k) bits. Bit-exact with the cleartext interpreter (same
clamp, floor shifts and tables; the lift is exact).
"""

from __future__ import annotations

import numpy as np

from ...ir.lut import entry_bits
from ._ot import cot, kkot
from ._util import as_ring, prg, wrap
from .arith import add_const
from .mul import mul
from .relu import relu
from .trunc import trunc

#: Table entries per OT batch (2^m per element and table, 8 bytes each: 32 MiB offered).
ENTRIES = 1 << 22


def _rand(party, shape: tuple[int, ...], ell: int) -> np.ndarray:  # noqa: ANN001
    """Uniform ring elements from the party's AES-CTR PRG (seeded from ``secrets``)."""
    return prg(party).ring(shape, ell)


def _lookup(party, idx: np.ndarray, tables: list[np.ndarray], ks: list[int]) -> list[np.ndarray]:  # noqa: ANN001, E501
    """Shares of each tables[t][i] mod 2^ks[t] from shares of i mod 2^m (flat arrays): one OT
    per element whose message packs every table's masked entry (sum(ks) <= 64 bits)."""
    size = tables[0].size
    lo_n = min(size, 256)
    hi_n = size // lo_n
    width = sum(ks)
    offs = np.cumsum([0, *ks[:-1]]).tolist()
    n = idx.size
    if party.is_server:
        rs = [_rand(party, (n,), k) for k in ks]
        masks = _rand(party, (hi_n, n), width) if hi_n > 1 else np.zeros((1, n), np.uint64)
        j = np.arange(lo_n, dtype=np.uint64)
        rows = []
        for q in range(hi_n):
            pos = ((idx[:, None] + np.uint64(q * lo_n) + j[None, :]) % np.uint64(size)).astype(
                np.int64
            )
            word = np.repeat(masks[q][:, None], lo_n, axis=1)
            for t, r, k, o in zip(tables, rs, ks, offs, strict=True):
                word += wrap(t[pos] - r[:, None], k) << np.uint64(o)
            rows.append(wrap(word, width))
        kkot(party, "server", np.concatenate(rows), lo_n, width)
        if hi_n > 1:
            kkot(party, "server", np.ascontiguousarray(masks.T), hi_n, width)
        return rs
    b_lo = (idx % np.uint64(lo_n)).astype(np.uint8)
    got = kkot(party, "server", np.tile(b_lo, hi_n), lo_n, width).reshape(hi_n, n)
    if hi_n == 1:
        word = got[0]
    else:
        b_hi = (idx // np.uint64(lo_n)).astype(np.int64)
        m = kkot(party, "server", b_hi.astype(np.uint8), hi_n, width)
        word = wrap(got[b_hi, np.arange(n)] - m, width)
    return [wrap(word >> np.uint64(o), k) for k, o in zip(ks, offs, strict=True)]


def _entries(party, i: np.ndarray, tables: list[np.ndarray], ell: int) -> list[np.ndarray]:  # noqa: ANN001, E501
    """Shares mod 2^ell of each tables[t][i] (flat): k-bit entries, packed into one OT message
    per element while they fit 64 bits, then lifted by one COT call (steps 3 and 4)."""
    size = int(tables[0].size)
    narrow, ks, bases = [], [], []
    for t in tables:
        k, base = entry_bits(t)
        narrow.append((np.asarray(t, np.int64) - base).view(np.uint64))
        ks.append(min(k, ell))
        bases.append(base)
    if sum(ks) > 64:  # too wide to pack: one table at a time
        return [_entries(party, i, [t], ell)[0] for t in tables]
    out = [np.empty_like(i) for _ in tables]
    per = max(1, ENTRIES // (size * len(tables)))
    for s in range(0, i.size, per):
        for o, v in zip(out, _lookup(party, i[s : s + per], narrow, ks), strict=True):
            o[s : s + per] = v
    out = _lift(party, out, ks, ell)
    if party.is_server:
        out = [wrap(o + np.uint64(b % (1 << 64)), ell) for o, b in zip(out, bases, strict=True)]
    return out


def _lift(party, vs: list[np.ndarray], ks: list[int], ell: int) -> list[np.ndarray]:  # noqa: ANN001
    """Shares mod 2^ell of each v from shares mod 2^k, v < 2^(k−1) (step 4 of the module doc):
    one COT call for all, of ell − min(k) bits (the wrap w is only needed mod 2^(ell − k))."""
    lift = [j for j, k in enumerate(ks) if k < ell]
    if not lift:
        return vs
    top = np.concatenate([(vs[j] >> np.uint64(ks[j] - 1)) & np.uint64(1) for j in lift])
    bits = ell - min(ks[j] for j in lift)
    if party.is_server:
        w = top - cot(party, "server", np.uint64(1) - top, bits)
    else:
        w = cot(party, "server", top.astype(np.uint8), bits)
    out, at = list(vs), 0
    for j in lift:
        n = vs[j].size
        out[j] = wrap(vs[j] - (w[at : at + n] << np.uint64(ks[j])), ell)
        at += n
    return out


def lookup(party, i: np.ndarray, table: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares mod 2^ell of table[i] from shares of i mod 2^m (flat; steps 3 and 4: k-bit
    entries, lifted), for other protocols' tables (runtime/protocols/newton.py)."""
    return _entries(party, i, [np.asarray(table)], ell)[0]


def lut(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    tables: tuple[np.ndarray, np.ndarray],
    lo: int,
    hi: int,
    shift: int,
) -> np.ndarray:
    """Additive shares mod 2^ell of a[i] + ((b[i]·r) >> shift), (i, r) the high and low bits
    of clip(x, lo, hi − 1) − lo (``ir.lut.evaluate``)."""
    x = as_ring(x, ell, "lut input")
    a_tab, b_tab = tables
    size = int(a_tab.size)
    if size < 2 or size & (size - 1) or (size > 256 and size % 256) or b_tab.size != size:
        raise ValueError(f"lut: table size {size} must be a power of two >= 2")
    flat = x.reshape(-1)
    if party.is_server:
        offsets = [np.uint64(v % (1 << 64)) for v in (lo, hi - 1)]
        shifted = np.concatenate([flat - offsets[0], flat - offsets[1]])
    else:
        shifted = np.concatenate([flat, flat])
    r = relu(party, wrap(shifted, ell), ell)
    u = wrap(r[: flat.size] - r[flat.size :], ell)
    i = trunc(party, u, ell, shift, "msb0") if shift else u
    low = wrap(u - (i << np.uint64(shift)), ell)
    i = i & np.uint64(size - 1)
    a, b = _entries(party, i, [a_tab, b_tab], ell)
    t = mul(party, b, low, ell)
    if shift:  # rounded to nearest: + 2^(shift−1) (by the server) before the floor
        kind = "msb0" if int(np.min(b_tab)) >= 0 else "faithful"
        t = trunc(party, add_const(party, t, np.int64(1 << (shift - 1)), ell), ell, shift, kind)
    return wrap(a + t, ell).reshape(x.shape)
