"""Protocols on the shares flavour of 1-of-N OT (entry 0 implicit, ``ot/parts.py``): exact against
the cleartext, and the bytes they save are exactly the entries no longer sent."""

from __future__ import annotations

import numpy as np
import pytest

from twofold.runtime import bitpack
from twofold.runtime.net import run_pair
from twofold.runtime.prg import PRG
from twofold.runtime.protocols._ot import cot, kkot
from twofold.runtime.protocols._util import mask, prg, wrap
from twofold.runtime.protocols.millionaire import millionaire
from twofold.runtime.protocols.relu_trunc import _C1, _E1, _T1, select
from twofold.runtime.ring import from_signed, to_signed
from twofold.runtime.session import OT_SOURCES, Party


def _pair(server_fn, client_fn, source):
    return run_pair(
        server_fn, client_fn, timeout=120, make=lambda r, ch: Party(r, ch, "t", ot_source=source)
    )


def _select_all_entries(party, x, ell, s, c, k):  # noqa: ANN001, ANN202
    """relu_trunc.select as it was before the shares flavour: a fresh random r of the server's
    own and all eight entries of the 1-of-8 OT on the wire (the reference for the bytes)."""
    t = x >> np.uint64(ell - 1)
    hi = x >> np.uint64(s)
    e = t.astype(np.uint8) ^ k
    if party.is_server:
        d0 = (e ^ 1).astype(np.uint64)
        r = prg(party).ring(x.size, ell)
        d = d0[:, None] ^ _E1[None, :]
        w = t[:, None] | _T1[None, :]
        v = hi[:, None] + (c.astype(np.uint64)[:, None] ^ _C1[None, :]) - (w << np.uint64(ell - s))
        kkot(party, "server", wrap(d * v - r[:, None], ell), 8, ell)
        return wrap(r + cot(party, "client", d0.astype(np.uint8), ell), ell)
    msg = kkot(party, "server", e | (c << 1) | (t.astype(np.uint8) << 2), 8, ell)
    d1 = e.astype(np.uint64)
    mine = cot(party, "client", wrap((np.uint64(1) - np.uint64(2) * d1) * hi, ell), ell)
    return wrap(msg + d1 * hi - mine, ell)


def _traffic(p) -> int:  # noqa: ANN001
    """Bytes both ways so far, without Ferret's iterations (section ``ot-silent``: which call
    refills a pool depends on where earlier calls left it)."""
    fe = p.chan.stats.get("ot-silent")
    return p.chan.bytes_sent + p.chan.bytes_recv - (fe.bytes_sent + fe.bytes_recv if fe else 0)


@pytest.mark.parametrize("source", OT_SOURCES)
@pytest.mark.parametrize("ell,s", [(39, 11), (32, 12), (8, 3)])
def test_relu_trunc_output_flight_bytes(source, ell, s):
    """The ReLU-truncation's output flight is exact (edge values, every client choice of its
    OTs occurs) and moves exactly the entries it saves against the former 1-of-8 OT with all
    eight entries and the COT, on the same carries in the same session: on IKNP one entry of
    the 1-of-8 OT (the shares flavour), on the silent source 8·ell + ell bits against two 1-of-4
    OTs on the shares flavour, 3·ell each way (the OTs' choice bits: 3 + 1 against 2 + 2)."""
    n = 1000
    lim = 1 << (ell - 1)
    vals = np.random.default_rng(ell).integers(-lim, lim, n, dtype=np.int64)
    vals[:7] = [0, 1, -1, lim - 1, -lim, 1 << s, (1 << s) - 1]
    x = from_signed(vals, ell)
    r = PRG().ring(n, ell)
    shares = (r, wrap(x - r, ell))

    def party(i):  # noqa: ANN202
        def run(p):  # noqa: ANN001, ANN202
            xi = shares[i]
            low = xi & mask(ell - 1)
            c, k = millionaire(p, mask(ell - 1) - low if p.is_server else low, ell - 1, split=s)
            out, cost = [], []
            for fn in (select, _select_all_entries):
                b = _traffic(p)
                out.append(fn(p, xi, ell, s, c, k))
                cost.append(_traffic(p) - b)
            return out, cost

        return run

    (y0, cost), (y1, _) = _pair(party(0), party(1), source)
    want = np.maximum(vals, 0) >> s
    for a, b in zip(y0, y1, strict=True):
        assert np.array_equal(to_signed(wrap(a + b, ell), ell), want)
    old = bitpack.packed_size(8 * n, ell)
    if source == "silent":
        old += bitpack.packed_size(n, ell)  # the COT's corrections
        new = 2 * bitpack.packed_size(3 * n, ell)
    else:
        new = bitpack.packed_size(7 * n, ell)
    assert cost[1] - cost[0] == old - new


