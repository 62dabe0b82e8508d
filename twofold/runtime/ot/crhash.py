"""Correlation-robust hash from fixed-key AES (Guo-Katz-Wang-Yu, S&P 2020, MMO form with a tweak).

H(x, j) = pi(x ^ T(j)) ^ x ^ T(j), where pi is AES-128 under a public fixed key and T(j) is the
128-bit tweak (OT index j in the low limb, a domain/block tag in the high limb). Blocks are
uint64[n, 2]; a whole batch goes through one ECB ``update_into`` (OpenSSL AES-NI).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIXED_KEY = hashlib.sha256(b"twofold fixed-key AES for the correlation-robust hash").digest()[:16]
_TLS = threading.local()  # one ECB context per thread: contexts are not thread-safe (run_pair)


def _ecb():  # noqa: ANN202
    enc = getattr(_TLS, "ecb", None)
    if enc is None:
        enc = _TLS.ecb = Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()
    return enc


def aes_fixed(z: np.ndarray) -> np.ndarray:
    """pi(z) for uint64[n, 2] blocks (fixed-key AES-ECB), as a new uint64[n, 2] array."""
    z = np.ascontiguousarray(z, dtype=np.uint64)
    n = z.shape[0]
    buf = np.empty(n * 16 + 16, dtype=np.uint8)
    if n:
        _ecb().update_into(memoryview(z.reshape(-1).view(np.uint8)), memoryview(buf))
    return buf[: n * 16].view(np.uint64).reshape(n, 2)


def tweak_xor(x: np.ndarray, index0: int, domain: int) -> np.ndarray:
    """x ^ T(j) for j = index0 .. index0+n-1 with ``domain`` in the high limb (a new array)."""
    z = np.array(x, dtype=np.uint64, copy=True, order="C")
    z[:, 0] ^= np.arange(index0, index0 + z.shape[0], dtype=np.uint64)
    z[:, 1] ^= np.uint64(domain)
    return z


def crhash(x: np.ndarray, index0: int, domain: int = 0) -> np.ndarray:
    """H(x_j, index0 + j) for every row of the uint64[n, 2] blocks ``x``."""
    z = tweak_xor(x, index0, domain)
    out = aes_fixed(z)
    out ^= z
    return out


_WIDE_BLOCKS = 1 << 18  # blocks hashed per AES call in crhash_wide (4 MiB of input)


def crhash_wide(x: np.ndarray, index0: int, domain: int, nblocks: int) -> np.ndarray:
    """``nblocks`` independent 128-bit outputs per row (block c uses domain tag c << 48), as
    uint64[n, 2*nblocks]: all blocks of a slice of rows in one AES call."""
    if nblocks == 1:  # block 0's tag is 0: the plain hash, without the repeat/tile copies
        return crhash(x, index0, domain)
    n = x.shape[0]
    out = np.empty((n * nblocks + 1, 2), dtype=np.uint64)  # one spare row for mmo_into
    r = tweak_xor(x, index0, domain)
    tag = np.arange(nblocks, dtype=np.uint64) << np.uint64(48)
    step = max(1, _WIDE_BLOCKS // max(1, nblocks))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        z = np.repeat(r[r0:r1], nblocks, axis=0)  # contiguous (a length-2 inner axis is slow)
        z[:, 1] ^= np.tile(tag, r1 - r0)
        mmo_into(z, out[r0 * nblocks :])
    return out[: n * nblocks].reshape(n, 2 * nblocks)


def crhash256(a: np.ndarray, b: np.ndarray, index0: int, domain: int = 0) -> np.ndarray:
    """Hash of 256-bit rows (a_j || b_j) by MMO chaining: f(f(a ^ T(j)) ^ b), f(z) = pi(z) ^ z."""
    h = crhash(a, index0, domain)
    h ^= b
    out = aes_fixed(h)
    out ^= h
    return out


def tweaks(index0: int, n: int, domain: int) -> np.ndarray:
    """The tweaks T(index0 .. index0+n-1) as uint64[n, 2]."""
    t = np.empty((n, 2), np.uint64)
    t[:, 0] = np.arange(index0, index0 + n, dtype=np.uint64)
    t[:, 1] = np.uint64(domain)
    return t


def mmo_into(z: np.ndarray, out: np.ndarray) -> None:
    """out[:n] = pi(z) ^ z for contiguous uint64[n, 2] ``z``; ``out`` is a C-contiguous
    uint64 array with at least one spare row after the first n (update_into's slack)."""
    n = z.shape[0]
    if n == 0:
        return
    dst = out.reshape(-1).view(np.uint8)
    if dst.nbytes < n * 16 + 15:
        raise ValueError("mmo_into: the output needs one spare row of slack")
    _ecb().update_into(memoryview(z.reshape(-1).view(np.uint8)), memoryview(dst)[: n * 16 + 15])
    out[:n] ^= z
