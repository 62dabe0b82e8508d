"""Lookup-table evaluation of a public function on a shared input (SIRNN, Rathee et al.,
IEEE S&P 2021, §4: LUTs over 1-out-of-N OT; the table and index rule are ``ir/lut.py``).

1. clamp: U = relu(x − LO) − relu(x − (HI − 1)) ∈ [0, HI − LO) (one ReLU call on both);
2. index: i = U >> shift by the known-MSB truncation (U ≥ 0), exact; its shares mod 2^ell
   reduced mod 2^m are shares a (server) + b (client) = i mod 2^m;
3. table: the server, as OT sender, offers for every element the rotated table
   T[(a + j) mod 2^m] − r; the client chooses j = b and gets T[i] − r; the server keeps r.
   A 2^m-entry choice is split into b = 256·b_hi + b_lo (KK13 offers N ≤ 256): for each
   q < 2^(m−8) the server offers T[(a + 256q + j) mod 2^m] − r + M_q under choice b_lo, and
   M_q itself by a 1-out-of-2^(m−8) OT under b_hi; the client unmasks the row q = b_hi and
   learns nothing of the other rows (each is masked by an M_q it never sees).

4. narrow entries: the offered entries are T[·] − min T in Z_2^k, k the bits of the table's
   span plus one (13 for a sigmoid at s = 11, against ell = 30..40), so every looked-up value
   v has its top bit zero; shares c (client) + r (server) = v mod 2^k are lifted to Z_2^ell
   (SIRNN §3's zero extension, with the known-MSB wrap of CrypTFlow2 §4.2): v = c + r − 2^k·w
   where w = msb(c) ∨ msb(r) (if both top bits are set the sum wraps; if one is, v < 2^(k−1)
   forces the wrap; if none, it cannot). Shares of 2^k·w mod 2^ell by one correlated OT of
   (ell − k)-bit messages: the server sends correlation 1 − msb(r), the client chooses
   msb(c), and w = msb(r) + msb(c)·(1 − msb(r)). The server adds min T back.

5. piecewise linear (``slopes`` D given, ir/lut.py): φ = U − (i << shift) is local (the
   index truncation is exact); D[i] is looked up like T[i] (same choice), D[i]·φ is one
   product of shared values (``mul``) and (D[i]·φ + 2^(shift−1)) >> shift one truncation
   (known MSB when every D ≥ 0, as for a sigmoid); the result is T[i] + that.

Communication per element: two ReLUs, one known-MSB truncation, 2^m·k bits of tables, one
COT of ell − k bits (twice, plus a product and a truncation, when piecewise linear).
Bit-exact with the cleartext interpreter (same clamp, floor shift, tables and product; the
lift is exact).
"""

from __future__ import annotations

import numpy as np

from ...ir.lut import entry_bits
from ._ot import cot, kkot
from ._util import as_ring, prg, wrap
from .mul import mul
from .relu import relu
from .trunc import trunc

#: Table entries per OT batch (2^m per element, 8 bytes each: 32 MiB of offered tables).
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


def lut(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    table: np.ndarray,
    lo: int,
    hi: int,
    shift: int,
    slopes: np.ndarray | None = None,
) -> np.ndarray:
    """Additive shares mod 2^ell of lut.evaluate: table[i] with i = (clip(x, lo, hi − 1) −
    lo) >> shift, plus (slopes[i]·φ + 2^(shift−1)) >> shift (φ: the low ``shift`` bits)."""
    x = as_ring(x, ell, "lut input")
    size = int(table.size)
    if size < 2 or size & (size - 1) or (size > 256 and size % 256):
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
    phi = wrap(u - (i << np.uint64(shift)), ell)
    i = i & np.uint64(size - 1)
    if slopes is None or not shift:
        (out,) = _entries(party, i, [table], ell)
    else:
        out, rise = _entries(party, i, [table, slopes], ell)
        prod = mul(party, rise, phi, ell)
        if party.is_server:  # round to nearest: + 2^(shift−1) before the floor
            prod = wrap(prod + (np.uint64(1) << np.uint64(shift - 1)), ell)
        kind = "msb0" if int(slopes.min()) >= 0 else "faithful"
        out = wrap(out + trunc(party, prod, ell, shift, kind), ell)
    return out.reshape(x.shape)


def _entries(party, i: np.ndarray, tables: list[np.ndarray], ell: int) -> list[np.ndarray]:  # noqa: ANN001, E501
    """Shares mod 2^ell of each tables[t][i] (flat): k-bit entries, packed into one OT message
    per element while they fit 64 bits, then lifted by one COT call (steps 3 and 4)."""
    size = int(tables[0].size)
    narrow, ks, bases = [], [], []
    for t in tables:
        k, base = entry_bits(t)
        narrow.append((t.astype(np.int64) - base).view(np.uint64))
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
