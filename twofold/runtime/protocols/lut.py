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

Communication per element: two ReLUs, one known-MSB truncation, 2^m·ell bits of tables.
Bit-exact with the cleartext interpreter (same clamp, floor shift and table).
"""

from __future__ import annotations

import numpy as np

from ._ot import kkot
from ._util import as_ring, prg, wrap
from .relu import relu
from .trunc import trunc

#: Elements per OT batch: bounds the 2^m-entry tables held at once (2^m · 8 bytes each).
CHUNK = 1024


def _rand(party, shape: tuple[int, ...], ell: int) -> np.ndarray:  # noqa: ANN001
    """Uniform ring elements from the party's AES-CTR PRG (seeded from ``secrets``)."""
    return prg(party).ring(shape, ell)


def _lookup(party, idx: np.ndarray, table: np.ndarray, ell: int) -> np.ndarray:  # noqa: ANN001
    """Shares of table[i] mod 2^ell from shares of i mod 2^m (flat arrays)."""
    size = table.size
    lo_n = min(size, 256)
    hi_n = size // lo_n
    t = table.astype(np.int64).view(np.uint64)
    n = idx.size
    if party.is_server:
        r = _rand(party, (n,), ell)
        masks = _rand(party, (hi_n, n), ell) if hi_n > 1 else np.zeros((1, n), np.uint64)
        j = np.arange(lo_n, dtype=np.uint64)
        rows = []
        for q in range(hi_n):
            pos = (idx[:, None] + np.uint64(q * lo_n) + j[None, :]) % np.uint64(size)
            rows.append(wrap(t[pos.astype(np.int64)] - r[:, None] + masks[q][:, None], ell))
        kkot(party, "server", np.concatenate(rows), lo_n, ell)
        if hi_n > 1:
            kkot(party, "server", np.ascontiguousarray(masks.T), hi_n, ell)
        return r
    b_lo = (idx % np.uint64(lo_n)).astype(np.uint8)
    got = kkot(party, "server", np.tile(b_lo, hi_n), lo_n, ell).reshape(hi_n, n)
    if hi_n == 1:
        return got[0]
    b_hi = (idx // np.uint64(lo_n)).astype(np.int64)
    m = kkot(party, "server", b_hi.astype(np.uint8), hi_n, ell)
    return wrap(got[b_hi, np.arange(n)] - m, ell)


def lut(
    party,  # noqa: ANN001
    x: np.ndarray,
    ell: int,
    table: np.ndarray,
    lo: int,
    hi: int,
    shift: int,
) -> np.ndarray:
    """Additive shares mod 2^ell of table[(clip(x, lo, hi − 1) − lo) >> shift]."""
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
    i = i & np.uint64(size - 1)
    out = np.empty_like(flat)
    for s in range(0, flat.size, CHUNK):
        out[s : s + CHUNK] = _lookup(party, i[s : s + CHUNK], table, ell)
    return out.reshape(x.shape)
