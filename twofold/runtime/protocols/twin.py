"""Two millionaires' comparisons against ONE client value, sharing their OTs (issue 16).

``twin_millionaire`` gives boolean shares of 1{x < y} and 1{x2 < y} where the server holds x
and x2 (both ``bits``-bit, equal in their low ``grain`` bits) and the client holds y. It is the
millionaires' protocol of CrypTFlow2 (§3.1, Algorithm 1; on silent OT as in Cheetah §5) run
once for both comparisons:

* the client's OT choices are the m-bit digits of y, the same for both comparisons, so each
  digit costs ONE 1-of-2^m OT. Digits in the low ``grain`` bits have the same server digit in
  both comparisons, hence the same leaf (lt, eq): one leaf, 2-bit messages. Digits above carry
  both leaves, 4-bit messages (lt, eq, lt2, eq2): the OT (m bits up on silent OT, m·128 on
  IKNP/KK13) is paid once, only the chosen-message payload doubles;
* the AND trees of all groups run level by level in the same flights (``millionaire._trees``):
  the low bits [0, grain) reduce to one carry-in c_g = 1{x mod 2^g < y mod 2^g}, each high part
  to (lt_h, eq_h), and lt = lt_h ^ (eq_h ∧ c_g) for both with one correlated triple pair
  (c_g opened once). Correctness is the tree identity of Algorithm 1 at the split g: for
  x = x_h·2^g + x_l, y = y_h·2^g + y_l, 1{x < y} = 1{x_h < y_h} ∨ (1{x_h = y_h} ∧ 1{x_l < y_l}),
  the two terms exclusive, and x_l = x2_l, so the last factor is common.

``split=s`` (0 < s ≤ grain) also returns the carry-in of the low s bits, 1{x mod 2^s < y mod
2^s} (SiRNN §4.1: a node of the same tree), which the fused ReLU-truncation needs: then [0, s)
is the group compared once, and the shared leaves of [s, grain) head both high trees (their
first levels are computed twice, a few ANDs, so that the depth stays that of one millionaire
with a split; every high tree ends with one combine with the carry, as above).

Views: every message either party receives is a leaf OT output masked by the sender's fresh
random bits, or an opened AND operand masked by a triple — exactly as in two separate runs of
Algorithm 1; the server's two tables are independent one-time pads of the leaves.
"""

from __future__ import annotations

import numpy as np

from . import triples as tr
from .and_ import and_level
from .millionaire import (
    _LUTS,
    DIGIT_BITS,
    WORDS4,
    _digit_matrix,
    _digits,
    _eq_plan,
    _trees,
    _TriplePool,
    leaf_ots,
    leaf_rows,
)


def _leaves(party, x: np.ndarray, x2: np.ndarray | None, low, high, n_triples: int, carry: bool):  # noqa: ANN001, ANN202, E501
    """The digit leaves in ONE batch of 1-of-16 OTs on the shares flavour (the server's shares
    are fixed by the OT, entry 0 not sent), one flight (``millionaire.leaf_ots``): the ``low``
    digits (the same for both comparisons) with 2-bit messages (lt, eq) -- with ``carry`` (they
    start with the carry's tree) the lowest, whose eq nobody reads, with lt alone --, the
    ``high`` ones with 4-bit messages (lt, eq, lt2, eq2); on IKNP also ``n_triples`` AND
    triples (2-bit rows; on the silent source the server's rows go as packed words, built from
    the per-digit words). Returns the boolean shares (lt, eq) of the low leaves (with
    ``carry`` the lowest one's eq is 0 and must not be read), (lt, eq, lt2, eq2) of the high
    ones, each uint8[digits, n], and the triples. The client passes x2=None."""
    if tr.on_silent(party):  # triples from random OTs, free of traffic: not in the batch
        triples = tr.bit_triples(party, n_triples)
        n_triples = 0
    st = tr.triple_ot_input(party, n_triples) if n_triples else np.zeros(0, np.uint8)
    digits = low + high
    dig = _digit_matrix(x, digits)
    dig2 = _digit_matrix(x2, high) if x2 is not None else None  # the server's second leaves
    nlo = len(low)

    def rows(k: int, d: list[int], packed: bool) -> np.ndarray:
        v = dig[d].reshape(-1).astype(np.intp)
        if k == 4:  # (lt, eq) of x in bits 0-1, of x2 in bits 2-3 of every 4-bit entry
            v2 = dig2[[i - nlo for i in d]].reshape(-1).astype(np.intp)
            if packed:
                w4 = WORDS4[False]
                return w4[v] | (w4[v2] << np.uint64(2))
            return _LUTS[False][v] | (_LUTS[False][v2] << np.uint8(2))
        return leaf_rows(v, k, False, packed)

    ks = [1 if carry and i == 0 else 2 for i in range(nlo)] + [4] * len(high)
    leaf, tmsg = leaf_ots(party, dig, ks, [w for _, w in digits], rows, st)
    if not tr.on_silent(party):
        triples = tr.triples_from_ot(party, n_triples, st, tmsg)
    m_lo, m_hi = leaf[:nlo], leaf[nlo:]
    lo = (m_lo & 1, m_lo >> 1)  # with carry, the lowest digit's eq: 0, not read (1 bit)
    return lo, (m_hi & 1, (m_hi >> 1) & 1, (m_hi >> 2) & 1, m_hi >> 3), triples


