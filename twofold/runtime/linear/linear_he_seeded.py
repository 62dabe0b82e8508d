"""Seeded symmetric BFV encryption: the client's input ciphertexts travel at half their size.

A symmetric encryption of m under the secret key s is (c0, c1) = (-a*s + e + round(Q*m/t), a)
with a uniform mod Q and e small. a needs no secrecy, only uniformity, so both parties expand it
from a 16-byte seed the client draws (``secrets``) and sends once per layer, and only c0 goes on
the wire (SEAL's own seeded ciphertexts do the same; seal-python exposes no seed). The seed
stream yields the residues of a prime by prime by rejection sampling, so they are uniform and
independent (= a uniform mod Q by CRT). e is centred binomial (eta = 21, |e| <= 21; standard
deviation 3.24 like SEAL's 3.2) from the client's own PRG, never from the seed.

SEAL computes a*s: two a's per ciphertext (a_1, a_2) are moved to NTT form, multiplied by s in
NTT form and moved back, one product for two inputs.
"""

from __future__ import annotations

import math

import numpy as np
import seal

from ..prg import PRG
from . import rns
from .linear_he_seal import (
    HEParams,
    N,
    ct_from_array,
    ct_to_array,
    plain_ntt_from_coeffs,
)
from .linear_he_zero import ETA, centred_binomial

SEED_BYTES = 16
E_MAX = ETA  # |e| of a fresh encryption (plus 1/2 for the rounding of Q*m/t)


def uniform_residues(prg: PRG, q: tuple[int, ...], count: int) -> np.ndarray:
    """``count`` polynomials uniform mod prod(q), as residues uint64 [count, len(q), N]: for each
    prime, draws of bit_length(q_i) bits below q_i are kept, in stream order (deterministic)."""
    out = np.empty((count, len(q), N), np.uint64)
    for j, qj in enumerate(q):
        mask = np.uint64((1 << qj.bit_length()) - 1)
        need, got = count * N, []
        while need > 0:
            draw = prg.fill(np.empty(need + need // 8 + 64, np.uint64)) & mask
            keep = draw[draw < np.uint64(qj)][:need]
            got.append(keep)
            need -= keep.size
        out[:, j] = np.concatenate(got).reshape(count, N)
    return out


class SeededEncryptor:
    """Symmetric encryption under the client's secret key with a from a seed (client side)."""

    def __init__(self, hp: HEParams, sk: seal.SecretKey) -> None:
        self.hp = hp
        raw = sk.to_string()  # a plaintext in NTT form at the key level: k + 1 primes
        data = np.frombuffer(
            raw, dtype="<u8", count=(hp.k + 1) * N, offset=len(raw) - (hp.k + 1) * N * 8
        )  # noqa: E501
        template = plain_ntt_from_coeffs(hp, np.zeros(N, np.uint64)).to_bytes()
        prefix = template[: len(template) - hp.k * N * 8]
        self.s_ntt = seal.Plaintext()
        self.s_ntt.load_bytes(hp.ctx, prefix + data[: hp.k * N].tobytes())
        t = 1 << hp.ell
        q_all = math.prod(hp.q)
        self.delta = [(q_all // t) % qj for qj in hp.q]  # floor(Q/t) mod q_j
        self.rho = q_all % t  # Q mod t: round(Q*m/t) = floor(Q/t)*m + round(rho*m/t)

    def a_times_s(self, a: np.ndarray) -> np.ndarray:
        """a*s for a uint64 [n, k, N] (coefficient form): two per SEAL product."""
        hp, ev = self.hp, self.hp.evaluator
        out = np.empty_like(a)
        for i in range(0, len(a), 2):
            pair = a[[i, min(i + 1, len(a) - 1)]]  # an odd one out rides twice (SEAL refuses
            ct = ct_from_array(hp, pair)  # a zero c1: "transparent")
            ev.transform_to_ntt_inplace(ct)
            ev.multiply_plain_inplace(ct, self.s_ntt)
            ev.transform_from_ntt_inplace(ct)
            out[i : i + 2] = ct_to_array(ct)[: len(a[i : i + 2])]
        return out

    def encrypt(self, a: np.ndarray, polys: np.ndarray, prg: PRG) -> np.ndarray:
        """c0 of the encryptions of ``polys`` uint64 [n, N] (residues mod t) whose c1 are ``a``
        uint64 [n, k, N] (from the seed); errors from ``prg``. Returns uint64 [n, k, N]."""
        hp = self.hp
        n = len(polys)
        a_s = self.a_times_s(a)
        m = polys.astype(np.uint64)[:, None, :]
        qv = np.asarray(hp.q, np.uint64)[:, None]
        dm = rns.mul_small(m, np.asarray(self.delta, np.uint64)[:, None], qv)
        frac = np.rint(m.astype(np.float64) * (self.rho / float(1 << hp.ell))).astype(np.int64)
        e = centred_binomial(prg, (n, 1, N)) + frac  # |.| < 2^41: below every q_j
        c0 = rns.add(dm, rns.from_small(e, qv), qv)
        return rns.sub(c0, a_s, qv)
