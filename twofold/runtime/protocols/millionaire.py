"""Millionaires' protocol of CrypTFlow2 (§3.1, Algorithm 1): shares of 1{x < y} for x held
by the server and y by the client, both ``bits``-bit unsigned.

The inputs are cut into m-bit digits (m = 4).  For every digit the server offers, by one
KK13 1-out-of-2^m OT, the 2-bit message (lt ^ 1{x_j < v}, eq ^ 1{x_j = v}) for every digit
value v; the client picks v = y_j.  An AND tree combines neighbouring digits,
lt = lt_hi ^ (eq_hi & lt_lo), eq = eq_hi & eq_lo, one round per level; an ``eq`` is only
computed where a later level reads it (8 digits: 7 + 4 ANDs instead of 7 + 6), and a combine
that needs both ANDs uses a correlated triple pair (eq_hi opened once, one 1-of-8 OT). The
lowest digit of a tree whose root eq nobody reads is read for its lt alone, so its leaf is
1 bit (:func:`_leaf_needs`). The server's shares (lt, eq) of the leaves are fixed by the OT
(its shares flavour, ``_ot.kkot_words(share="xor")``: the share is entry 0's pad, so entry 0
is not sent, 15 entries a row).
Bits per comparison at 32 bits on the IKNP source: 7 x (256 + 30) + (256 + 15) + 3 x 148 +
4 x 278 = 3,829; on the silent source (Cheetah §5) 7 x (4 + 30) + (4 + 15) + 3 x 4 + 4 x 6 =
293 plus Ferret's ~0.44 bits for each of its 46 COTs (the triples come from random OTs, free
of other traffic).
``split=s`` also returns the comparison of the low s bits (a node of the same tree), which
faithful truncation needs for its carry (SiRNN §4.1).
"""

from __future__ import annotations

import numpy as np

from ._ot import kkot_parts, kkot_words
from ._util import as_ring, chunk_of
from .and_ import and_, and_level
from .triples import (
    bit_triples,
    corr_triples,
    on_silent,
    ot_table,
    triple_ot_input,
    triples_from_ot,
)

DIGIT_BITS = 4
_V = np.arange(1 << DIGIT_BITS, dtype=np.uint8)


def _digits(lo: int, hi: int, m: int) -> list[tuple[int, int]]:
    """(offset, width) of the m-bit digits of bit range [lo, hi), lowest first."""
    return [(o, min(m, hi - o)) for o in range(lo, hi, m)]