def split_at(bits: int, grain: int, split: int | None = None) -> int:
    """Where to split between the digits compared once and those compared twice: the g ≤
    ``grain`` (and ≥ ``split``) with the fewest leaf OTs, weighted as whole digits (silent
    source: 34 bits a shared digit, 64 a doubled one; on IKNP the same g has the fewest OTs).
    A narrow digit's fewer entries (``millionaire.leaf_parts``) do not pay for the extra OT
    and the extra AND in both high trees a split inside a digit costs (ℓ = 36, s = 11, grain
    18: 969.6 bits per element at 15 against 977.5 at 18, checked ReLU-truncation, silent).
    Below the grain the server values agree, so any g ≤ grain is exact; lowering it pays where
    the grain cuts a narrow digit on both sides (ℓ = 40, s = 11, grain 18: 3 + 2 + 6 digits at
    18, 3 + 1 + 6 at 15). Ties keep the larger g. Public inputs only, so both parties agree."""

    def cost(g: int) -> int:
        once = len(_digits(0, split, DIGIT_BITS)) + len(_digits(split, g, DIGIT_BITS)) \
            if split is not None else len(_digits(0, g, DIGIT_BITS))  # fmt: skip
        return 34 * once + 64 * len(_digits(g, bits, DIGIT_BITS))

    return min(range(grain, (split or 0) - 1, -1), key=cost)


def twin_millionaire(
    party,  # noqa: ANN001
    x: np.ndarray,
    bits: int,
    grain: int,
    *,
    x2: np.ndarray | None = None,
    split: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Boolean shares (c_s, lt, lt2): c_s = 1{x mod 2^s < y mod 2^s} (None without ``split``),
    lt = 1{x < y}, lt2 = 1{x2 < y}. Server: x and x2 (uint64 < 2^bits, x ≡ x2 mod 2^grain);
    client: y as ``x`` (x2 None). 0 ≤ grain < bits; ``split`` in 1..grain."""
    if not 0 <= grain < bits:
        raise ValueError(f"twin_millionaire: grain {grain} must lie in 0..{bits - 1}")
    if split is not None and not 0 < split <= grain:
        raise ValueError(f"twin_millionaire: split {split} must lie in 1..{grain}")
    if party.is_server:
        if x2 is None or x2.shape != x.shape:
            raise ValueError("twin_millionaire: the server passes x and x2 of one shape")
        low_mask = np.uint64((1 << grain) - 1)
        if grain and np.any((x ^ x2) & low_mask):
            raise ValueError(f"twin_millionaire: x and x2 differ in their low {grain} bits")
    shape = x.shape
    x = x.reshape(-1)
    x2 = x2.reshape(-1) if x2 is not None else None
    n = x.size
    # digit groups: ``low`` is compared once; the rest of each comparison is ``mid`` (the
    # shared leaves of [split, grain), also compared once) followed by its own high digits
    grain = split_at(bits, grain, split)
    cut = split if split is not None else grain
    low = _digits(0, cut, DIGIT_BITS)
    mid = _digits(cut, grain, DIGIT_BITS)
    high = _digits(grain, bits, DIGIT_BITS)
    carry = bool(low)
    trees = [(len(low), False)] if low else []
    trees += [(len(mid) + len(high), carry)] * 2
    single = pair = 0
    for d, root_eq in trees:
        for lv in _eq_plan(d, root_eq):
            pair += sum(lv)
            single += len(lv) - sum(lv)
    pair += 1 if carry else 0  # (c ∧ eq, c ∧ eq2) for the two roots
    (lt_l, eq_l), (lt_a, eq_a, lt_b, eq_b), triples = _leaves(
        party, x, x2, low + mid, high, single * n, carry
    )
    nl = len(low)
    lt = np.concatenate([lt_l, lt_a, lt_l[nl:], lt_b])  # low | mid high | mid high2
    eq = np.concatenate([eq_l, eq_a, eq_l[nl:], eq_b])
    bounds = np.cumsum([0] + [d for d, _ in trees])
    groups = [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(len(trees))]
    pool = _TriplePool(triples)
    cpool = _TriplePool(tr.corr_triples(party, pair * n))
    roots = _trees(party, lt, eq, groups, [r for _, r in trees], pool, cpool)
    (lt1, eq1), (lt2, eq2) = roots[-2:]
    if not carry:
        return None, lt1.reshape(shape), lt2.reshape(shape)
    c = roots[0][0]
    none = np.zeros(0, np.uint8)
    _, z1, z2 = and_level(party, none, none, c, eq1, eq2, pool.take(0), cpool.take(n))
    lt1, lt2 = lt1 ^ z1, lt2 ^ z2
    c_s = c.reshape(shape) if split is not None else None
    return c_s, lt1.reshape(shape), lt2.reshape(shape)
