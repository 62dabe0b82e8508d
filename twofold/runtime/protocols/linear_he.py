"""HE core of the linear layers: the client's share goes out encrypted, the masked W*x comes back.

Protocol (Cheetah §4, one call = one layer, every message batched per ciphertext):

1. client: encrypt each packed input polynomial of its share x_c under its secret key (BFV,
   t = 2^ell, coefficient encoding) and send the raw RNS data;
2. server: per output polynomial y_o = sum_j ct_j * P_oj (NTT-form products), subtract a fresh
   uniform mask r (its own share), re-randomise by adding a public-key encryption of zero, flood
   the noise with a uniform F in [-2^b, 2^b) (b = log2(Q/q_0) + 17), mod-switch to q_0 and send
   c1 plus only the wanted coefficients of c0;
3. client: decrypt the wanted coefficients: W*x_c - r mod 2^ell.

Circuit privacy (docs/SECURITY.md): the W-dependent noise is at most D = 20 * ||P_o||_1 per
coefficient; the client sees at most N coefficients, so the flooded noise is within statistical
distance N*D/2^(b+1) <= 2^-40 of a W-independent one; ``check_flooding`` enforces the bound.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import seal

from .. import bitpack
from ..errors import PeerError
from ..prg import PRG
from .linear_he_seal import (
    HEParams,
    N,
    coeffs_from_plain,
    ct_from_array,
    ct_to_array,
    he_params,
    plain_from_coeffs,
    plain_ntt_from_coeffs,
)

STAT_BITS = 40
FRESH_NOISE = 20  # bound on |e| + 1/2 of a fresh symmetric BFV encryption (SEAL clips at 6*3.2)

_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def flood_bits(hp: HEParams) -> int:
    """b such that a flood F < 2^b stays below 2^17 after switching to q_0 (budget 2^19)."""
    ratio = math.prod(hp.q) // hp.q_last
    return ratio.bit_length() - 1 + 17


def check_flooding(hp: HEParams, l1: int, what: str) -> None:
    """Raise unless N * 20 * l1 / 2^(b+1) <= 2^-40 (the circuit-privacy bound)."""
    d = FRESH_NOISE * max(int(l1), 1)
    if (N * d) << STAT_BITS > 1 << (flood_bits(hp) + 1):
        raise ValueError(
            f"{what}: weights too large for noise flooding (||W||_1 = {l1}); "
            f"need N*20*||W||_1 <= 2^{flood_bits(hp) + 1 - STAT_BITS}"
        )


def centered_l1(polys: np.ndarray, ell: int) -> np.ndarray:
    """||p||_1 of each polynomial with coefficients lifted to (-2^(ell-1), 2^(ell-1)]."""
    s = polys.astype(np.int64)
    half = 1 << (ell - 1)
    s = np.where(s > half, s - (1 << ell), s)
    return np.abs(s).sum(axis=-1, dtype=np.float64)


@dataclass
class _Keys:
    hp: HEParams
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor | None = None


def _mulmod_small(a: np.ndarray, c: int, q: int) -> np.ndarray:
    """(a * c) mod q for a < 2^21, c < q < 2^61, exact in uint64 (quotient from float64)."""
    quot = np.floor(a.astype(np.float64) * (float(c) / float(q))).astype(np.uint64)
    r = (a * np.uint64(c) - quot * np.uint64(q)).view(np.int64)
    r = np.where(r < 0, r + q, r)
    r = np.where(r >= q, r - q, r)
    return r.astype(np.uint64)


def flood_residues(prg: PRG, b: int, q: tuple[int, ...]) -> np.ndarray:
    """RNS residues uint64[k, N] of F uniform in [-2^b, 2^b) (the flooding noise)."""
    limbs = -(-(b + 1) // 20)
    raw = prg.fill(np.empty((limbs, N), np.uint64)) & np.uint64((1 << 20) - 1)
    top = (b + 1) - 20 * (limbs - 1)
    raw[0] &= np.uint64((1 << top) - 1)
    return limbs_to_residues(raw, b, q)


def limbs_to_residues(raw: np.ndarray, b: int, q: tuple[int, ...]) -> np.ndarray:
    """F = sum_j raw[j] * 2^(20*(limbs-1-j)) - 2^b (20-bit limbs, most significant first),
    reduced mod each q_i by Horner's rule with exact uint64 arithmetic."""
    limbs = raw.shape[0]
    out = np.empty((len(q), raw.shape[1]), np.uint64)
    for i, qi in enumerate(q):
        acc = raw[0] % np.uint64(qi)
        c60 = (1 << 60) % qi
        for j in range(1, limbs):
            hi, lo = acc >> np.uint64(40), acc & np.uint64((1 << 40) - 1)
            acc = _mulmod_small(hi, c60, qi) + (lo << np.uint64(20)) + raw[j]
            acc %= np.uint64(qi)
        off = np.uint64((1 << b) % qi)
        out[i] = np.where(acc >= off, acc - off, acc + np.uint64(qi) - off)
    return out


