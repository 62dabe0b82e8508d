"""Fresh public-key BFV encryptions of zero: the server's re-randomisers (Cheetah §4).

An encryption of zero under the client's public key pk = (p0, p1) = (-(a*s + e), a) is
(u*p0 + e0, u*p1 + e1) with u uniform ternary and e0, e1 small, as in SEAL's ``encrypt_zero``;
the server adds one to every ciphertext it returns so that the returned c1 is a fresh RLWE
sample that says nothing about the weights. Here u, e0 and e1 come from the server's PRG
(AES-CTR, seeded from ``secrets``) and SEAL does only the ring product u*pk (one plaintext NTT,
one NTT-form product, one inverse NTT: ~2 ms against ~4.3 ms for ``encrypt_zero``, whose cost
is mostly its own sampling). The errors are centred binomial with eta = 21 (standard deviation
3.24, |e| <= 21), the width the HE security standard's tables assume (3.2).
"""

from __future__ import annotations

import numpy as np
import seal

from ..prg import PRG
from . import rns
from .linear_he_seal import HEParams, N, ct_from_array, ct_to_array, plain_from_coeffs

ETA = 21  # centred binomial: sum of 21 bits minus sum of 21 bits
E_MAX = ETA


def ternary(prg: PRG, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform {-1, 0, 1} as int64 (16-bit draws below 3 * 21845, rejection of the rest)."""
    r = prg.fill(np.empty(shape, np.uint16))
    bad = r == 65535
    while bad.any():
        r[bad] = prg.fill(np.empty(int(bad.sum()), np.uint16))
        bad = r == 65535
    return (r % 3).astype(np.int64) - 1


def centred_binomial(prg: PRG, shape: tuple[int, ...]) -> np.ndarray:
    """Centred binomial errors with eta = ETA as int64."""
    r = prg.fill(np.empty(shape, np.uint64))
    m = np.uint64((1 << ETA) - 1)
    a = np.bitwise_count(r & m).astype(np.int64)
    b = np.bitwise_count((r >> np.uint64(ETA)) & m).astype(np.int64)
    return a - b


class ZeroEncryptor:
    """Encryptions of zero at the data level (coefficient form) under a public key (p0, a)."""

    def __init__(self, hp: HEParams, pk: np.ndarray) -> None:
        """``pk``: uint64 [2, k, N], the key's residues at the data level in coefficient form;
        ValueError if SEAL does not take them as a ciphertext."""
        self.hp = hp
        self.pk = ct_from_array(hp, pk)
        hp.evaluator.transform_to_ntt_inplace(self.pk)  # NTT form, data level

    def product(self, prg: PRG) -> seal.Ciphertext:
        """u * pk for a fresh uniform ternary u (coefficient form, data level; no errors yet)."""
        hp, ev = self.hp, self.hp.evaluator
        u = ternary(prg, (N,))
        t = np.uint64(1 << hp.ell)
        pt = plain_from_coeffs(hp, np.where(u < 0, t - np.uint64(1), u.astype(np.uint64)))
        ev.transform_to_ntt_inplace(pt, hp.first_parms)  # -1 = t - 1 lifts to q_j - 1
        ct = ev.multiply_plain(self.pk, pt)
        ev.transform_from_ntt_inplace(ct)
        return ct

    def sample(self, prg: PRG, count: int) -> np.ndarray:
        """``count`` fresh encryptions of zero u*pk + (e0, e1): uint64 [count, 2, k, N]."""
        hp = self.hp
        out = np.stack([ct_to_array(self.product(prg)) for _ in range(count)])
        e = centred_binomial(prg, (count, 2, N))
        for j, qj in enumerate(hp.q):
            out[:, :, j] = rns.add(out[:, :, j], rns.from_signed(e, qj), qj)
        return out
