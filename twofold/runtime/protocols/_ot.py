"""Thin adapter from the protocols to the session's OT extension (one place to change).

Two flavours are used (CrypTFlow2 §2.2): correlated OT over Z_2^k with per-OT correlations
(IKNP/ALSZ) and 1-out-of-N OT with k-bit messages (KK13).  ``sender`` names the party that
acts as OT sender ("server" or "client"); both parties call with the same ``sender``.
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


def kkot(party, sender: str, data: np.ndarray, n_msgs: int, k: int) -> np.ndarray | None:  # noqa: ANN001
    """1-out-of-N OT: the sender passes tables uint64[n, N] of k-bit messages, or uint8[n, N]
    for k <= 8 (returns None); the receiver passes choices uint8[n] in [0, N) and gets
    table[i, choice[i]]."""
    if party.role == sender:
        _ot(party).kkot_send(np.ascontiguousarray(data), k)
        return None
    return _ot(party).kkot_recv(np.ascontiguousarray(data, dtype=np.uint8), n_msgs, k)


def kkot_parts(party, sender: str, data: np.ndarray, n_msgs: int, ks: list[int], sizes: list[int]):  # noqa: ANN001, ANN201, E501
    """:func:`kkot` over rows in parts of ``sizes`` rows with ``ks``-bit messages, in one batch
    and one flight (``ot/parts.py``): the sender passes one table uint64[sum(sizes), N]
    (returns None), the receiver one choice array and gets one result array."""
    if party.role == sender:
        _ot(party).kkot_send(np.ascontiguousarray(data), list(ks), list(sizes))
        return None
    c = np.ascontiguousarray(data, dtype=np.uint8)
    return _ot(party).kkot_recv(c, n_msgs, list(ks), list(sizes))


def kkot_words(party, sender: str, data, n_msgs: int, ks: list[int], sizes: list[int]):  # noqa: ANN001, ANN201
    """:func:`kkot_parts` with the sender's rows already packed, a list of word arrays, one per
    part (``OTPack.kkot_send_words``, silent source only); the receiver passes one choice array
    and gets one result array, as for :func:`kkot_parts`."""
    if party.role == sender:
        _ot(party).kkot_send_words(list(data), n_msgs, list(ks))
        return None
    c = np.ascontiguousarray(data, dtype=np.uint8)
    return _ot(party).kkot_recv(c, n_msgs, list(ks), list(sizes))
