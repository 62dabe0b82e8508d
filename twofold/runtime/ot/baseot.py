"""Base OT: the "simplest OT" of Chou and Orlandi (LATINCRYPT 2015) over the prime-order subgroup
of edwards25519 (libsodium via PyNaCl), with the known fixes.

Sender: a <-$ Z_q, A = aG. Receiver (choice c_i): b_i <-$ Z_q, B_i = b_iG + c_i A.
Keys: sender k_i^0 = H(i, A, B_i, aB_i), k_i^1 = H(i, A, B_i, a(B_i - A)); receiver
k_i^{c_i} = H(i, A, B_i, b_iA). Fixes (Genc-Iovino-Rial 2017; Hauck-Loss 2017): every received point
is validated (canonical, on the curve, in the prime-order subgroup, not the identity/small order),
scalars are used without clamping (noclamp), and the hash binds the index and the transcript.
The keys are 16-byte seeds for the OT extension's PRGs.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from nacl import bindings as nb

from ..errors import PeerError

_PT = 32


def _scalar() -> bytes:
    return nb.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))


def _valid(p: bytes) -> bool:
    return len(p) == _PT and nb.crypto_core_ed25519_is_valid_point(p)


def _kdf(i: int, a: bytes, b: bytes, p: bytes) -> bytes:
    h = hashlib.sha256(b"twofold-co15-ot" + i.to_bytes(4, "little") + a + b + p)
    return h.digest()[:16]


def base_ot_send(chan, n: int) -> list[tuple[bytes, bytes]]:  # noqa: ANN001 - Channel
    """Run n base OTs as sender; returns [(k_i^0, k_i^1)] 16-byte keys."""
    a = _scalar()
    big_a = nb.crypto_scalarmult_ed25519_base_noclamp(a)
    chan.send(big_a)
    bs = chan.recv_array(np.uint8, (n, _PT))
    keys = []
    for i in range(n):
        b = bytes(bs[i])
        if not _valid(b):
            raise PeerError(f"base OT: peer sent an invalid curve point (OT {i})")
        k0 = _kdf(i, big_a, b, nb.crypto_scalarmult_ed25519_noclamp(a, b))
        diff = nb.crypto_core_ed25519_sub(b, big_a)
        if not _valid(diff):  # B = A would make the second key the identity
            raise PeerError(f"base OT: peer sent a degenerate point (OT {i})")
        k1 = _kdf(i, big_a, b, nb.crypto_scalarmult_ed25519_noclamp(a, diff))
        keys.append((k0, k1))
    return keys


def base_ot_recv(chan, choices: np.ndarray) -> list[bytes]:  # noqa: ANN001 - Channel
    """Run len(choices) base OTs as receiver; returns [k_i^{c_i}]."""
    big_a = chan.recv_bytes(max_len=_PT)
    if not _valid(big_a):
        raise PeerError("base OT: peer sent an invalid curve point A")
    n = len(choices)
    out = np.empty((n, _PT), np.uint8)
    bs = []
    for i in range(n):
        b = _scalar()
        pt = nb.crypto_scalarmult_ed25519_base_noclamp(b)
        if choices[i]:
            pt = nb.crypto_core_ed25519_add(pt, big_a)
        out[i] = np.frombuffer(pt, np.uint8)
        bs.append((b, pt))
    chan.send(out)
    return [
        _kdf(i, big_a, pt, nb.crypto_scalarmult_ed25519_noclamp(b, big_a))
        for i, (b, pt) in enumerate(bs)
    ]
