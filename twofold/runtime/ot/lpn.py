"""The public local linear code of Ferret's LPN (Ferret §5; Boyle et al., CCS 2019): every one of
the n outputs is the XOR of d = 10 of the k secret inputs, at indices drawn from public
randomness (AES-128-CTR under a key both parties derive from the code's name and size).

The index stream: outputs go in blocks of ``BLOCK``; a block of m outputs takes the next D*m
32-bit words r of the keystream as a D x m array, and index c of its output j is
floor(r[c, j] * k / 2^32) (multiply-shift, no modulo; bias below k / 2^32, public anyway). So
the code is fixed by (name, n, k) alone.

The indices are the same for every encoding with the code, so each process derives them once
per code and keeps them as uint32 (:class:`_Indices`: 4*D*n bytes, 419 MB for Ferret's main
set, shared by both directions' instances), from its third encoding on: the first two derive
them block by block as they go, so a session that encodes with a code once or twice keeps
nothing. That takes the AES and multiply-shift passes, about a third of an encoding, out of
every later encoding.

Encoding v -> v*A for 128-bit rows runs a block at a time in reused buffers: the block's
indices from the cache, then one nonzero at a time a gather of the block's m 16-byte rows
(``ndarray.take`` on a void-16 view, 128 KiB) XORed into an accumulator, and the accumulator
XORed into the output (Ferret's cost is these 10 random gathers per output from a k x 16-byte
table). Gathering all D x m rows of a block at once wrote and re-read 1.3 MB per block, which
pushed the table out of the shared cache when the other party encoded at the same time
(docs/PERFORMANCE.md, "One nonzero at a time"). The receiver's choice bits need no encoding of
their own: they ride in the rows' lowest bit (ferret.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from ..prg import PRG

D = 10
BLOCK = 1 << 13  # outputs per block of the index stream (part of the code) and of an encoding
_ROW = np.dtype((np.void, 16))
LSB = np.uint64(1)  # a row's lowest bit (Ferret's lowest-bit convention, ferret.py)
HIGH = ~LSB  # every bit but the lowest
_KEEP = 4  # codes whose indices a process keeps (Ferret uses two: the bootstrap and main sets)
STREAM_FIRST = 2  # encodings per code that derive their indices as they go before they are kept
LOCK_WAIT = 600.0  # seconds a thread waits for another's derivation (local work, ~1 s)


class _Indices:
    """A process-wide cache of codes' index streams: uint32[D * n] per code, in the stream's
    order (block after block, each block's D x m array row by row). Built once per code under a
    lock (a second thread waits for the first, at most ``LOCK_WAIT``: bounded local work, no
    peer), then read-only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._uses: dict[bytes, int] = {}  # encodings so far of the codes not kept yet

    def get(self, code: LocalCode) -> np.ndarray | None:
        """The code's indices, or None for its first ``STREAM_FIRST`` encodings in this process
        (derived from the stream as they go): a session that encodes with a code once or twice
        does not keep its indices."""
        key = code._seed
        if not self._lock.acquire(timeout=LOCK_WAIT):
            raise RuntimeError(f"LPN code: waited {LOCK_WAIT:g} s for its indices")
        try:
            words = self._codes.get(key)
            if words is None:
                self._uses[key] = self._uses.get(key, 0) + 1
                if self._uses[key] <= STREAM_FIRST:
                    return None
                words = code._derive_all()
                words.flags.writeable = False
                self._codes[key] = words
                while len(self._codes) > _KEEP:
                    self._codes.popitem(last=False)
            self._codes.move_to_end(key)  # least recently used goes first
            return words
        finally:
            self._lock.release()


_CACHE = _Indices()


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

    def encode(self, v: np.ndarray, out: np.ndarray, clear_lsb: bool = False) -> None:
        """In place: out ^= v*A (v uint64[k, 2], out uint64[n, 2]); with ``clear_lsb``, out's
        lowest bits are cleared first (Ferret's lowest-bit convention), block by block while the
        block is in cache."""
        if v.shape != (self.k, 2) or out.shape != (self.n, 2):
            raise ValueError(
                f"LPN encode: shapes {v.shape} -> {out.shape}, code {self.k} -> {self.n}"
            )
        if not out.flags.c_contiguous:
            raise ValueError("LPN encode: the output must be C-contiguous (written in place)")
        table = np.ascontiguousarray(v).view(_ROW).reshape(self.k)  # one 16-byte item a row
        words = _CACHE.get(self)
        prg = PRG(self._seed) if words is None else None
        idx = np.empty(D * BLOCK, np.intp)
        acc = np.empty((BLOCK, 2), np.uint64)
        row = np.empty((BLOCK, 2), np.uint64)
        take = table.take  # the method: np.take adds ~1 us to each of 12,800 calls (main set)
        for j0 in range(0, self.n, BLOCK):
            m = min(BLOCK, self.n - j0)
            ii = idx[: D * m]  # row c of the block's D x m: its outputs' c-th nonzeros
            if words is None:
                self.indices(prg, m, ii.view(np.uint64).reshape(D, m))
            else:
                ii[:] = words[D * j0 : D * (j0 + m)]
            a, g = acc[:m], row[:m]
            take(ii[:m], out=a.view(_ROW).reshape(-1), mode="wrap")  # in range
            gv = g.view(_ROW).reshape(-1)
            for c in range(1, D):  # one nonzero at a time: 128 KiB of rows, not 1.3 MB
                take(ii[c * m : (c + 1) * m], out=gv, mode="wrap")
                a ^= g
            o = out[j0 : j0 + m]
            if clear_lsb:
                o[:, 0] &= HIGH
            o ^= a

    def _derive_all(self) -> np.ndarray:
        """The whole index stream, uint32[D * n]: block by block from the code's AES stream."""
        prg = PRG(self._seed)
        words = np.empty(D * self.n, np.uint32)
        buf = np.empty((D, BLOCK), np.uint64)
        for j0 in range(0, self.n, BLOCK):
            m = min(BLOCK, self.n - j0)
            words[D * j0 : D * (j0 + m)] = self.indices(prg, m, buf).reshape(-1)
        return words
