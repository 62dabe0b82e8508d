"""HE core of the linear layers: the client's share goes out encrypted, the masked W*x comes back.

Protocol (Cheetah §4, one call = one layer, every message batched per ciphertext):

1. client: encrypt each packed input polynomial of its share x_c under its secret key (BFV,
   t = 2^ell, coefficient encoding) and send the raw RNS data (level Q = q_0 q_1 q_2);
2. server: per output polynomial y_o = sum_j ct_j * P_oj (NTT-form products), subtract a fresh
   uniform mask r (its own share), re-randomise by adding a public-key encryption of zero, drop
   q_2 (the W-dependent noise, <= 20*||P_o||_1 < q_2/2, becomes <= 1 in absolute value), flood
   with F uniform in [-2^54, 2^54), switch down to q_0 and send c1 plus only the wanted
   coefficients of c0;
3. client: decrypt the wanted coefficients: W*x_c - r mod 2^ell.

Circuit privacy (docs/SECURITY.md): c1 is a fresh RLWE sample (independent of W under RLWE);
the W-dependent noise at level q_0 q_1 is at most 1 per coefficient, so with at most N = 2^13
coefficients revealed the statistical distance to a W-free transcript is <= 2^13 / 2^55 = 2^-42;
everything after the flood is post-processing. ``check_flooding`` enforces the premise.
"""

from __future__ import annotations

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
_BATCH = 16  # output ciphertexts flooded per numpy pass
# Low bits of the reply not sent: rounding c1 to a multiple of 2^5 moves each coefficient by
# <= 2^4, so the phase c0 + c1*s by <= 2^4 * ||s||_1 <= 2^17; c0 to 2^16 by <= 2^15; with the
# mod-switch rounding (<= 2^13) the noise stays below 0.35 * 2^19 < q_0/(2t) (checked in
# linear_he_seal.he_params: q_0 >= 1.5 * 2^(ell+19)).
C1_DROP, C0_DROP = 5, 16


FLOOD_BITS = 54  # F uniform in [-2^54, 2^54): N * 1 / 2^55 = 2^-42 <= 2^-40


def flood_bits(hp: HEParams) -> int:  # noqa: ARG001 - same for every ell
    """b: the flood F is uniform in [-2^b, 2^b) at level q_0 q_1 (|W-dependent noise| <= 1)."""
    return FLOOD_BITS


