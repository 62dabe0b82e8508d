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


@pytest.mark.parametrize("source", OT_SOURCES)
@pytest.mark.parametrize("ell,s", [(39, 11), (32, 12), (8, 3)])
def test_relu_trunc_output_ot_saves_one_entry_exactly(source, ell, s):
    """The ReLU-truncation's output flight on the shares flavour is exact (edge values, every
    client choice of the 1-of-8 OT occurs) and moves exactly n·ell bits less than with all
    eight entries, on the same carries in the same session."""
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
                b = p.chan.bytes_sent + p.chan.bytes_recv
                out.append(fn(p, xi, ell, s, c, k))
                cost.append(p.chan.bytes_sent + p.chan.bytes_recv - b)
            return out, cost

        return run

    (y0, cost), (y1, _) = _pair(party(0), party(1), source)
    want = np.maximum(vals, 0) >> s
    for a, b in zip(y0, y1, strict=True):
        assert np.array_equal(to_signed(wrap(a + b, ell), ell), want)
    assert cost[1] - cost[0] == bitpack.packed_size(8 * n, ell) - bitpack.packed_size(7 * n, ell)
