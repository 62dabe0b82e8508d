"""The public local linear code of Ferret's LPN (Ferret §5; Boyle et al., CCS 2019): every one of
the n outputs is the XOR of d = 10 of the k secret inputs, at indices drawn from public
randomness (AES-128-CTR under a key both parties derive from the code's name and size).

Encoding v -> v*A for 128-bit rows (and for the receiver's bits u -> u*A) is a numpy gather and
XOR, chunk by chunk; the indices are regenerated per chunk (index i of output j is
floor(r * k / 2^32) for a uniform 32-bit r: bias below k / 2^32, public anyway), never stored
for all n (10 M x 10 indices would be 400 MB).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..prg import PRG

D = 10
_CHUNK = 1 << 15  # outputs per chunk


class LocalCode:
    """A k -> n code with D nonzeros per output column, fixed by (name, n, k)."""

    def __init__(self, n: int, k: int, name: str = "ferret") -> None:
        if not 0 < k < 1 << 32 or n <= 0:
            raise ValueError(f"LPN code: bad size n={n}, k={k}")
        self.n, self.k = int(n), int(k)
        self._seed = hashlib.sha256(f"twofold LPN {name} {n} {k}".encode()).digest()[:16]

    def indices(self, prg: PRG, m: int, buf: np.ndarray | None = None) -> np.ndarray:
        """The next m outputs' indices as intp[D, m] (row c = the c-th nonzero of each);
        ``buf`` (uint64[D, >= m]) is reused when given."""
        r = prg.fill(np.empty((D, m), np.uint32))
        out = np.empty((D, m), np.uint64) if buf is None else buf[:, :m]
        np.multiply(r, np.uint64(self.k), out=out)
        out >>= np.uint64(32)
        return out.view(np.intp)  # < k < 2^32: the same bits as int64

    def encode(
        self,
        v: np.ndarray,
        out: np.ndarray,
        u: np.ndarray | None = None,
        out_bits: np.ndarray | None = None,
    ) -> None:
        """In place: out ^= v*A (v uint64[k, 2], out uint64[n, 2]) and, if given,
        out_bits ^= u*A (u, out_bits uint8 0/1)."""
        if v.shape != (self.k, 2) or out.shape != (self.n, 2):
            raise ValueError(
                f"LPN encode: shapes {v.shape} -> {out.shape}, code {self.k} -> {self.n}"
            )
        vc = np.ascontiguousarray(v).view(np.complex128).reshape(self.k)  # one 16-byte item a row
        prg = PRG(self._seed)
        tmp = np.empty(_CHUNK, np.complex128)
        tb = np.empty(_CHUNK, np.uint8)
        buf = np.empty((D, _CHUNK), np.uint64)
        for j0 in range(0, self.n, _CHUNK):
            m = min(_CHUNK, self.n - j0)
            idx = self.indices(prg, m, buf)
            acc = out[j0 : j0 + m].reshape(-1)
            g = tmp[:m].view(np.uint64)
            for c in range(D):
                np.take(vc, idx[c], out=tmp[:m], mode="wrap")  # in range: no checks
                acc ^= g
            if u is not None:
                bits = out_bits[j0 : j0 + m]
                for c in range(D):
                    np.take(u, idx[c], out=tb[:m], mode="wrap")
                    bits ^= tb[:m]
