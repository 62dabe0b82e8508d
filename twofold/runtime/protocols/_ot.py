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
    """1-out-of-N OT: the sender passes tables uint64[n, N] of k-bit messages (returns None);
    the receiver passes choices uint8[n] in [0, N) and gets table[i, choice[i]]."""
    if party.role == sender:
        _ot(party).kkot_send(np.ascontiguousarray(data), k)
        return None
    return _ot(party).kkot_recv(np.ascontiguousarray(data, dtype=np.uint8), n_msgs, k)


def kkot_parts(
    party, sender: str, data: list[np.ndarray], n_msgs: int, ks: list[int]
) -> list | None:  # noqa: ANN001, E501
    """Several :func:`kkot` batches of one N with different message widths ``ks`` in one
    batch and one flight (``ot/parts.py``): the sender passes a list of tables, the receiver a
    list of choice arrays and gets a list of results."""
    if party.role == sender:
        _ot(party).kkot_send([np.ascontiguousarray(d) for d in data], list(ks))
        return None
    cs = [np.ascontiguousarray(d, dtype=np.uint8) for d in data]
    return _ot(party).kkot_recv(cs, n_msgs, list(ks))
