"""SEAL (BFV) parameters and raw polynomial I/O for the HE linear layers (Cheetah, §3 and §5).

Parameters (per ring bit length ell, plaintext modulus t = 2^ell, coefficient encoding):

* N = 8192; coefficient moduli [ell+20, 60, 60 | 38] bits (the last one is SEAL's special prime);
  at most 218 bits in all (ell ≤ 40), the HE-standard maximum for N = 8192 at 128-bit
  classical security, checked by SEAL itself (``sec_level_type.tc128``).
* The data level has three primes: the products live at Q = q_0 q_1 q_2, then the server drops
  q_2 (its W-dependent noise shrinks below 1), floods at q_0 q_1 and switches down to q_0 alone
  (ell+20 bits), so the client gets small ciphertexts (see ``linear_he`` and docs/SECURITY.md).

seal-python exposes no raw coefficient buffers, so polynomials are moved in and out through
SEAL's own uncompressed serialisation (``to_bytes``/``load_bytes``): a fixed header followed by
the little-endian uint64 coefficients. ``load_bytes`` re-validates every coefficient.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np
import seal

N = 8192
SPECIAL_BITS = 38  # only keeps SEAL's key level: nothing here switches keys through it
DATA_BITS = (60, 60)
#: 40: the first prime (ell + 20 bits) must be a SEAL prime (≤ 60 bits), and all fit in 218 bits
MAX_ELL = min(60 - 20, 218 - 20 - sum(DATA_BITS) - SPECIAL_BITS)

# Offsets in SEAL 4.x's uncompressed serialisation (SEALHeader = 16 bytes).
_PT_DATA = 88  # header 16 | parms_id 32 | coeff_count 8 | scale 8 | DynArray header 16 | size 8
_CT_NTT = 48  # header 16 | parms_id 32 | is_ntt_form 1 | size 8 | N 8 | k 8 | scale 8 | corr 8
_CT_DATA = 113  # ... | DynArray header 16 | size 8 | data


def first_bits(ell: int) -> int:
    """Bit size of the prime the reply is switched down to (decryption headroom 2^19, see below)."""
    return ell + 20


@dataclass
class HEParams:
    """A SEAL context for one ell and everything derived from it that both parties need."""

    ell: int
    ctx: seal.SEALContext
    q: tuple[int, ...]  # data-level primes
    q_last: int  # the prime of the lowest level (what the reply is switched down to)
    first_parms: list[int]
    last_parms: list[int]
    pt_prefix: bytes  # serialisation header of a coefficient-form plaintext with N coefficients
    ct_prefix_first: bytes  # header of a 2-poly ciphertext at the data level, coefficient form
    ct_prefix_last: bytes  # the same at the last level
    q_mid: tuple[int, ...]  # q_0, q_1
    evaluator: seal.Evaluator

    @property
    def k(self) -> int:
        return len(self.q)


@functools.lru_cache(maxsize=8)
def he_params(ell: int) -> HEParams:
    """Build (once per process and ell) the public BFV parameters both parties derive the same."""
    if not 16 <= ell <= MAX_ELL:
        raise ValueError(f"HE linear layers support ring bit lengths 16..{MAX_ELL}, got ell={ell}")
    parms = seal.EncryptionParameters(seal.scheme_type.bfv)
    parms.set_poly_modulus_degree(N)
    bits = [first_bits(ell), *DATA_BITS, SPECIAL_BITS]
    if sum(bits) > 218:
        raise ValueError(f"coefficient modulus {bits} exceeds 218 bits for N={N}")
    parms.set_coeff_modulus(seal.CoeffModulus.Create(N, bits))
    parms.set_plain_modulus(1 << ell)
    ctx = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
    if not ctx.parameters_set():
        raise ValueError(f"SEAL rejected the parameters: {ctx.parameter_error_message()}")
    q = tuple(m.value() for m in ctx.first_context_data().parms().coeff_modulus())
    q_last = ctx.last_context_data().parms().coeff_modulus()[0].value()
    if q_last < 3 << (ell + 18):  # reply noise budget q_0/(2t) >= 0.75 * 2^19 (see linear_he)
        raise ValueError(f"SEAL chose a first prime {q_last} below 1.5 * 2^{ell + 19}")
    # Templates: serialise a zero plaintext and two throw-away ciphertexts, keep their headers.
    pt_prefix = seal.Plaintext(N).to_bytes()[:_PT_DATA]
    kg = seal.KeyGenerator(ctx)
    enc = seal.Encryptor(ctx, kg.secret_key())
    ev = seal.Evaluator(ctx)
    z = np.zeros(N, np.uint64)
    z[0] = 1
    one = _load_plain(ctx, pt_prefix, z)
    ct = enc.encrypt_symmetric(one)
    ct_first = ct.to_string()[:_CT_DATA]
    ev.mod_switch_to_inplace(ct, ctx.last_parms_id())
    ct_last = ct.to_string()[:_CT_DATA]
    return HEParams(
        ell=ell,
        ctx=ctx,
        q=q,
        q_last=q_last,
        first_parms=list(ctx.first_parms_id()),
        last_parms=list(ctx.last_parms_id()),
        pt_prefix=pt_prefix,
        ct_prefix_first=ct_first,
        ct_prefix_last=ct_last,
        q_mid=q[:2],
        evaluator=ev,
    )


def he_supports(ell: int) -> bool:
    """Whether the BFV parameters exist for the ring Z_2^ell (public)."""
    try:
        he_params(ell)
    except ValueError:
        return False
    return True


def _load_plain(ctx: seal.SEALContext, prefix: bytes, coeffs: np.ndarray) -> seal.Plaintext:
    pt = seal.Plaintext()
    pt.load_bytes(ctx, prefix + np.ascontiguousarray(coeffs, dtype="<u8").tobytes())
    return pt


def plain_from_coeffs(hp: HEParams, coeffs: np.ndarray) -> seal.Plaintext:
    """A coefficient-form plaintext from uint64[N] residues mod t (no hex strings)."""
    if coeffs.shape != (N,):
        raise ValueError(f"plaintext needs {N} coefficients, got shape {coeffs.shape}")
    return _load_plain(hp.ctx, hp.pt_prefix, coeffs)


def plain_ntt_from_coeffs(hp: HEParams, coeffs: np.ndarray) -> seal.Plaintext:
    """The same plaintext lifted to the data level's NTT form (for fast ct x pt products)."""
    pt = plain_from_coeffs(hp, coeffs)
    hp.evaluator.transform_to_ntt_inplace(pt, hp.first_parms)
    return pt


