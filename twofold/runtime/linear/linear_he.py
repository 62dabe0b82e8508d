"""HE core of the linear layers: the client's share goes out encrypted, the masked W*x comes back.

Protocol (Cheetah §4, one call = one layer, every message batched per ciphertext):

1. client: encrypt each packed input polynomial of its share x_c under its secret key (BFV,
   t = 2^ell, coefficient encoding, level Q = q_0 q_1 q_2) and send the raw RNS data of c0;
   every c1 is expanded from one seed per call (``linear_he_seeded``);
2. server: per output polynomial y_o = sum_j ct_j * P_oj (NTT-form products in SEAL, or the
   same sums of scaled, shifted input ciphertexts as exact float64 matrix products in the
   coefficient domain, ``linear_he_coef``), subtract a fresh uniform mask r (its own share),
   re-randomise by adding a public-key encryption of zero (``linear_he_zero``), flood with F
   uniform in [-2^b, 2^b) at the data level Q = q_0 q_1 q_2 (b = 134 for the 60-bit q_1, q_2),
   switch down to q_0 (F / (q_1 q_2) < 2^15 there) and send c1 plus only the wanted
   coefficients of c0. Everything after the products runs on numpy arrays of whole batches
   (``rns``);
3. client: decrypt the wanted coefficients: W*x_c - r mod 2^ell.

Circuit privacy per inference (docs/SECURITY.md): c1 is a fresh RLWE sample (independent of W
under RLWE); the W-dependent noise of each coefficient at level Q is at most
FRESH_NOISE * ||W||_1 <= 2^50 (``check_flooding`` enforces it per layer), so the flood hides
it within statistical distance 2^50 / 2^(b+1) = 2^-85 per revealed coefficient. A session
reveals at most 2^25 coefficients (enforced; DenseNet-121 at 224^2 reveals 2^22.7 with
``--linear auto``, 2^24.1 with every BN affine in HE too), i.e. <= 2^-60 per inference, and
<= 2^-40 over a budget of 2^20 inferences against the same weights. Everything after the
flood is post-processing.
"""

from __future__ import annotations

import math
import secrets
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import seal

from .. import bitpack
from ..errors import PeerError
from ..prg import PRG
from . import rns
from .linear_he_seal import (
    HEParams,
    N,
    coeffs_from_plain,
    ct_from_array,
    ct_to_array,
    he_params,
    plain_ntt_from_coeffs,
)
from .linear_he_seeded import E_MAX, SEED_BYTES, SeededEncryptor, uniform_residues
from .linear_he_zero import ZeroEncryptor, centred_binomial

STAT_BITS = 40
FRESH_NOISE = E_MAX + 1  # bound on |e| + 1/2 of a fresh symmetric encryption (linear_he_seeded)

_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BATCH = 8  # output ciphertexts per numpy pass
# Low bits of the reply not sent: rounding c1 to a multiple of 2^5 moves each coefficient by
# <= 2^4, so the phase c0 + c1*s by <= 2^4 * ||s||_1 <= 2^17; c0 to 2^16 by <= 2^15; with the
# mod-switch rounding (<= 2^13) and the flood (< 2^15, flood_bits) the noise stays below
# 0.41 * 2^19 < q_0/(2t) (checked in linear_he_seal.he_params: q_0 >= 1.5 * 2^(ell+19)).
C1_DROP, C0_DROP = 5, 16


# Circuit privacy budget (docs/SECURITY.md, "Circuit privacy per inference"):
NOISE_BITS = 50  # premise: W-dependent noise per coefficient at level Q <= 2^50
FLOOD_AT_Q0_BITS = 15  # the flood after switching down to q_0: < 2^15 of the >= 2^18.6 budget
SESSION_COEFFS_BITS = 25  # revealed coefficients per session (= per inference) <= 2^25
QUERY_BUDGET_BITS = 20  # inferences against one set of weights the 2^-40 bound covers


def flood_bits(hp: HEParams) -> int:
    """b: the flood F is uniform in [-2^b, 2^b) at level Q, the largest b with
    2^b / (q_1 q_2) <= 2^FLOOD_AT_Q0_BITS (b = 134 for SEAL's 60-bit q_1, q_2)."""
    return (hp.q[1] * hp.q[2]).bit_length() - 1 + FLOOD_AT_Q0_BITS


