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
k x 16-byte table; docs/PERFORMANCE.md). Blocks may be encoded in any order (``Encoder``):
Ferret encodes the GGM leaves as the last tree level writes them.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..prg import PRG

D = 10
BLOCK = 1 << 13  # outputs per block: the D x BLOCK gathered rows (1.3 MB) stay near L2
_ROW = np.dtype((np.void, 16))
_ZEROS = memoryview(bytes(4 * D * BLOCK))


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
        Encoder(self, v, out, u, out_bits).finish()


class Encoder:
    """out ^= v*A (and out_bits ^= u*A) block by block, in any order: a block's indices come
    from its own place in the AES-CTR stream (counter = the block's first 16-byte word), so the
    blocks of the outputs that are ready can be encoded while they are still in cache."""

    def __init__(
        self,
        code: LocalCode,
        v: np.ndarray,
        out: np.ndarray,
        u: np.ndarray | None = None,
        out_bits: np.ndarray | None = None,
    ) -> None:
        if v.shape != (code.k, 2) or out.shape != (code.n, 2):
            raise ValueError(
                f"LPN encode: shapes {v.shape} -> {out.shape}, code {code.k} -> {code.n}"
            )
        if not out.flags.c_contiguous:
            raise ValueError("LPN encode: the output must be C-contiguous (written in place)")
        self.code = code
        self.table = np.ascontiguousarray(v).view(_ROW).reshape(code.k)  # a 16-byte item a row
        self.flat = out.reshape(-1)
        self.u, self.out_bits = u, out_bits
        self.blocks = -(-code.n // BLOCK)
        self.done = np.zeros(self.blocks, bool)
        self._aes = None
        self._at = -1  # the block the AES stream is positioned at
        self.rnd = np.empty(4 * D * BLOCK + 16, np.uint8)  # update_into's slack after the words
        self.idx = np.empty(D * BLOCK, np.uint64)
        self.rows = np.empty((D * BLOCK, 2), np.uint64)
        self.acc = np.empty(2 * BLOCK, np.uint64)
        self.gbits = np.empty(D * BLOCK, np.uint8) if u is not None else None
        self.abits = np.empty(BLOCK, np.uint8) if u is not None else None

    def block(self, b: int) -> None:
        """Encode the outputs of block b (BLOCK outputs, fewer in the last)."""
        j0 = b * BLOCK
        m = min(BLOCK, self.code.n - j0)
        if self._at != b:  # seek: block b starts at 32-bit word b * D * BLOCK of the stream
            ctr = (b * D * BLOCK // 4).to_bytes(16, "big")
            self._aes = Cipher(algorithms.AES(self.code._seed), modes.CTR(ctr)).encryptor()
        self._aes.update_into(_ZEROS[: 4 * D * m], memoryview(self.rnd))
        self._at = b + 1
        i = self.idx[: D * m].reshape(D, m)
        np.multiply(
            self.rnd[: 4 * D * m].view(np.uint32).reshape(D, m), np.uint64(self.code.k), out=i
        )
        i >>= np.uint64(32)
        ii = i.view(np.intp)
        g = self.rows[: D * m]
        np.take(self.table, ii, out=g.view(_ROW).reshape(D, m), mode="wrap")  # in range
        a = self.acc[: 2 * m]
        np.bitwise_xor.reduce(g.reshape(D, 2 * m), axis=0, out=a)
        self.flat[2 * j0 : 2 * (j0 + m)] ^= a
        if self.u is not None:
            gb = self.gbits[: D * m].reshape(D, m)
            np.take(self.u, ii, out=gb, mode="wrap")
            ab = self.abits[:m]
            np.bitwise_xor.reduce(gb, axis=0, out=ab)
            self.out_bits[j0 : j0 + m] ^= ab
        self.done[b] = True

    def ready(self, lo: int, hi: int, floor: int = 0) -> None:
        """Outputs floor .. hi are final (lo .. hi newly): encode the pending blocks that lie
        within them and reach past lo."""
        b = lo // BLOCK
        if b * BLOCK < floor:
            b += 1
        while b < self.blocks and min(self.code.n, (b + 1) * BLOCK) <= hi:
            if not self.done[b]:
                self.block(b)
            b += 1

    def finish(self) -> None:
        """Encode every block not encoded yet."""
        for b in np.flatnonzero(~self.done):
            self.block(int(b))