def coeffs_from_plain(pt: seal.Plaintext) -> np.ndarray:
    """uint64[N] coefficients of a coefficient-form plaintext (SEAL trims trailing zeros)."""
    raw = np.frombuffer(pt.to_bytes(), dtype="<u8", offset=_PT_DATA)
    out = np.zeros(N, np.uint64)
    out[: raw.size] = raw
    return out


class _MemFile:
    """An anonymous in-memory file (``memfd_create``) with a path SEAL can ``save`` to.

    ``/proc/self/fd/N`` names the memfd only while this process holds it: there is no name in
    any file system, so nothing survives the process however it ends (SIGKILL included), and
    no other process can open it by name. One per thread and process (a forked session makes
    its own; the parent's descriptor is closed in the child).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("twofold-ct", os.MFD_CLOEXEC)
        else:  # no memfd: an already-unlinked temporary file (nothing left to clean up)
            self.fd = os.dup(tempfile.TemporaryFile().fileno())
        self.path = (
            f"/proc/self/fd/{self.fd}" if os.path.isdir("/proc/self/fd") else (f"/dev/fd/{self.fd}")
        )

    def __del__(self) -> None:
        if self.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self.fd)


_LOCAL = threading.local()


def _memfile() -> _MemFile:
    mf = getattr(_LOCAL, "mf", None)
    if mf is None or mf.pid != os.getpid():
        if mf is not None:
            with contextlib.suppress(OSError):
                os.close(mf.fd)  # the parent's descriptor, inherited by fork
        mf = _LOCAL.mf = _MemFile()
    return mf


def ct_to_array(ct: seal.Ciphertext) -> np.ndarray:
    """Raw RNS data of a ciphertext as uint64[size, k, N] (a copy). seal-python has no raw
    buffer access; ``save`` to an in-memory file (see :class:`_MemFile`) costs ~1.0 ms against
    2.7 ms for ``to_string`` (N = 8192, 3 primes; measured as the same as /dev/shm)."""
    mf = _memfile()
    ct.save(mf.path)
    k = ct.coeff_modulus_size()
    out = np.empty((ct.size(), k, N), dtype="<u8")
    got = os.preadv(mf.fd, [memoryview(out).cast("B")], _CT_DATA)
    if got != out.nbytes:
        raise ValueError(f"SEAL wrote {got} ciphertext bytes, expected {out.nbytes}")
    return out


def ct_from_array(hp: HEParams, data: np.ndarray, *, level: str = "first") -> seal.Ciphertext:
    """A 2-poly coefficient-form ciphertext from uint64[2, k, N] at level "first" (k=3) or
    "last" (k=1); SEAL validates every residue."""
    prefix, k = {
        "first": (hp.ct_prefix_first, hp.k),
        "last": (hp.ct_prefix_last, 1),
    }[level]
    if data.shape != (2, k, N):
        raise ValueError(f"ciphertext data must have shape {(2, k, N)}, got {data.shape}")
    ct = seal.Ciphertext()
    ct.load_bytes(hp.ctx, prefix + np.ascontiguousarray(data, dtype="<u8").tobytes())
    return ct