def privacy_bound_bits(hp: HEParams) -> int:
    """-log2 of the statistical distance over QUERY_BUDGET inferences of the largest session:
    2^SESSION_COEFFS * 2^QUERY_BUDGET * 2^NOISE / 2^(b+1) (>= 40 is required, he_params)."""
    return flood_bits(hp) + 1 - NOISE_BITS - SESSION_COEFFS_BITS - QUERY_BUDGET_BITS


def check_flooding(hp: HEParams, l1: int, what: str) -> None:
    """Raise unless the W-dependent noise FRESH_NOISE*||W||_1 at level Q is at most 2^NOISE_BITS,
    the premise of the flood's 2^-85 per coefficient (see the module docstring)."""
    d = FRESH_NOISE * max(int(l1), 1)
    if d > 1 << NOISE_BITS or privacy_bound_bits(hp) < STAT_BITS:
        raise ValueError(
            f"{what}: weights too large for noise flooding (||W||_1 = {l1}); "
            f"need {FRESH_NOISE}*||W||_1 <= 2^{NOISE_BITS}"
        )


def count_revealed(party, n: int) -> None:  # noqa: ANN001
    """Add n revealed coefficients to the session's count; refuse past 2^SESSION_COEFFS_BITS
    (the per-inference premise of the circuit-privacy bound)."""
    per = _STATE.setdefault(party, {})
    per["revealed"] = per.get("revealed", 0) + n
    if per["revealed"] > 1 << SESSION_COEFFS_BITS:
        raise ValueError(
            f"HE linear: this inference reveals more than 2^{SESSION_COEFFS_BITS} coefficients, "
            "beyond the circuit-privacy budget (docs/SECURITY.md)"
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
    encryptor: SeededEncryptor | None = None  # client: symmetric, under its secret key
    decryptor: seal.Decryptor | None = None  # client
    zero: ZeroEncryptor | None = None  # server: encryptions of zero under the client's pk


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


def packed_c0_size(hp: HEParams) -> int:
    """Bytes of a bit-packed data-level c0 (each residue in its prime's bit length): an input
    ciphertext on the wire (its c1 comes from the layer's seed, ``linear_he_seeded``)."""
    return sum(bitpack.packed_size(N, q.bit_length()) for q in hp.q)


def pack_c0(hp: HEParams, c0: np.ndarray) -> np.ndarray:
    """uint64[k, N] residues -> one uint8 buffer, prime by prime (172 of 192 bits at ell=32)."""
    return np.concatenate([bitpack.pack(c0[i], q.bit_length()) for i, q in enumerate(hp.q)])


def unpack_c0(hp: HEParams, buf: np.ndarray) -> np.ndarray:
    out = np.empty((hp.k, N), np.uint64)
    off = 0
    for i, q in enumerate(hp.q):
        n = bitpack.packed_size(N, q.bit_length())
        out[i] = bitpack.unpack(buf[off : off + n], N, q.bit_length())
        off += n
    return out


def public_a(party, hp: HEParams) -> np.ndarray:  # noqa: ANN001
    """The a of the client's public key, uint64 [k, N]: expanded from the session's shared PRG
    (both parties contributed to its seed), so the client cannot choose a degenerate one."""
    shared = getattr(party, "shared_prg", None)
    if shared is None:
        raise ValueError("HE linear layers need a session Party (with a shared PRG)")
    return uniform_residues(PRG(shared.bytes(16).tobytes()), hp.q, 1)[0]


def keys(party, ell: int) -> _Keys:  # noqa: ANN001
    """Per-session keys: the client makes them and sends its public key once per ell.

    The public key is (p0, a) at the data level with a from :func:`public_a` and
    p0 = -(a*s + e) (the client's seeded encryption of zero), so only p0 travels. The server
    checks every residue of p0 and that it is not zero: with a client-chosen a, the key
    (0, 0) would switch off the re-randomisation and the returned c1 = sum a_j * P_j would
    give the weights away (docs/SECURITY.md)."""
    per = _STATE.setdefault(party, {})
    if ell in per:
        return per[ell]
    hp = he_params(ell)
    a = public_a(party, hp)
    if party.role == "client":
        sk = seal.KeyGenerator(hp.ctx).secret_key()
        enc = SeededEncryptor(hp, sk)
        prg = getattr(party, "prg", None) or PRG()
        p0 = enc.encrypt(a[None], np.zeros((1, N), np.uint64), prg)[0]
        party.chan.send(pack_c0(hp, p0))
        k = _Keys(hp, enc, seal.Decryptor(hp.ctx, sk))
    else:
        p0 = unpack_c0(hp, party.chan.recv_array(np.uint8, packed_c0_size(hp)))
        if (p0 >= np.asarray(hp.q, np.uint64)[:, None]).any():
            raise PeerError("HE setup: the client sent an invalid public key (residue >= q)")
        if not p0.any():
            raise PeerError("HE setup: the client sent a degenerate public key (p0 = 0)")
        k = _Keys(hp, zero=ZeroEncryptor(hp, np.stack([p0, a])))
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
    seed = secrets.token_bytes(SEED_BYTES)  # c1 of every input: expanded from it by both sides
    party.chan.send(seed)
    prg = getattr(party, "prg", None) or PRG()
    a = uniform_residues(PRG(seed), hp.q, len(in_polys))
    for p0 in range(0, len(in_polys), _BATCH):
        c0 = k.encryptor.encrypt(a[p0 : p0 + _BATCH], in_polys[p0 : p0 + _BATCH], prg)
        for c in c0:
            party.chan.send(pack_c0(hp, c))
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


def server_receive(party, hp: HEParams, n_in: int) -> np.ndarray:  # noqa: ANN001
    """Server: the client's n_in input ciphertexts as uint64 [n_in, 2, k, N] (coefficient form):
    the seed, then each c0; c1 is expanded from the seed."""
    seed = party.chan.recv_bytes(max_len=SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise PeerError(f"HE linear: the client sent a {len(seed)}-byte seed, not {SEED_BYTES}")
    nbytes = packed_c0_size(hp)
    out = np.empty((n_in, 2, hp.k, N), np.uint64)
    out[:, 1] = uniform_residues(PRG(seed), hp.q, n_in)
    qa = np.asarray(hp.q, np.uint64)[:, None]
    for i in range(n_in):
        out[i, 0] = unpack_c0(hp, party.chan.recv_array(np.uint8, nbytes))
        if (out[i, 0] >= qa).any():
            raise PeerError("HE linear: the client sent an invalid ciphertext (residue >= q)")
    return out


def server_reply(
    party,  # noqa: ANN001
    k: _Keys,
    accs: Iterable[np.ndarray],
    useful: list[np.ndarray],
) -> list[np.ndarray]:
    """Server: mask, re-randomise, flood and switch down each output ciphertext, and send it.

    ``accs`` yields batches uint64 [n, 2, k, N] of the products (coefficient form, data level),
    in the order of ``useful``; returns the server's share r per output. The flood is added at
    the data level, so SEAL switches down to q_0 in one call."""
    hp = k.hp
    ev = hp.evaluator
    prg = getattr(party, "prg", None) or PRG()
    delta = math.prod(hp.q) // (1 << hp.ell)  # Delta = floor(Q / t) encodes the mask
    qv = np.asarray(hp.q, np.uint64)[:, None]  # one prime per row: broadcasts over [n, k, N]
    dq = np.asarray([delta % q for q in hp.q], np.uint64)[:, None]
    b1, b0 = reply_bits(hp)
    q0 = hp.q_last
    shares: list[np.ndarray] = []
    for acc_all in accs:
        for s0 in range(0, len(acc_all), _BATCH):
            acc = acc_all[s0 : s0 + _BATCH]
            n = len(acc)
            idx = useful[len(shares) : len(shares) + n]
            if len(idx) != n:
                raise ValueError("HE linear: more output ciphertexts than output index sets")
            r = np.zeros((n, N), np.uint64)
            for o, u in enumerate(idx):
                r[o, u] = prg.ring(u.size, hp.ell)
                shares.append(r[o, u])
            e = centred_binomial(prg, (n, 2, 1, N))  # the errors of the encryptions of zero
            c0 = rns.sub(acc[:, 0], rns.mul_small(r[:, None], dq, qv), qv)  # - Delta * r
            c0 = rns.add(c0, rns.from_small(e[:, 0], qv), qv)
            c0 = rns.add(c0, flood_residues(prg, hp, n), qv)
            count_revealed(party, sum(u.size for u in idx))
            acc[:, 0] = c0
            acc[:, 1] = rns.add(acc[:, 1], rns.from_small(e[:, 1], qv), qv)
            for o, u in enumerate(idx):
                ct = ct_from_array(hp, acc[o])
                ev.add_inplace(ct, k.zero.product(prg))  # + u*pk: a fresh RLWE sample
                ev.mod_switch_to_inplace(ct, hp.last_parms)  # / q_2, / q_1 with rounding
                low = ct_to_array(ct)[:, 0]
                party.chan.send(bitpack.pack(round_low_bits(low[1], C1_DROP, q0), b1))
                party.chan.send(bitpack.pack(round_low_bits(low[0, u], C0_DROP, q0), b0))
    if len(shares) != len(useful):
        raise ValueError("HE linear: fewer output ciphertexts than output index sets")
    return shares


_LIMB = 27  # flood limbs: mul_small takes multiplicands below 2^48


def flood_residues(prg: PRG, hp: HEParams, count: int) -> np.ndarray:
    """Residues mod (q_0, q_1, q_2) of F uniform in [-2^b, 2^b) (b = flood_bits), one per
    coefficient: uint64 [count, k, N]. F + 2^b is drawn as 27-bit limbs of b + 1 random bits."""
    b = flood_bits(hp)
    nbits = b + 1
    qv = np.asarray(hp.q, np.uint64)[:, None]
    acc = np.zeros((count, hp.k, N), np.uint64)
    for i in range(-(-nbits // _LIMB)):
        width = min(_LIMB, nbits - _LIMB * i)
        limb = prg.fill(np.empty((count, 1, N), np.uint64)) & np.uint64((1 << width) - 1)
        c = np.asarray([(1 << (_LIMB * i)) % q for q in hp.q], np.uint64)[:, None]
        acc = rns.add(acc, rns.mul_small(limb, c, qv), qv)
    off = np.asarray([(1 << b) % q for q in hp.q], np.uint64)[:, None]
    return rns.sub(acc, np.broadcast_to(off, acc.shape), qv)


def server_run(party, ell: int, n_in: int, outputs: list[Output]) -> list[np.ndarray]:  # noqa: ANN001
    """Server, SEAL products: evaluate each output ciphertext, return its share r per output."""
    k = keys(party, ell)
    hp = k.hp
    ev = hp.evaluator
    cts, cts_coef = [], []
    for arr in server_receive(party, hp, n_in):
        ct = ct_from_array(hp, arr)
        cts_coef.append(seal.Ciphertext(ct))
        ev.transform_to_ntt_inplace(ct)
        cts.append(ct)

    def products() -> Iterator[np.ndarray]:
        for o0 in range(0, len(outputs), _BATCH):
            batch = outputs[o0 : o0 + _BATCH]
            out = np.zeros((len(batch), 2, hp.k, N), np.uint64)
            for i, o in enumerate(batch):
                acc = _evaluate(ev, o.terms, cts, cts_coef)
                if acc is not None:
                    out[i] = ct_to_array(acc)
            yield out

    return server_reply(party, k, products(), [o.useful for o in outputs])


def server_run_arrays(
    party,  # noqa: ANN001
    ell: int,
    n_in: int,
    useful: list[np.ndarray],
    compute: Callable[[np.ndarray], Iterable[np.ndarray]],
) -> list[np.ndarray]:
    """Server, products in numpy: ``compute`` maps the input ciphertexts uint64 [n_in, 2, k, N]
    to batches of output ciphertexts (coefficient form), in the order of ``useful``."""
    k = keys(party, ell)
    return server_reply(party, k, compute(server_receive(party, k.hp, n_in)), useful)


def _evaluate(ev, terms, cts, cts_coef) -> seal.Ciphertext | None:  # noqa: ANN001
    """sum_j ct_j * P_j in coefficient form (None if there are no terms)."""
    acc = acc_c = None  # NTT-form sum; coefficient-form sum of the monomial products
    for j, pt in terms:
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
    if acc is None:
        return acc_c
    ev.transform_from_ntt_inplace(acc)
    if acc_c is not None:
        ev.add_inplace(acc, acc_c)
    return acc


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
