"""Piecewise-linear table evaluation of a public function on a shared input (SIRNN, Rathee et
al., IEEE S&P 2021, §4: LUTs over 1-out-of-N OT on the high bits; the tables and the rule are
``ir/lut.py``).

1. clamp: U = relu(x − LO) − relu(x − (HI − 1)) ∈ [0, HI − LO) (one ReLU call on both);
2. index: i = U >> shift by the known-MSB truncation (U ≥ 0), exact; the low bits
   r = U − i·2^shift locally; the shares of i mod 2^ell reduced mod 2^m are shares
   a (server) + b (client) = i mod 2^m;
3. tables: the server, as OT sender, offers for every element the rotated tables
   T[(a + j) mod 2^m] − ρ (one OT for the intercepts, one for the slopes); the client chooses
   j = b and gets T[i] − ρ; the server keeps ρ. A 2^m-entry choice with m > 8 is split into
   b = 256·b_hi + b_lo (KK13 offers N ≤ 256): for each q < 2^(m−8) the server offers
   T[(a + 256q + j) mod 2^m] − ρ + M_q under choice b_lo, and M_q by a 1-out-of-2^(m−8) OT
   under b_hi; the client unmasks the row q = b_hi and learns nothing of the other rows;
4. y = a_i + trunc(b_i·r + 2^(shift−1), shift): one product of two shared values (correlated
   OT), one faithful truncation.

Communication per element: two ReLUs, two truncations, one product, 2·2^m·ell bits of tables
(m = 7: 8 kbit at ell = 32, against 131 kbit for the former 2^12-entry single table).
Bit-exact with the cleartext interpreter (same clamp, floor shifts and tables).
"""

from __future__ import annotations

import numpy as np

from ._ot import kkot
from ._util import as_ring, prg, wrap
from .arith import add_const
from .mul import mul
from .relu import relu
from .trunc import trunc

#: Elements per OT batch: bounds the 2^m-entry tables held at once (2^m · 8 bytes each).
CHUNK = 1024


def _rand(party, shape: tuple[int, ...], ell: int) -> np.ndarray:  # noqa: ANN001
    """Uniform ring elements from the party's AES-CTR PRG (seeded from ``secrets``)."""
    return prg(party).ring(shape, ell)


def _lookup(party, idx: np.ndarray, table: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of table[k, i] mod 2^ell, shape (k, n), from shares of i mod 2^m (flat ``idx``);
    ``table`` is (k, 2^m) or one row (then the result is flat). One OT call for all rows."""
    flat_out = table.ndim == 1
    t = np.atleast_2d(table).astype(np.int64).view(np.uint64)
    k, size = t.shape
    lo_n = min(size, 256)
    hi_n = size // lo_n
    n = idx.size
    if party.is_server:
        r = _rand(party, (k, n), ell)
        masks = _rand(party, (hi_n, k * n), ell) if hi_n > 1 else np.zeros((1, k * n), np.uint64)
        j = np.arange(lo_n, dtype=np.uint64)
        rows = []
        for q in range(hi_n):
            pos = ((idx[:, None] + np.uint64(q * lo_n) + j[None, :]) % np.uint64(size)).astype(
                np.int64
            )
            vals = np.concatenate([t[c][pos] - r[c][:, None] for c in range(k)])
            rows.append(wrap(vals + masks[q][:, None], ell))
        kkot(party, "server", np.concatenate(rows), lo_n, ell)
        if hi_n > 1:
            kkot(party, "server", np.ascontiguousarray(masks.T), hi_n, ell)
        return r[0] if flat_out else r
    b_lo = np.tile((idx % np.uint64(lo_n)).astype(np.uint8), k)
    got = kkot(party, "server", np.tile(b_lo, hi_n), lo_n, ell).reshape(hi_n, k * n)
    if hi_n == 1:
        out = got[0]
    else:
        b_hi = np.tile((idx // np.uint64(lo_n)).astype(np.int64), k)
        m = kkot(party, "server", b_hi.astype(np.uint8), hi_n, ell)
        out = wrap(got[b_hi, np.arange(k * n)] - m, ell)
    return out if flat_out else out.reshape(k, n)


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
    a = np.empty_like(flat)
    b = np.empty_like(flat)
    n = flat.size
    both = np.stack([a_tab, b_tab])
    for s in range(0, n, CHUNK):
        a[s : s + CHUNK], b[s : s + CHUNK] = _lookup(party, i[s : s + CHUNK], both, ell)
    t = mul(party, b, low, ell)
    if shift:  # rounded to nearest: + 2^(shift−1) (by the server) before the floor
        t = trunc(party, add_const(party, t, np.int64(1 << (shift - 1)), ell), ell, shift)
    return wrap(a + t, ell).reshape(x.shape)