def keys(party, ell: int) -> _Keys:  # noqa: ANN001
    """Per-session keys: the client makes them and sends its public key once per ell."""
    per = _STATE.setdefault(party, {})
    if ell in per:
        return per[ell]
    hp = he_params(ell)
    if party.role == "client":
        kg = seal.KeyGenerator(hp.ctx)
        sk = kg.secret_key()
        party.chan.send(kg.create_public_key().to_string())
        k = _Keys(hp, seal.Encryptor(hp.ctx, sk), seal.Decryptor(hp.ctx, sk))
    else:
        raw = party.chan.recv_bytes()
        try:
            pk = hp.ctx.from_public_str(raw)
        except Exception as e:  # noqa: BLE001 - SEAL raises several types
            raise PeerError(f"HE setup: the client sent an invalid public key ({e})") from None
        k = _Keys(hp, seal.Encryptor(hp.ctx, pk))
    per[ell] = k
    return k


@dataclass
class Output:
    """One output ciphertext: which (input, weight plaintext) pairs to sum, and what to return."""

    terms: list[tuple[int, seal.Plaintext]]  # server side only (empty on the client)
    useful: np.ndarray  # coefficient indices the client gets


def client_run(party, ell: int, in_polys: np.ndarray, useful: list[np.ndarray]) -> list[np.ndarray]:  # noqa: ANN001, E501
    """Client: send Enc(in_polys), return its share (uint64 per ``useful`` index set)."""
    k = keys(party, ell)
    hp = k.hp
    for poly in in_polys:
        ct = k.encryptor.encrypt_symmetric(plain_from_coeffs(hp, poly))
        party.chan.send(ct_to_array(ct))
    bits = hp.q_last.bit_length()
    out = []
    for idx in useful:
        c1 = bitpack.unpack(party.chan.recv_array(np.uint8, bitpack.packed_size(N, bits)), N, bits)
        c0u = bitpack.unpack(
            party.chan.recv_array(np.uint8, bitpack.packed_size(idx.size, bits)), idx.size, bits
        )
        data = np.zeros((2, 1, N), np.uint64)
        data[0, 0, idx] = c0u
        data[1, 0] = c1
        try:
            ct = ct_from_array(hp, data, last=True)
        except Exception as e:  # noqa: BLE001
            raise PeerError(f"HE linear: the server sent an invalid ciphertext ({e})") from None
        out.append(coeffs_from_plain(k.decryptor.decrypt(ct))[idx])
    return out


def server_run(party, ell: int, n_in: int, outputs: list[Output]) -> list[np.ndarray]:  # noqa: ANN001
    """Server: evaluate each output ciphertext, return its own share r per output."""
    k = keys(party, ell)
    hp = k.hp
    ev = hp.evaluator
    prg = getattr(party, "prg", None) or PRG()
    cts = []
    shape = (2, hp.k, N)
    for _ in range(n_in):
        arr = party.chan.recv_array(np.uint64, shape)
        try:
            ct = ct_from_array(hp, arr, last=False)
        except Exception as e:  # noqa: BLE001
            raise PeerError(f"HE linear: the client sent an invalid ciphertext ({e})") from None
        ev.transform_to_ntt_inplace(ct)
        cts.append(ct)
    b = flood_bits(hp)
    bits = hp.q_last.bit_length()
    qarr = np.asarray(hp.q, np.uint64)[:, None]
    shares = []
    for out in outputs:
        acc = None
        for j, pt in out.terms:
            prod = ev.multiply_plain(cts[j], pt)
            if acc is None:
                acc = prod
            else:
                ev.add_inplace(acc, prod)
        if acc is None:
            acc = k.encryptor.encrypt_zero()
        else:
            ev.transform_from_ntt_inplace(acc)
        r = np.zeros(N, np.uint64)
        r[out.useful] = prg.ring(out.useful.size, ell)
        if out.useful.size:
            ev.sub_plain_inplace(acc, plain_from_coeffs(hp, r))
        ev.add_inplace(acc, k.encryptor.encrypt_zero())  # re-randomise c1
        data = ct_to_array(acc)
        data[0] += flood_residues(prg, b, hp.q)
        data[0] %= qarr
        acc = ct_from_array(hp, data, last=False)
        ev.mod_switch_to_inplace(acc, hp.last_parms)
        low = ct_to_array(acc)
        party.chan.send(bitpack.pack(low[1, 0], bits))
        party.chan.send(bitpack.pack(low[0, 0, out.useful], bits))
        shares.append(r[out.useful])
    return shares


def weight_plaintexts(hp: HEParams, polys: np.ndarray) -> list:
    """NTT-form plaintexts for a stack of weight polynomials (None where all-zero)."""
    flat = polys.reshape(-1, N)
    res = [plain_ntt_from_coeffs(hp, p) if p.any() else None for p in flat]
    return np.array(res, dtype=object).reshape(polys.shape[:-1])
