"""Thin adapter from the protocols to the session's OT extension (one place to change).

Two flavours are used (CrypTFlow2 §2.2): correlated OT over Z_2^k with per-OT correlations
(IKNP/ALSZ) and 1-out-of-N OT with k-bit messages (KK13), the latter also as its shares
flavour (``share=``: the OT fixes the sender's share, entry 0 is not sent). ``sender`` names
the party that acts as OT sender ("server" or "client"); both parties call with the same
``sender``.
"""

from __future__ import annotations

import numpy as np


def _ot(party):  # noqa: ANN001, ANN202
    return getattr(party, "ot", party)


def cot(party, sender: str, data: np.ndarray, k: int) -> np.ndarray:  # noqa: ANN001
    """Correlated OT: the sender passes correlations ``corr`` (uint64[n]) and gets x; the
    receiver passes choice bits b (uint8[n]) and gets x + b*corr mod 2^k."""
    if party.role == sender:
        return _ot(party).cot_send(np.ascontiguousarray(data, dtype=np.uint64), k)
    return _ot(party).cot_recv(np.ascontiguousarray(data, dtype=np.uint8), k)


def kkot(
    party, sender: str, data: np.ndarray, n_msgs: int, k: int, share: str | None = None
) -> np.ndarray | None:  # noqa: ANN001, E501
    """1-out-of-N OT: the sender passes tables uint64[n, N] of k-bit messages, or uint8[n, N]
    for k <= 8 (returns None); the receiver passes choices uint8[n] in [0, N) and gets
    table[i, choice[i]]. ``share="add"|"xor"`` (both parties): the shares flavour
    (``OTPack.kkot_share_send``): the sender's tables are values V and it gets its shares r
    (V's dtype, [n]); the receiver gets V[i, c_i] - r_i mod 2^k (V[i, c_i] ^ r_i), and entry 0
    of every row is not sent."""
    if party.role == sender:
        t = np.ascontiguousarray(data)
        if share:
            return _ot(party).kkot_share_send(t, k, op=share)
        _ot(party).kkot_send(t, k)
        return None
    c = np.ascontiguousarray(data, dtype=np.uint8)
    if share:
        return _ot(party).kkot_share_recv(c, n_msgs, k)
    return _ot(party).kkot_recv(c, n_msgs, k)


def kkot_parts(
    party,  # noqa: ANN001
    sender: str,
    data: np.ndarray,
    n_msgs: int,
    ks: list[int],
    sizes: list[int],
    share: str | None = None,
    ents: list[int] | None = None,
):  # noqa: ANN201
    """:func:`kkot` over rows in parts of ``sizes`` rows with ``ks``-bit messages, in one batch
    and one flight (``ot/parts.py``): the sender passes one table uint64[sum(sizes), N]
    (returns None, or with ``share`` its shares of all rows), the receiver one choice array
    and gets one result array. With ``share``, ``ents`` (one per part) bounds the choices of
    each part (only the entries below it are sent)."""
    if party.role == sender:
        t = np.ascontiguousarray(data)
        if share:
            return _ot(party).kkot_share_send(t, list(ks), list(sizes), op=share, ents=ents)
        _ot(party).kkot_send(t, list(ks), list(sizes))
        return None
    return _recv_parts(party, data, n_msgs, ks, sizes, share, ents)


def kkot_words(
    party,  # noqa: ANN001
    sender: str,
    data,  # noqa: ANN001
    n_msgs: int,
    ks: list[int],
    sizes: list[int],
    share: str | None = None,
    ents: list[int] | None = None,
):  # noqa: ANN201
    """:func:`kkot_parts` with the sender's rows already packed, a list of word arrays, one per
    part (``OTPack.kkot_send_words``, silent source only); the receiver passes one choice array
    and gets one result array, as for :func:`kkot_parts`. ``share``: the shares flavour, the
    sender gets its shares of all rows (uint8 when every k is at most 8); ``ents`` as there."""
    if party.role == sender:
        if share:
            words = list(data)
            return _ot(party).kkot_share_send_words(words, n_msgs, list(ks), op=share, ents=ents)
        _ot(party).kkot_send_words(list(data), n_msgs, list(ks))
        return None
    return _recv_parts(party, data, n_msgs, ks, sizes, share, ents)


def _recv_parts(party, data, n_msgs: int, ks, sizes, share: str | None, ents):  # noqa: ANN001, ANN202
    """The receiver's side of :func:`kkot_parts` and :func:`kkot_words`."""
    c = np.ascontiguousarray(data, dtype=np.uint8)
    if share:
        return _ot(party).kkot_share_recv(c, n_msgs, list(ks), list(sizes), ents=ents)
    return _ot(party).kkot_recv(c, n_msgs, list(ks), list(sizes))