def check_flooding(hp: HEParams, l1: int, what: str) -> None:
    """Raise unless the W-dependent noise 20*||W||_1 at level Q is below q_2 / 2, so that after
    dropping q_2 it is at most 1/2 (+1/2 rounding) and the flood hides it (2^-40)."""
    d = FRESH_NOISE * max(int(l1), 1)
    if 2 * d > hp.q[2]:
        raise ValueError(
            f"{what}: weights too large for noise flooding (||W||_1 = {l1}); "
            f"need 20*||W||_1 <= q_2/2 ~ 2^{hp.q[2].bit_length() - 2}"
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


def flood_residues(prg: PRG, b: int, q: tuple[int, ...], count: int = 1) -> np.ndarray:
    """RNS residues uint64[count, k, N] of F uniform in [-2^b, 2^b) (b <= 62, the flood)."""
    raw = prg.fill(np.empty((count, 1, N), np.uint64)) & np.uint64((1 << (b + 1)) - 1)
    qa = np.asarray(q, np.uint64)[None, :, None]
    off = np.asarray([(1 << b) % qi for qi in q], np.uint64)[None, :, None]
    r = raw % qa
    return np.where(r >= off, r - off, r + qa - off)


def round_low_bits(x: np.ndarray, k: int, q: int) -> np.ndarray:
    """Residues mod q rounded to multiples of 2^k, sent as x' < 2^(bits(q)-k); x'*2^k mod q is
    within 2^(k-1) of x (the top value wraps to 0 = q)."""
    y = (x + np.uint64(1 << (k - 1))) >> np.uint64(k)
    y[(y << np.uint64(k)) >= np.uint64(q)] = 0
    return y


def reply_bits(hp: HEParams) -> tuple[int, int]:
    """Bits sent per c1 and per wanted c0 coefficient of a reply (after dropping low bits)."""
    b = hp.q_last.bit_length()
    return b - C1_DROP, b - C0_DROP


def packed_ct_size(hp: HEParams) -> int:
    """Bytes of a bit-packed data-level ciphertext (each residue in its prime's bit length)."""
    return sum(bitpack.packed_size(2 * N, q.bit_length()) for q in hp.q)


def pack_ct(hp: HEParams, data: np.ndarray) -> np.ndarray:
    """uint64[2, k, N] residues -> one uint8 buffer, prime by prime (172 of 192 bits at ell=32)."""
    return np.concatenate(
        [bitpack.pack(np.ascontiguousarray(data[:, i]).reshape(-1), q.bit_length())
         for i, q in enumerate(hp.q)]
    )  # fmt: skip


def unpack_ct(hp: HEParams, buf: np.ndarray) -> np.ndarray:
    out = np.empty((2, hp.k, N), np.uint64)
    off = 0
    for i, q in enumerate(hp.q):
        n = bitpack.packed_size(2 * N, q.bit_length())
        out[:, i] = bitpack.unpack(buf[off : off + n], 2 * N, q.bit_length()).reshape(2, N)
        off += n
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
        party.chan.send(pack_ct(hp, ct_to_array(ct)))
    b1, b0 = reply_bits(hp)
    out = []
    for idx in useful:
        c1 = bitpack.unpack(party.chan.recv_array(np.uint8, bitpack.packed_size(N, b1)), N, b1)
        c0u = bitpack.unpack(
            party.chan.recv_array(np.uint8, bitpack.packed_size(idx.size, b0)), idx.size, b0
        )
        data = np.zeros((2, 1, N), np.uint64)
        data[0, 0, idx] = c0u << np.uint64(C0_DROP)
        data[1, 0] = c1 << np.uint64(C1_DROP)
        try:
            ct = ct_from_array(hp, data, level="last")
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
    cts, cts_coef = [], []
    nbytes = packed_ct_size(hp)
    for _ in range(n_in):
        arr = unpack_ct(hp, party.chan.recv_array(np.uint8, nbytes))
        try:
            ct = ct_from_array(hp, arr)
        except Exception as e:  # noqa: BLE001
            raise PeerError(f"HE linear: the client sent an invalid ciphertext ({e})") from None
        cts_coef.append(seal.Ciphertext(ct))
        ev.transform_to_ntt_inplace(ct)
        cts.append(ct)
    b = flood_bits(hp)
    b1, b0 = reply_bits(hp)
    qarr = np.asarray(hp.q_mid, np.uint64)[:, None]
    shares = []
    for o0 in range(0, len(outputs), _BATCH):
        batch = outputs[o0 : o0 + _BATCH]
        datas = []
        for out in batch:
            acc = None
            acc_c = None  # coefficient-form sum of the monomial products
            for j, pt in out.terms:
                if isinstance(pt, Monomials):
                    for mono in pt:
                        prod = ev.multiply_plain(cts_coef[j], mono)
                        if acc_c is None:
                            acc_c = prod
                        else:
                            ev.add_inplace(acc_c, prod)
                    continue
                prod = ev.multiply_plain(cts[j], pt)
                if acc is None:
                    acc = prod
                else:
                    ev.add_inplace(acc, prod)
            if acc is not None:
                ev.transform_from_ntt_inplace(acc)
                if acc_c is not None:
                    ev.add_inplace(acc, acc_c)
            else:
                acc = acc_c if acc_c is not None else k.encryptor.encrypt_zero()
            r = np.zeros(N, np.uint64)
            r[out.useful] = prg.ring(out.useful.size, ell)
            if out.useful.size:
                ev.sub_plain_inplace(acc, plain_from_coeffs(hp, r))
            ev.add_inplace(acc, k.encryptor.encrypt_zero())  # re-randomise c1
            ev.mod_switch_to_next_inplace(acc)  # drop q_2: W-dependent noise now <= 1
            datas.append(ct_to_array(acc))
            shares.append(r[out.useful])
        flood = flood_residues(prg, b, hp.q_mid, len(batch))
        for out, data, f in zip(batch, datas, flood, strict=True):
            data[0] += f
            data[0] %= qarr
            acc = ct_from_array(hp, data, level="mid")
            ev.mod_switch_to_inplace(acc, hp.last_parms)
            low = ct_to_array(acc)
            q0 = hp.q_last
            party.chan.send(bitpack.pack(round_low_bits(low[1, 0], C1_DROP, q0), b1))
            party.chan.send(bitpack.pack(round_low_bits(low[0, 0, out.useful], C0_DROP, q0), b0))
    return shares


class Monomials(tuple):
    """A sparse weight polynomial kept as coefficient-form monomial plaintexts: SEAL multiplies a
    coefficient-form ciphertext by a monomial in ~0.15 ms with no NTT of the plaintext (an NTT
    plaintext costs ~0.55 ms to build and 192 KiB to keep), so polynomials with at most
    ``MONO_MAX`` terms (1x1 convs at 56x56, the per-channel affine) take this path."""


MONO_MAX = 2


def weight_plaintexts(hp: HEParams, polys: np.ndarray) -> np.ndarray:
    """Plaintexts for a stack of weight polynomials: NTT form, :class:`Monomials` when sparse,
    None where all-zero (object array of polys.shape[:-1])."""
    flat = polys.reshape(-1, N)
    res = np.empty(flat.shape[0], dtype=object)
    for i, p in enumerate(flat):
        nz = np.flatnonzero(p)
        if nz.size == 0:
            res[i] = None
        elif nz.size <= MONO_MAX:
            res[i] = Monomials(seal.Plaintext(f"{int(p[d]):X}x^{int(d)}") for d in nz)
        else:
            res[i] = plain_ntt_from_coeffs(hp, p)
    return res.reshape(polys.shape[:-1])
