"""The public local linear code of Ferret's LPN (Ferret §5; Boyle et al., CCS 2019): every one of
the n outputs is the XOR of d = 10 of the k secret inputs, at indices drawn from public
randomness (AES-128-CTR under a key both parties derive from the code's name and size).

The index stream: outputs go in blocks of ``BLOCK``; a block of m outputs takes the next D*m
32-bit words r of the keystream as a D x m array, and index c of its output j is
floor(r[c, j] * k / 2^32) (multiply-shift, no modulo; bias below k / 2^32, public anyway). So
the code is fixed by (name, n, k) alone and is regenerated block by block, never stored for all
n (10 M x 10 indices would be 400 MB).

Encoding v -> v*A for 128-bit rows (and for the receiver's bits u -> u*A) runs a block at a
time in reused buffers sized for the L2 cache: one AES call for the block's indices, one
gather of all D x m 16-byte rows (``np.take`` on a void-16 view), one XOR-reduce over the D
axis, one XOR into the output (Ferret's cost is these 10 random gathers per output from a
k x 16-byte table; docs/PERFORMANCE.md).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..prg import PRG

D = 10
BLOCK = 1 << 13  # outputs per block: the D x BLOCK gathered rows (1.3 MB) stay near L2
_ROW = np.dtype((np.void, 16))


class LocalCode:
    """A k -> n code with D nonzeros per output column, fixed by (name, n, k)."""

    def __init__(self, n: int, k: int, name: str = "ferret") -> None:
        if not 0 < k < 1 << 32 or n <= 0:
            raise ValueError(f"LPN code: bad size n={n}, k={k}")
        self.n, self.k = int(n), int(k)
        self._seed = hashlib.sha256(f"twofold LPN {name} {n} {k}".encode()).digest()[:16]

    def indices(self, prg: PRG, m: int, buf: np.ndarray | None = None) -> np.ndarray:
        """The next m outputs' indices as intp[D, m] (row c = the c-th nonzero of each), m at
        most ``BLOCK`` for the code's own stream; ``buf`` (uint64[D, >= m]) is reused when
        given."""
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
        if not out.flags.c_contiguous:
            raise ValueError("LPN encode: the output must be C-contiguous (written in place)")
        table = np.ascontiguousarray(v).view(_ROW).reshape(self.k)  # one 16-byte item a row
        prg = PRG(self._seed)
        kk, sh = np.uint64(self.k), np.uint64(32)
        rnd = np.empty(4 * D * BLOCK + 16, np.uint8)  # update_into's slack after the words
        idx = np.empty(D * BLOCK, np.uint64)
        rows = np.empty((D * BLOCK, 2), np.uint64)
        acc = np.empty(2 * BLOCK, np.uint64)
        gbits = np.empty(D * BLOCK, np.uint8) if u is not None else None
        abits = np.empty(BLOCK, np.uint8) if u is not None else None
        flat = out.reshape(-1)
        for j0 in range(0, self.n, BLOCK):
            m = min(BLOCK, self.n - j0)
            prg.fill_raw(memoryview(rnd), 4 * D * m)
            i = idx[: D * m].reshape(D, m)
            np.multiply(rnd[: 4 * D * m].view(np.uint32).reshape(D, m), kk, out=i)
            i >>= sh
            ii = i.view(np.intp)
            g = rows[: D * m]
            np.take(table, ii, out=g.view(_ROW).reshape(D, m), mode="wrap")  # in range
            a = acc[: 2 * m]
            np.bitwise_xor.reduce(g.reshape(D, 2 * m), axis=0, out=a)
            flat[2 * j0 : 2 * (j0 + m)] ^= a
            if u is not None:
                gb = gbits[: D * m].reshape(D, m)
                np.take(u, ii, out=gb, mode="wrap")
                ab = abits[:m]
                np.bitwise_xor.reduce(gb, axis=0, out=ab)
                out_bits[j0 : j0 + m] ^= ab