def _leaf_bytes(n: int, parts: list[tuple[int, int, int]], triple_rows: int) -> int:
    """The leaf message: per part (k bits, entries e, digits d), n·d rows of e − 1 entries (entry
    0 implicit), each part from a byte; then on IKNP the triples' rows, 15 entries of 2 bits."""
    size = sum(bitpack.packed_size(n * d * (e - 1), k) for k, e, d in parts)
    return size + bitpack.packed_size(15 * triple_rows, 2)


# (bits, split, return_eq, parts (k, entries, digits), single ANDs per element: their triples
# ride in the leaf batch on IKNP, two a row)
MILLIONAIRES = [
    # 8 digits, the top one of 3 bits (8 entries); 7 + 4 ANDs, 4 of them in correlated pairs
    (31, None, False, [(1, 16, 1), (2, 16, 6), (2, 8, 1)], 3),
    # the root's eq is read: every leaf (lt, eq); 7 correlated pairs
    (31, None, True, [(2, 16, 7), (2, 8, 1)], 0),
    # ReLU-truncation at ell = 39, s = 11: [0, 11) = 4 + 4 + 3 bits (2 single ANDs), [11, 38) =
    # 6 x 4 + 3 bits (6 pairs), then the split's AND
    (38, 11, False, [(1, 16, 1), (2, 16, 7), (2, 8, 2)], 3),
]


@pytest.mark.parametrize("source", OT_SOURCES)
@pytest.mark.parametrize("bits,split,eq,parts,singles", MILLIONAIRES)
def test_millionaire_leaves_on_the_wire(recording, source, bits, split, eq, parts, singles):
    """The client receives a leaf message of exactly 2^w − 1 entries a row for a w-bit digit,
    of 1 bit for the lowest digit of a tree whose root eq is not read, 2 bits for the others
    (on IKNP with the AND triples' rows beside them), not the former 16 entries of 2 bits, and
    the comparison stays exact where x and y differ in one bit or not at all."""
    n = 512
    rng = np.random.default_rng(bits)
    x, y = (rng.integers(0, 1 << bits, n, dtype=np.uint64) for _ in range(2))
    y[:64] = x[:64] ^ (np.uint64(1) << (np.arange(64, dtype=np.uint64) % np.uint64(bits)))
    y[64:96] = x[64:96]

    def party(v):  # noqa: ANN202
        def run(p):  # noqa: ANN001, ANN202
            out = millionaire(p, v, bits, split=split, return_eq=eq)
            return out, [a.size for a in p.chan.view if a.dtype == np.uint8]

        return run

    (s, _), (c, sizes) = _pair(party(x), party(y), source)
    triple_rows = 0 if source == "silent" else (singles * n + 1) // 2
    assert _leaf_bytes(n, parts, triple_rows) in sizes
    digits = sum(d for _, _, d in parts)
    assert bitpack.packed_size(16 * (digits * n + triple_rows), 2) not in sizes  # the former
    got = [a ^ b for a, b in zip(s, c, strict=True)] if isinstance(s, tuple) else [s ^ c]
    want = {None: [x < y], True: [x < y, x == y]}[eq or None]
    if split:
        m = np.uint64((1 << split) - 1)
        want = [(x & m) < (y & m), x < y]
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("source", OT_SOURCES)
def test_checked_relu_leaves_on_the_wire(recording, source):
    """The checked ReLU-truncation at DenseNet's ell = 39, s = 11, grain 18 (twin.py): digits
    [0, 11) = 4 + 4 + 3 bits compared once, the lowest with lt alone, [11, 18) = 4 + 3 once
    with (lt, eq), [18, 38) for both comparisons with 4-bit leaves, every row with 2^w − 1
    entries; exact, flags included."""
    from twofold.runtime.protocols.relu_check import checked_relu

    ell, grain, s, n = 39, 18, 11, 600
    q = 1 << (ell - 2)
    rng = np.random.default_rng(7)
    vals = rng.integers(-q, q, n, dtype=np.int64, endpoint=True)
    lim = (rng.integers(1, q >> grain, n, endpoint=True) << grain).astype(np.int64)
    vals[:6] = [0, -1, 1, lim[3], lim[4] - 1, q]
    x = from_signed(vals, ell)
    r = PRG().ring(n, ell)
    shares = (r, wrap(x - r, ell))

    def party(i):  # noqa: ANN202
        def run(p):  # noqa: ANN001, ANN202
            out = checked_relu(p, shares[i], ell, lim if i == 0 else None, grain, s)
            return out, [a.size for a in p.chan.view if a.dtype == np.uint8]

        return run

    ((y0, f0), _), ((y1, f1), sizes) = _pair(party(0), party(1), source)
    assert np.array_equal(to_signed(wrap(y0 + y1, ell), ell), np.maximum(vals, 0) >> s)
    assert np.array_equal(f0 ^ f1, (vals >= lim).astype(np.uint8))
    triple_rows = 0 if source == "silent" else n  # on IKNP 2 single ANDs: n rows of triples
    parts = [(1, 16, 1), (2, 16, 2), (2, 8, 2), (4, 16, 5)]
    assert _leaf_bytes(n, parts, triple_rows) in sizes
