"""Boolean AND triples without a dealer, two per 1-out-of-16 OT (CrypTFlow2 §3.1.1; SCI's
``_16KKOT_to_4OT``).

The server picks random (a0, b0, r) for two triples and offers, for every 4-bit choice
(a1, b1, a1', b1'), the two bits r ^ (a0^a1)(b0^b1) and r' ^ (a0'^a1')(b0'^b1'); the client
chooses with its random shares and gets c1, the server keeps c0 = r: c0 ^ c1 = a·b.
Cost: one KK13 1-of-16 OT with 2-bit messages per two triples.
"""

from __future__ import annotations

import numpy as np

from ._ot import kkot
from ._util import rand_bits

_V = np.arange(16, dtype=np.uint8)
_VBITS = [(_V >> i) & 1 for i in range(4)]


def bit_triples(party, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Boolean shares (a, b, c) of n random triples with c = a AND b; uint8[n] each."""
    m = (n + 1) // 2
    if m == 0:
        z = np.zeros(0, dtype=np.uint8)
        return z, z.copy(), z.copy()
    if party.is_server:
        rnd = rand_bits(party, 6 * m).reshape(6, m)
        a, b, r = rnd[0:2], rnd[2:4], rnd[4:6]
        t0 = r[0][:, None] ^ ((a[0][:, None] ^ _VBITS[0]) & (b[0][:, None] ^ _VBITS[1]))
        t1 = r[1][:, None] ^ ((a[1][:, None] ^ _VBITS[2]) & (b[1][:, None] ^ _VBITS[3]))
        table = (t0 | (t1 << 1)).astype(np.uint64)
        kkot(party, "server", table, 16, 2)
        c = r
    else:
        ch = rand_bits(party, 4 * m).reshape(4, m)
        choice = ch[0] | (ch[1] << 1) | (ch[2] << 2) | (ch[3] << 3)
        msg = kkot(party, "server", choice, 16, 2).astype(np.uint8)
        a = np.stack([ch[0], ch[2]])
        b = np.stack([ch[1], ch[3]])
        c = np.stack([msg & 1, (msg >> 1) & 1])
    return (a.reshape(-1)[:n].copy(), b.reshape(-1)[:n].copy(), c.reshape(-1)[:n].copy())
