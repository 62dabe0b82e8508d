"""ReLU then truncation by s bits, in one protocol: y = relu(x) >> s (floor), bit-exact.

The compiler sinks a product's truncation below the ReLU that follows it (truncation pass), so
``trunc(relu(x), s, kind="msb0")`` is DenseNet's commonest pair. Run apart, the pair costs a
millionaires' protocol on ell-1 bits and a multiplexer (ReLU, CrypTFlow2 §3.2), then a COT for
the wrap and a second millionaires' protocol on s bits for the carry (known-MSB truncation,
SiRNN §4). Fused, one millionaires' protocol serves both (SiRNN §4.1: the tree node of the low
s bits is the truncation's carry):

* shares x_i = t_i·2^(ell-1) + a_i = hi_i·2^s + lo_i; the comparison of (2^(ell-1) - 1 - a_0)
  with a_1, split at s, gives boolean shares of k = 1{a_0 + a_1 >= 2^(ell-1)} and of the
  carry c = 1{lo_0 + lo_1 >= 2^s}; MSB(x) = t_0 ^ t_1 ^ k and d = DReLU(x) = 1 ^ MSB(x);
* where d = 1 (x >= 0) the MSB is 0, so k = t_0 ^ t_1 and the wrap of x_0 + x_1 mod 2^ell is
  w = t_0 t_1 ^ k (t_0 ^ t_1) = t_0 OR t_1: x >> s = hi_0 + hi_1 + c - w·2^(ell-s);
* so y = d·(hi_0 + c - (t_0 OR t_1)·2^(ell-s)) + d·hi_1. On IKNP the first term is one
  1-out-of-8 OT with ell-bit messages: the server offers, for each of the client's (d_1, c_1,
  t_1), its value minus a share r it keeps -- the OT's shares flavour (``_ot.kkot(share=
  "add")``), where the OT fixes r so that entry 0 need not be sent: 7·ell bits instead of
  8·ell; the second is the multiplexer's client half, one COT with the client as sender and
  the server's d_0 as choice. On the silent source, where an OT costs a few bits and its
  entries dominate, y = d·(hi_0 + c) + d·(hi_1 - (t_0 OR t_1)·2^(ell-s)) instead: the first
  term by a 1-of-4 OT the server offers over the client's (d_1, c_1), the second by one the
  client offers over the server's (d_0, t_0), both on the shares flavour: 4 + 6·ell bits
  against 4 + 8·ell (on IKNP, 512 + 6·ell against 384 + 8·ell). Either way one flight after
  the millionaires' protocol's.

Cost per element with IKNP at ell = 31, s = 12: ~3,900 bits and the millionaire's rounds + 1,
against ~5,300 bits and twice the rounds for ReLU then known-MSB truncation.
"""

from __future__ import annotations

import numpy as np

from ._ot import cot, kkot
from ._util import as_ring, chunk_of, mask, wrap
from .millionaire import millionaire
from .triples import on_silent

_J = np.arange(8, dtype=np.uint64)
_E1, _C1, _T1 = _J & np.uint64(1), (_J >> np.uint64(1)) & np.uint64(1), _J >> np.uint64(2)
_J4 = np.arange(4, dtype=np.uint64)
_LO, _HI = (_J4 & np.uint64(1))[None, :], (_J4 >> np.uint64(1))[None, :]  # a 1-of-4 choice's bits


def fusable(ell: int, shift: int) -> bool:
    """Whether :func:`relu_trunc` applies: the split must lie inside the ell-1 compared bits."""
    return 0 < shift < ell - 1


def relu_trunc(party, x: np.ndarray, ell: int, shift: int) -> np.ndarray:  # noqa: ANN001
    """Additive shares mod 2^ell of relu(signed(x)) >> shift (floor), for 0 < shift < ell-1."""
    x = as_ring(x, ell, "relu_trunc input")
    if not fusable(ell, shift):
        raise ValueError(f"relu_trunc: shift {shift} must be in 1..{ell - 2} for ell={ell}")
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    step = chunk_of(party)
    for lo in range(0, flat.size, step):
        out[lo : lo + step] = _chunk(party, flat[lo : lo + step], ell, shift)
    return out.reshape(x.shape)


def _chunk(party, x: np.ndarray, ell: int, s: int) -> np.ndarray:  # noqa: ANN001
    low = x & mask(ell - 1)
    val = mask(ell - 1) - low if party.is_server else low
    c, k = millionaire(party, val, ell - 1, split=s)
    return select(party, x, ell, s, c, k)


def select(party, x: np.ndarray, ell: int, s: int, c: np.ndarray, k: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """The output flight: shares of relu(x) >> s from the shares c of the low s bits' carry
    and k of the ell-1 bits' carry (the millionaire's split node and root)."""
    t = x >> np.uint64(ell - 1)  # msb of this party's share, 0/1
    hi = x >> np.uint64(s)
    e = t.astype(np.uint8) ^ k  # this party's XOR share of MSB(x)
    if on_silent(party):
        return _select_halves(party, ell, s, c, t, hi, e)
    if party.is_server:
        d0 = (e ^ 1).astype(np.uint64)
        c0, t0 = c.astype(np.uint64), t
        d = d0[:, None] ^ _E1[None, :]
        w = t0[:, None] | _T1[None, :]
        v = hi[:, None] + (c0[:, None] ^ _C1[None, :]) - (w << np.uint64(ell - s))
        r = kkot(party, "server", wrap(d * v, ell), 8, ell, share="add")  # client: entry - r
        got = cot(party, "client", d0.astype(np.uint8), ell)  # x + d0·(1 - 2 d1)·hi_1
        return wrap(r + got, ell)
    choice = e | (c << 1) | (t.astype(np.uint8) << 2)
    msg = kkot(party, "server", choice, 8, ell, share="add")
    d1 = e.astype(np.uint64)
    corr = wrap((np.uint64(1) - np.uint64(2) * d1) * hi, ell)
    mine = cot(party, "client", corr, ell)
    return wrap(msg + d1 * hi - mine, ell)


def _select_halves(
    party, ell: int, s: int, c: np.ndarray, t: np.ndarray, hi: np.ndarray, e: np.ndarray
) -> np.ndarray:  # noqa: ANN001, E501
    """The output flight on the silent source (module docstring): shares of d·(hi_0 + c) by a
    1-of-4 OT the server offers over the client's (d_1, c_1), plus shares of d·(hi_1 - (t_0 OR
    t_1)·2^(ell-s)) by one the client offers over the server's (d_0, t_0); each party keeps
    its own OT's share and adds what it received."""
    e64 = e.astype(np.uint64)  # the client's d_1; the server's d_0 = e ^ 1
    if party.is_server:
        d0 = e64 ^ np.uint64(1)
        v = (d0[:, None] ^ _LO) * (hi[:, None] + (c.astype(np.uint64)[:, None] ^ _HI))
        r = kkot(party, "server", wrap(v, ell), 4, ell, share="add")
        got = kkot(
            party, "client", (d0 | (t << np.uint64(1))).astype(np.uint8), 4, ell, share="add"
        )
        return wrap(r + got, ell)
    got = kkot(party, "server", e | (c << np.uint8(1)), 4, ell, share="add")
    v = (e64[:, None] ^ _LO) * (hi[:, None] - ((t[:, None] | _HI) << np.uint64(ell - s)))
    r = kkot(party, "client", wrap(v, ell), 4, ell, share="add")
    return wrap(got + r, ell)