def _eq_plan(d: int, root_eq: bool) -> list[list[bool]]:
    """For each level of a tree over d leaves: which pair results need their eq (per pair)."""
    sizes = [d]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    need_next = [root_eq]  # eq needed at the nodes of the level above
    plan: list[list[bool]] = []
    for size in reversed(sizes[:-1]):
        plan.append(need_next[: size // 2])
        need = []
        for i in range(size):
            paired = i < 2 * (size // 2)
            need.append(True if (paired and i % 2 == 1) else need_next[i // 2])
        need_next = need
    plan.reverse()
    return plan


def _leaf_needs(d: int, root_eq: bool) -> list[bool]:
    """For each of a tree's d leaves, lowest first: whether any level reads its eq. Only the
    lowest leaf can go without (when the root's eq is not needed): every other leaf is the
    high side of a pair somewhere on its way up, whose eq the pair's lt reads."""
    need = [root_eq]
    sizes = [d]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    for size in reversed(sizes[:-1]):
        paired = 2 * (size // 2)
        need = [(i < paired and i % 2 == 1) or need[i // 2] for i in range(size)]
    return need


def _count_ands(d: int, root_eq: bool) -> int:
    return sum(len(p) + sum(p) for p in _eq_plan(d, root_eq))


def _leaf_lut(greater: bool) -> np.ndarray:
    """LUT[d, v] = 1{d < v} | 1{d = v} << 1 (``greater``: 1{d > v}) for 4-bit d, v."""
    d = _V[:, None]
    cmp = (d > _V[None, :]) if greater else (d < _V[None, :])
    return (cmp.astype(np.uint8) | ((d == _V[None, :]).astype(np.uint8) << 1)).astype(np.uint8)


# uint8: the OT sender takes narrow tables as they are (2-bit messages, 16 bytes a row)
_LUTS = {g: _leaf_lut(g) for g in (False, True)}
# the same rows as single 16-byte items: gathering them is one copy per element
_ROWS = {g: t.view(np.dtype((np.void, t.shape[1]))).reshape(-1) for g, t in _LUTS.items()}


def _row_words(lut: np.ndarray, field: int, dtype: type) -> np.ndarray:
    """Each LUT row packed as one word, entry v at bits [v*field, v*field + 2): the silent
    source's 1-of-16 rows as they go on the wire (``OTPack.kkot_send_words``)."""
    shift = (np.arange(lut.shape[1], dtype=np.uint64) * np.uint64(field))[None, :]
    return np.bitwise_or.reduce(lut.astype(np.uint64) << shift, axis=1).astype(dtype)


# lt alone in 1-bit fields (uint16 a row), (lt, eq) in 2-bit fields (uint32 a row) and the
# same 2-bit values in 4-bit fields (uint64 a row)
WORDS1 = {g: _row_words(t & 1, 1, np.uint16) for g, t in _LUTS.items()}
WORDS2 = {g: _row_words(t, 2, np.uint32) for g, t in _LUTS.items()}
WORDS4 = {g: _row_words(t, 4, np.uint64) for g, t in _LUTS.items()}


def leaf_rows(v: np.ndarray, k: int, greater: bool, packed: bool) -> np.ndarray:
    """The server's leaf rows for digit values ``v`` (intp): lt alone (k = 1) or (lt, eq)
    (k = 2), as packed words (silent source, ``kkot_words``) or uint8 tables [r, 16] (IKNP)."""
    if packed:
        return (WORDS1 if k == 1 else WORDS2)[greater][v]
    if k == 1:
        return _LUTS[greater][v] & np.uint8(1)
    return _ROWS[greater][v].view(np.uint8).reshape(v.size, 1 << DIGIT_BITS)


def _digit_matrix(x: np.ndarray, digits: list[tuple[int, int]]) -> np.ndarray:
    """uint8[len(digits), n]: the digits of x, lowest first."""
    return np.stack(
        [((x >> np.uint64(o)) & np.uint64((1 << w) - 1)).astype(np.uint8) for o, w in digits]
    )


def _lt_only(groups: list[int], root_eq: list[bool]) -> np.ndarray:
    """bool[digits]: the digits (all groups' digits, lowest first in each) whose eq no level
    reads (:func:`_leaf_needs`); their leaves carry lt alone."""
    return ~np.array([nd for d, re in zip(groups, root_eq, strict=True)
                      for nd in _leaf_needs(d, re)], bool)  # fmt: skip


def leaf_parts(ks: list[int], widths: list[int]) -> list[tuple[int, int, list[int]]]:
    """The parts of a leaf batch: digit rows grouped by message width k and by the entries
    their choices can reach (2^w for a w-bit digit: a narrow digit's row needs 2^w of its 16
    entries on the wire), as (k, entries, digit rows), in order of first appearance. Public
    inputs only, so both parties group alike."""
    groups: dict[tuple[int, int], list[int]] = {}
    for d, (k, w) in enumerate(zip(ks, widths, strict=True)):
        groups.setdefault((k, 1 << w), []).append(d)
    return [(k, e, rows) for (k, e), rows in groups.items()]


def leaf_ots(party, dig: np.ndarray, ks: list[int], widths: list[int], rows, st: np.ndarray):  # noqa: ANN001, ANN201, E501
    """ONE batch of 1-of-16 OTs on the shares flavour, one flight, for the leaves of digit
    rows ``dig`` (uint8[digits, n]: the client's digits are its choices; k-bit messages and
    ``widths``-bit digits per row, :func:`leaf_parts`), then on IKNP the AND triples' OTs
    (``st``, 2-bit rows). The server's ``rows(k, digit rows, packed)`` gives a part's rows,
    packed words (silent) or uint8 tables [r, 16] (IKNP); its shares are the OT's. Returns
    the leaves (uint8[digits, n]: the server's shares, the client's messages) and the triple
    rows' messages."""
    n = dig.shape[1]
    parts = leaf_parts(ks, widths)
    sizes = [len(d) * n for _, _, d in parts]
    kp, ents = [k for k, _, _ in parts], [e for _, e, _ in parts]
    if st.size:  # IKNP: the triples' OTs in the same batch
        sizes, kp, ents = [*sizes, st.size], [*kp, 2], [*ents, 1 << DIGIT_BITS]
    n_msg = 1 << DIGIT_BITS
    if party.is_server and on_silent(party):  # the rows as packed words: no 16-wide tables
        words = [rows(k, d, True) for k, _, d in parts]
        got = kkot_words(party, "server", words, n_msg, kp, sizes, share="xor", ents=ents)
    elif party.is_server:
        table = np.concatenate([rows(k, d, False) for k, _, d in parts] + [ot_table(st)])
        got = kkot_parts(party, "server", table, n_msg, kp, sizes, share="xor", ents=ents)
    else:
        choice = np.concatenate([dig[d].reshape(-1) for _, _, d in parts] + [st])
        got = kkot_parts(party, "server", choice, n_msg, kp, sizes, share="xor", ents=ents)
    got = got.astype(np.uint8)
    leaf = np.empty(dig.shape, np.uint8)
    at = 0
    for _, _, d in parts:
        leaf[d] = got[at : at + len(d) * n].reshape(len(d), n)
        at += len(d) * n
    return leaf, got[at:]


def _leaves_and_triples(
    party,  # noqa: ANN001
    x: np.ndarray,
    digits: list[tuple[int, int]],
    lt_only: np.ndarray,
    greater: bool,
    n_triples: int,
):  # noqa: ANN202
    """Boolean shares (lt, eq), each uint8[len(digits), n], of the digit comparisons, and
    ``n_triples`` AND triples -- all from ONE batch of 1-of-16 OTs on the shares flavour
    (:func:`leaf_ots`): the ``lt_only`` digits with 1-bit messages (their eq is returned as 0
    and must not be read), the others with 2-bit ones (lt, eq)."""
    dig = _digit_matrix(x, digits)
    if on_silent(party):  # triples from random OTs, free of traffic: not batched with the leaves
        triples = bit_triples(party, n_triples)
        n_triples = 0
    st = triple_ot_input(party, n_triples) if n_triples else np.zeros(0, np.uint8)

    def rows(k: int, d: list[int], packed: bool) -> np.ndarray:
        return leaf_rows(dig[d].reshape(-1).astype(np.intp), k, greater, packed)

    ks = [1 if o else 2 for o in lt_only]
    leaf, tmsg = leaf_ots(party, dig, ks, [w for _, w in digits], rows, st)
    if not on_silent(party):
        triples = triples_from_ot(party, n_triples, st, tmsg)
    return leaf & 1, leaf >> 1, triples


def _trees(
    party,
    lt: np.ndarray,
    eq: np.ndarray,
    groups: list[slice],
    root_eq: list[bool],  # noqa: ANN001
    pool,
    cpool,
):  # noqa: ANN001, ANN202
    """Reduce each group of digit rows to its root (lt, eq|None), all groups level by level.
    A combine that needs eq uses a correlated triple pair (eq_hi is opened once)."""
    rows = [
        ([lt[i] for i in range(g.start, g.stop)], [eq[i] for i in range(g.start, g.stop)])
        for g in groups
    ]
    plans = [_eq_plan(len(r[0]), re) for r, re in zip(rows, root_eq, strict=True)]
    n = lt.shape[1]
    level = 0
    while any(len(r[0]) > 1 for r in rows):
        su, sv, pu, pv1, pv2, jobs = [], [], [], [], [], []
        for gi, (lts, eqs) in enumerate(rows):
            if len(lts) < 2:
                continue
            need = plans[gi][level]
            for p in range(len(lts) // 2):
                if need[p]:
                    jobs.append((gi, p, len(pu)))
                    pu.append(eqs[2 * p + 1])
                    pv1.append(lts[2 * p])
                    pv2.append(eqs[2 * p])
                else:
                    jobs.append((gi, p, -1 - len(su)))
                    su.append(eqs[2 * p + 1])
                    sv.append(lts[2 * p])
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.uint8)  # noqa: E731
        z, z1, z2 = and_level(party, cat(su), cat(sv), cat(pu), cat(pv1), cat(pv2),
                              pool.take(len(su) * n), cpool.take(len(pu) * n))  # fmt: skip
        new = [([], []) for _ in rows]
        for gi, p, k in jobs:
            lts = rows[gi][0]
            if k >= 0:
                new[gi][0].append(lts[2 * p + 1] ^ z1[k * n : (k + 1) * n])
                new[gi][1].append(z2[k * n : (k + 1) * n])
            else:
                k = -1 - k
                new[gi][0].append(lts[2 * p + 1] ^ z[k * n : (k + 1) * n])
                new[gi][1].append(None)
        for gi, (lts, eqs) in enumerate(rows):
            if len(lts) < 2:
                new[gi] = (lts, eqs)
            elif len(lts) % 2:
                new[gi][0].append(lts[-1])
                new[gi][1].append(eqs[-1])
        rows = new
        level += 1
    return [(r[0][0], r[1][0]) for r in rows]


class _TriplePool:
    """Triples (tuples of equally long bit arrays) handed out in order."""

    def __init__(self, triples) -> None:  # noqa: ANN001
        self.parts = triples
        self.pos = 0

    def take(self, n: int):  # noqa: ANN201
        s = slice(self.pos, self.pos + n)
        self.pos += n
        return tuple(p[s] for p in self.parts)


def millionaire(
    party,  # noqa: ANN001
    x: np.ndarray,
    bits: int,
    *,
    greater: bool = False,
    split: int | None = None,
    return_eq: bool = False,
):  # noqa: ANN201
    """Boolean shares (uint8, shape of x) of 1{x_server < x_client} (``greater``: >).

    Each party passes its own private value array (uint64, < 2^bits, same shape on both
    sides).  ``split=s`` (0 < s < bits) returns (cmp of the low s bits, cmp of all bits);
    ``return_eq`` returns (cmp, eq).
    """
    x = as_ring(x, max(bits, 1), "millionaire input")
    step = chunk_of(party)
    if x.size > step:
        flat = x.reshape(-1)
        parts = [
            millionaire(
                party, flat[i : i + step], bits, greater=greater, split=split, return_eq=return_eq
            )
            for i in range(0, flat.size, step)
        ]
        if split is None and not return_eq:
            return np.concatenate(parts).reshape(x.shape)
        return tuple(np.concatenate(p).reshape(x.shape) for p in zip(*parts, strict=True))
    shape = x.shape
    x = x.reshape(-1)
    n = x.size
    if bits <= 0 or n == 0:
        z = np.zeros(shape, dtype=np.uint8)
        if split is not None:
            return z, z.copy()
        return (z, (np.ones if party.is_server else np.zeros)(shape, np.uint8)) if return_eq else z
    if split is not None and not 0 < split < bits:
        raise ValueError(f"millionaire split={split} must lie strictly inside 0..{bits}")
    if split is None:
        digits = [_digits(0, bits, DIGIT_BITS)]
        root_eq = [return_eq]
    else:
        digits = [_digits(0, split, DIGIT_BITS), _digits(split, bits, DIGIT_BITS)]
        root_eq = [False, True]
    flat = [d for g in digits for d in g]
    bounds = np.cumsum([0] + [len(g) for g in digits])
    groups = [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(len(digits))]
    plans = [_eq_plan(len(g), re) for g, re in zip(digits, root_eq, strict=True)]
    n_pair = sum(sum(sum(lv) for lv in pl) for pl in plans)
    n_single = sum(sum(len(lv) for lv in pl) for pl in plans) - n_pair
    n_single += 1 if split is not None else 0
    lt_only = _lt_only([len(g) for g in digits], root_eq)
    lt, eq, triples = _leaves_and_triples(party, x, flat, lt_only, greater, n_single * n)
    pool = _TriplePool(triples)
    cpool = _TriplePool(corr_triples(party, n_pair * n))
    roots = _trees(party, lt, eq, groups, root_eq, pool, cpool)
    if split is None:
        out, e = roots[0]
        return (out.reshape(shape), e.reshape(shape)) if return_eq else out.reshape(shape)
    (lt_lo, _), (lt_hi, eq_hi) = roots
    lt_all = lt_hi ^ and_(party, eq_hi, lt_lo, pool.take(n))
    return lt_lo.reshape(shape), lt_all.reshape(shape)
