"""Boolean AND triples without a dealer (CrypTFlow2 §3.1.1; Cheetah §5 on silent OT).

On the silent OT source (``party.ot.silent``): two random OTs with random choices per triple, one
in each direction, which cost no traffic beyond Ferret's ~0.44 bits each. For a ROT with
messages m0, m1 and receiver choice e, the receiver's bit of m_e and the sender's bit of m0 are
shares of e*(m0 ^ m1); with a = a_S ^ a_C, b = b_S ^ b_C the cross terms a_C*b_S (server sends,
the client's choice is a_C, b_S = lsb(m0 ^ m1)) and a_S*b_C (the other way) complete
c = a_S b_S ^ a_C b_C ^ a_C b_S ^ a_S b_C. Two message bits per ROT give a correlated pair
(a, b, b') the same way.

On the IKNP source: two triples per 1-out-of-16 OT (SCI's ``_16KKOT_to_4OT``). The server
picks random (a0, b0) for two triples and offers, for every 4-bit choice (a1, b1, a1', b1'),
the two bits r ^ (a0^a1)(b0^b1) and r' ^ (a0'^a1')(b0'^b1'); the client chooses with its
random shares and gets c1, the server keeps c0 = r: c0 ^ c1 = a·b. The server's r is the OT's
(its shares flavour, ``_ot.kkot(share="xor")``: r is fixed by entry 0's pad, so entry 0 is
not sent, and it is as uniform to the client as a fresh one).
Cost: one KK13 1-of-16 OT with 2-bit messages (15 of them on the wire) per two triples.
"""

from __future__ import annotations

import numpy as np

from ._ot import kkot
from ._util import prg


def on_silent(party) -> bool:  # noqa: ANN001
    """Whether the party's OT source is silent (random OTs are then free of traffic)."""
    return bool(getattr(getattr(party, "ot", None), "silent", False))


def rot_triples(party, n: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Shares (a uint8[n], b uint8[width, n], c uint8[width, n]) with c_w = a AND b_w, from two
    batches of n random-choice ROTs (server sends first); see the module docstring."""
    ot = party.ot
    lo = np.uint64((1 << width) - 1)

    def low(m: np.ndarray) -> np.ndarray:
        v = (m[:, 0] & lo).astype(np.uint8)
        return np.stack([(v >> np.uint8(w)) & np.uint8(1) for w in range(width)])

    if party.is_server:
        m0, m1 = ot.rrot_send(n)
        a, me = ot.rrot_recv(n)
        x0, x1, mine = low(m0), low(m1), low(me)
    else:
        a, me = ot.rrot_recv(n)
        m0, m1 = ot.rrot_send(n)
        mine, x0, x1 = low(me), low(m0), low(m1)
    b = x0 ^ x1
    a = a.astype(np.uint8)
    return a, b, (a[None, :] & b) ^ x0 ^ mine


_V = np.arange(16, dtype=np.uint8)


def _table_lut() -> np.ndarray:
    """LUT[k, v]: the 2-bit message (a0^a1)(b0^b1) | (a0'^a1')(b0'^b1') << 1 for the server's
    randomness k = (a0, b0, a0', b0') bits and the client's v = (a1, b1, a1', b1'); the OT's
    shares flavour adds the server's (r, r')."""
    k = np.arange(16, dtype=np.uint8)[:, None]
    bit = [(k >> i) & 1 for i in range(4)]
    vb = [(_V >> i) & 1 for i in range(4)]
    t0 = (bit[0] ^ vb[0]) & (bit[1] ^ vb[1])
    t1 = (bit[2] ^ vb[2]) & (bit[3] ^ vb[3])
    return (t0 | (t1 << 1)).astype(np.uint8)  # uint8: the OT sender's narrow tables


_LUT = _table_lut()


def triple_ot_input(party, n: int) -> np.ndarray:  # noqa: ANN001
    """This party's input to the 1-of-16 OTs (shares flavour, 2-bit) for n triples: the
    server's randomness k = a0|b0<<1|a0'<<2|b0'<<3 (tables :func:`ot_table`), the client's
    choices, uint8[m] each; m = ceil(n/2).  Lets callers batch these OTs with others."""
    m = (n + 1) // 2
    return prg(party).bytes(m) & np.uint8(15)


def ot_table(state: np.ndarray) -> np.ndarray:
    """The server's OT values for its randomness ``state``."""
    return _LUT[state]


def triples_from_ot(party, n: int, state: np.ndarray, msg: np.ndarray):  # noqa: ANN001, ANN201
    """Boolean shares (a, b, c), uint8[n] each, from this party's OT input ``state`` and its
    output of the OT: the server's shares (r, r'), the client's messages."""
    ch = [(state >> i) & 1 for i in range(4)]
    msg = msg.astype(np.uint8)
    a = np.stack([ch[0], ch[2]], axis=1)
    b = np.stack([ch[1], ch[3]], axis=1)
    c = np.stack([msg & 1, (msg >> 1) & 1], axis=1)
    return a.reshape(-1)[:n], b.reshape(-1)[:n], c.reshape(-1)[:n]


def bit_triples(party, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Boolean shares (a, b, c) of n random triples with c = a AND b; uint8[n] each."""
    if n == 0:
        z = np.zeros(0, dtype=np.uint8)
        return z, z.copy(), z.copy()
    if on_silent(party):
        a, b, c = rot_triples(party, n, 1)
        return a, b[0], c[0]
    st = triple_ot_input(party, n)
    data = ot_table(st) if party.is_server else st
    return triples_from_ot(party, n, st, kkot(party, "server", data, 16, 2, share="xor"))


def _corr_lut() -> np.ndarray:
    """LUT8[k, v]: for server randomness k = (a0, b0, b0') bits and client choice
    v = (a1, b1, b1'): the bits a·b | a·b' << 1 with a = a0^a1, b = b0^b1, b' = b0'^b1'
    (the OT's shares flavour adds the server's (r, r'))."""
    k = np.arange(8, dtype=np.uint8)[:, None]
    v = np.arange(8, dtype=np.uint8)[None, :]
    kb = [(k >> i) & 1 for i in range(3)]
    vb = [(v >> i) & 1 for i in range(3)]
    a = kb[0] ^ vb[0]
    t0 = a & (kb[1] ^ vb[1])
    t1 = a & (kb[2] ^ vb[2])
    return (t0 | (t1 << 1)).astype(np.uint8)  # uint8: the OT sender's narrow tables


_LUT8 = _corr_lut()


def corr_triples(party, n: int):  # noqa: ANN001, ANN201
    """Boolean shares (a, b, b', c, c') of n correlated triple pairs, c = a·b, c' = a·b' (one
    shared a), one 1-of-8 OT with 2-bit messages per pair (shares flavour: 7 entries on the
    wire): 270 bits on IKNP instead of 286 for two independent triples, and the AND pair opens
    a once (CrypTFlow2 §3.1.1, correlated triples).
    """
    if n == 0:
        z = np.zeros(0, dtype=np.uint8)
        return z, z.copy(), z.copy(), z.copy(), z.copy()
    if on_silent(party):
        a, b, c = rot_triples(party, n, 2)
        return a, b[0], b[1], c[0], c[1]
    st = prg(party).bytes(n) & np.uint8(7)
    data = _LUT8[st] if party.is_server else st
    msg = kkot(party, "server", data, 8, 2, share="xor").astype(np.uint8)
    return st & 1, (st >> 1) & 1, (st >> 2) & 1, msg & 1, msg >> 1
