"""Pseudorandom generator: AES-128-CTR keystream (OpenSSL via `cryptography`), seeds from `secrets`.

The stream continues across calls, so successive outputs never overlap. Output is written with
``update_into`` into preallocated numpy buffers (no per-call Python bytes objects). DESIGN.md §5.
"""

from __future__ import annotations

import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .ring import mask

_CHUNK = 1 << 20  # keystream is produced in chunks of this many bytes
_ZEROS = bytes(_CHUNK + 16)
_ZMV = memoryview(_ZEROS)


def fill_keystream(enc, out: np.ndarray) -> None:  # noqa: ANN001 - a cryptography CipherContext
    """Write the next len(out) keystream bytes of the CTR context ``enc`` into uint8 ``out``.

    ``update_into`` wants 15 bytes of slack after the output; the last chunk goes through a small
    scratch buffer so that ``out`` needs none.
    """
    n = out.nbytes
    mv = memoryview(out.reshape(-1).view(np.uint8))
    off = 0
    zmv = memoryview(_ZEROS)
    while n - off > _CHUNK + 15:
        enc.update_into(zmv[:_CHUNK], mv[off : off + _CHUNK + 15])
        off += _CHUNK
    rest = n - off
    if rest:
        scratch = bytearray(rest + 15)
        enc.update_into(zmv[:rest], scratch)
        mv[off:n] = memoryview(scratch)[:rest]


class PRG:
    """AES-128-CTR PRG keyed by a 16-byte seed (``None``: a fresh seed from ``secrets``)."""

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            seed = secrets.token_bytes(16)
        if not isinstance(seed, bytes | bytearray) or len(seed) != 16:
            raise ValueError("PRG seed must be 16 bytes")
        self.seed = bytes(seed)
        self._enc = Cipher(algorithms.AES(self.seed), modes.CTR(bytes(16))).encryptor()

    def fill_raw(self, dst: memoryview, n: int) -> None:
        """Write the next n keystream bytes to the start of ``dst`` (needs n + 15 bytes; the
        15 bytes after the first n may be clobbered). No checks: for the OT hot loop."""
        self._enc.update_into(_ZMV[:n], dst)

    def fill(self, out: np.ndarray) -> np.ndarray:
        """Overwrite the C-contiguous array ``out`` with pseudorandom bytes and return it."""
        if not out.flags.c_contiguous:
            raise ValueError("PRG.fill needs a C-contiguous array")
        fill_keystream(self._enc, out)
        return out

    def bytes(self, n: int) -> np.ndarray:
        """n pseudorandom bytes as uint8[n]."""
        return self.fill(np.empty(int(n), dtype=np.uint8))

    def ring(self, shape: int | tuple[int, ...], ell: int) -> np.ndarray:
        """Uniform elements of Z_{2^ell} as uint64 of the given shape."""
        out = np.empty(shape, dtype=np.uint64)
        self.fill(out)
        out &= mask(ell)
        return out

    def bits(self, n: int) -> np.ndarray:
        """n uniform bits as uint8 0/1."""
        n = int(n)
        packed = self.bytes((n + 7) // 8)
        return np.unpackbits(packed, bitorder="little")[:n]

    def block(self, n: int) -> np.ndarray:
        """n uniform 128-bit blocks as uint64[n, 2]."""
        return self.fill(np.empty((int(n), 2), dtype=np.uint64))
