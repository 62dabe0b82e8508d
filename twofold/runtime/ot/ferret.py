"""Ferret: LPN-based correlated-OT extension with regular noise, semi-honest (Yang, Weng, Lan,
Zhang, Wang, CCS 2020, Fig. 7/8 and §4-5), bootstrapped by IKNP.

One iteration with parameters (n, k, t), N = n / t = 2^h, turns k + t*h COTs with the offset
Delta into n fresh ones: the LPN secret is the k base COTs (sender v, receiver u and
w = v ^ u*Delta); t single-point COTs over GGM trees (spcot.py) give the noise e, of one position
per block of N outputs (regular noise), as sender s and receiver r = s ^ e*Delta; the outputs are

    sender  K = v*A ^ s,    receiver  x = u*A ^ e,  M = w*A ^ r = K ^ x*Delta,

with A the public local code (lpn.py). The first k + t*h outputs of every iteration are kept as
the next iteration's base COTs; only the rest is handed out. Traffic: t*(2h + 1) blocks from
sender to receiver per iteration, one flight; the receiver sends nothing.

Lowest-bit convention (emp-ot's Ferret, which OpenCheetah builds on): Delta's lowest bit is 1 and
every sender row has its lowest bit 0, so a receiver row's lowest bit is its choice bit,
lsb(M) = lsb(K) ^ x*lsb(Delta) = x. The convention is linear, so the encoding keeps it: the
bootstrap rows and the trees' leaves are put in that form (sender: lowest bit cleared; receiver:
lowest bit set to its choice bit u, or to the noise bit e), and x = u*A ^ e comes out of the
rows' own encoding, without a second gather over the k choice bits (a third of the receiver's
encoding). Delta keeps 127 secret bits (SECURITY.md, "Silent OT").

Parameter sets (Ferret Table 2, 128-bit security against the known LPN attacks):
``MAIN`` n = 10,485,760, k = 452,000, t = 1,280 (2^13-leaf trees): 0.44 bits per usable COT;
``BOOT`` n = 470,016, k = 32,768, t = 918 (2^9 leaves), run first from 41,030 IKNP COTs, and
again while the session has used few COTs (428,986 usable per iteration at 5.2 bits each), so
small sessions do not compute a 10 M iteration they barely use. A direction switches to
``MAIN`` once it has handed out ``SWITCH`` COTs. Both parties make the same choices from the
same request sizes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from ..prg import PRG
from .ggm import tree_shape
from .iknp import ExtReceiver, ExtSender
from .lpn import HIGH, LSB, LocalCode
from .recycle import Recycler
from .spcot import spcot_recv_expand, spcot_recv_message, spcot_send


@dataclass(frozen=True)
class Params:
    """One Ferret iteration: n outputs, k LPN secrets, t trees of n / t = 2^depth leaves."""

    n: int
    k: int
    t: int

    @property
    def depth(self) -> int:
        return (self.n // self.t).bit_length() - 1

    @property
    def base(self) -> int:
        """Base COTs one iteration consumes (k for the LPN secret, t * depth for the trees)."""
        return self.k + self.t * self.depth

    def check(self) -> None:
        if self.n % self.t or (self.n // self.t) & (self.n // self.t - 1) or self.depth < 1:
            raise ValueError(f"Ferret parameters {self}: n / t must be a power of two >= 2")
        if self.n <= self.base:
            raise ValueError(f"Ferret parameters {self}: an iteration must yield more than it uses")


MAIN = Params(10_485_760, 452_000, 1_280)
BOOT = Params(470_016, 32_768, 918)
SWITCH = 1 << 22  # COTs handed out (both directions count apart) before MAIN iterations
DEPTH = 1  # main-set iterations prepared ahead, per direction (168 MB each on each side)
WAIT = 600.0  # seconds a take waits for an iteration's local work (bounded work, no peer)

#: One iteration's local work: returns its output rows (the receiver's choice bits are their
#: lowest bits).
Job = Callable[[], np.ndarray]


class _Pool:
    """A queue of COT row segments handed out in order."""

    def __init__(self) -> None:
        self.rows: deque[np.ndarray] = deque()
        self.avail = 0

    def push(self, rows: np.ndarray) -> None:
        self.rows.append(rows)
        self.avail += rows.shape[0]

    def pop(self, n: int) -> np.ndarray:
        """The next n rows as one array: a view if they lie in one segment."""
        rows = self.pop_parts(n)
        # one segment: a view (its rows are never handed out again, so the caller may write)
        return np.concatenate(rows) if len(rows) != 1 else rows[0]

    def pop_parts(self, n: int) -> list[np.ndarray]:
        """The next n rows as the list of segment views that hold them (no copy; a batch of
        several iterations' outputs would otherwise be copied whole)."""
        if n > self.avail:
            raise RuntimeError(f"COT pool: {n} requested, {self.avail} available")
        if n == 0:
            return [np.empty((0, 2), np.uint64)]
        rows = []
        left = n
        while left:
            r = self.rows[0]
            take = min(left, r.shape[0])
            rows.append(r[:take])
            if take == r.shape[0]:
                self.rows.popleft()
            else:
                self.rows[0] = r[take:]
            left -= take
        self.avail -= n
        return rows


def choice_bits(parts: list[np.ndarray]) -> np.ndarray:
    """A receiver's choice bits, uint8: its rows' lowest bits (the lowest-bit convention), read
    before the rows are handed to a caller that may write them."""
    out = np.empty(sum(p.shape[0] for p in parts), np.uint8)
    at = 0
    for p in parts:
        np.bitwise_and(p[:, 0], LSB, out=out[at : at + p.shape[0]], casting="unsafe")
        at += p.shape[0]
    return out


class _Ferret:
    """State shared by both sides: parameters, codes, the pool and the hash counter.

    Prepared ahead. An iteration has a part that talks and a part that does not. The talking
    part (taking its base COTs from the pool, the SPCOT flight, and the sender's trees, whose
    level sums are the flight) runs on the protocol's thread; the local part (the receiver's
    trees, the LPN encoding) runs on ``worker`` if there is one, else at once. Its outputs enter
    the pool only when a take needs them (:meth:`_finish`). After every take each side starts
    main-set iterations until ``depth`` are pending; the decision reads only what both sides
    share (COTs served, the pool's size, the iterations pending), so both start them at the
    same point of the protocol. With a worker (the client, ``otpack.FERRET_WORKER_ROLES``) the
    local part runs while the protocol's thread goes on or waits for the peer; without one (the
    server) it runs at the start, ahead of need, so the two parties' encodings no longer run at
    the same moment (on one machine they contend for the caches: docs/PERFORMANCE.md, "Silent
    OT in the whole run"). ``depth`` = 0: each iteration when a take needs it."""

    def __init__(
        self,
        chan,  # noqa: ANN001 - Channel
        domain: int,
        boot: Params,
        main: Params,
        switch: int,
        worker: Executor | None = None,
        depth: int = DEPTH,
    ) -> None:
        boot.check()
        main.check()
        self.chan, self.domain = chan, domain
        self.boot, self.main, self.switch = boot, main, switch
        self.codes = {p: LocalCode(p.n, p.k) for p in {boot, main}}
        self.served = 0  # COTs handed out
        self.hashed = 0  # SPCOT hash tweaks used
        self.iterations = 0
        self.produced = 0  # usable COTs the iterations added (n - base each)
        self.started = False
        self.buffers = Recycler(keep=depth + 2)  # trees' memory, reused once its rows are used
        self.worker = worker
        self.depth = depth
        self.pending: deque[Future] = deque()  # started, not yet in the pool

    pool: _Pool

    def _tree(self, p: Params) -> np.ndarray:
        """A buffer for the iteration's GGM trees (its leaves become the outputs)."""
        return self.buffers.get(tree_shape(p.t, p.depth), np.uint64)

    def _bootstrap(self) -> None:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def _begin(self, p: Params) -> Job:  # pragma: no cover
        """The talking part of an iteration; returns its local part."""
        raise NotImplementedError

    def _start(self, p: Params) -> None:
        job = self._begin(p)
        if self.worker is not None:
            self.pending.append(self.worker.submit(job))
        else:  # computed here and now: a future that is already done
            done: Future = Future()
            done.set_result(job())
            self.pending.append(done)
        self.iterations += 1
        self.produced += p.n - p.base

    def _finish(self) -> None:
        """Wait for the oldest iteration in preparation and put its outputs in the pool."""
        try:
            rows = self.pending.popleft().result(timeout=WAIT)
        except TimeoutError:
            msg = f"Ferret: an iteration's local work took over {WAIT:.0f} s"
            raise RuntimeError(msg) from None
        self.pool.push(rows)

    def ensure(self, n: int) -> None:
        """Make n COTs available (keeping the next bootstrap-set iteration's base COTs): the
        IKNP bootstrap on first use, then the iterations in preparation, then as many more as
        needed. Traffic is attributed to the channel section ``ot-silent`` (as well as to any
        enclosing section)."""
        if self.started and self.pool.avail >= n + self.boot.base:
            return
        with self.chan.section("ot-silent"):
            if not self.started:
                self._bootstrap()
                self.started = True
            while self.pool.avail < n + self.boot.base:
                if not self.pending:
                    self._start(self._plan(n, self.pool.avail))
                self._finish()

    def _prefetch(self) -> None:
        """After a take: start main-set iterations until ``depth`` are in preparation, from
        COTs the pool holds beyond the bootstrap reserve. With none in preparation and too few
        COTs for a main iteration's base, first refill by bootstrap-set iterations until there
        are: otherwise takes a little larger than what a bootstrap iteration yields (~429 k)
        keep the direction on the bootstrap set, 5.2 bits per COT instead of 0.44 (DenseNet-121
        at 64² ran 10 such iterations more when the ReLU-truncation's client OT grew to 2 COTs
        per element)."""
        if len(self.pending) >= self.depth or self.served < self.switch:
            return
        with self.chan.section("ot-silent"):
            while len(self.pending) < self.depth:
                if self.pool.avail >= self.main.base + self.boot.base:
                    self._start(self.main)
                elif not self.pending:  # climb back to the main set
                    self._start(self.boot)
                    self._finish()
                else:
                    break

    def _take(self, n: int, pop: Callable[[int], tuple]) -> tuple:
        """Hand out n COTs through ``pop`` (the pool's ``pop`` or ``pop_parts``), then prepare
        ahead: every take of either side goes through here, so both decide at the same points."""
        self.ensure(n)
        self.served += n
        out = pop(n)
        self._prefetch()
        return out

    def prime(self) -> None:
        """Bootstrap and run one iteration now (session setup), not at the first OT."""
        self.ensure(self.boot.n - 2 * self.boot.base)

    def _plan(self, n: int, avail: int) -> Params:
        big = self.served + n >= self.switch and avail >= self.main.base
        return self.main if big else self.boot


class FerretSender(_Ferret):
    """COT sender with offset Delta = the IKNP sender's s: ``take(n)`` gives rows K, the
    receiver's rows are M = K ^ x*Delta for its (pseudo)random choice bits x."""

    def __init__(
        self,
        chan,  # noqa: ANN001 - Channel
        iknp: ExtSender,
        domain: int,
        boot: Params = BOOT,
        main: Params = MAIN,
        switch: int = SWITCH,
        worker: Executor | None = None,
        depth: int = DEPTH,
    ) -> None:
        super().__init__(chan, domain, boot, main, switch, worker, depth)
        self.iknp = iknp
        self.delta = np.asarray(iknp.s, np.uint64).reshape(2)
        if not self.delta[0] & LSB:
            raise ValueError(
                "Ferret: the offset Delta (the IKNP sender's s) must have its lowest bit set, "
                "where the receiver's choice bits ride"
            )
        self.pool = _Pool()

    def take(self, n: int) -> np.ndarray:
        """The next n COT rows K, uint64[n, 2] (never handed out again: the caller owns them)."""
        return self._take(n, self.pool.pop)

    def take_parts(self, n: int) -> list[np.ndarray]:
        """As :meth:`take`, as the list of pool segments that hold the rows (views, no copy)."""
        return self._take(n, self.pool.pop_parts)

    def _bootstrap(self) -> None:
        rows = np.empty((self.boot.base, 2), np.uint64)

        def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
            rows[lo:hi] = q

        self.iknp.extend(self.chan, self.boot.base, each)
        rows[:, 0] &= HIGH  # the lowest-bit convention
        self.pool.push(rows)

    def _begin(self, p: Params) -> Job:
        base = self.pool.pop(p.base)
        t, h = p.t, p.depth
        out = spcot_send(  # the trees here: their level sums are the flight
            self.chan, base[p.k :], self.delta, t, h, self.hashed, self.domain, self._tree(p)
        )
        self.hashed += t * h
        code, v = self.codes[p], base[: p.k]

        def job() -> np.ndarray:
            code.encode(v, out, clear_lsb=True)  # K = v*A ^ s, s in the lowest-bit convention
            return out

        return job


class FerretReceiver(_Ferret):
    """COT receiver: ``take(n)`` gives (x, M) with random choice bits x and M = K ^ x*Delta."""

    def __init__(
        self,
        chan,  # noqa: ANN001 - Channel
        iknp: ExtReceiver,
        domain: int,
        boot: Params = BOOT,
        main: Params = MAIN,
        switch: int = SWITCH,
        worker: Executor | None = None,
        depth: int = DEPTH,
    ) -> None:
        super().__init__(chan, domain, boot, main, switch, worker, depth)
        self.iknp = iknp
        self.pool = _Pool()

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next n COTs: choice bits uint8[n] and rows uint64[n, 2] (the caller owns them)."""
        rows = self._take(n, self.pool.pop)
        return choice_bits([rows]), rows

    def take_parts(self, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """As :meth:`take`, the rows as the list of pool segments that hold them (views)."""
        parts = self._take(n, self.pool.pop_parts)
        return choice_bits(parts), parts

    def _bootstrap(self) -> None:
        m = self.boot.base
        bits = PRG().bits(m)
        packed = np.packbits(np.concatenate([bits, np.zeros(-m % 64, np.uint8)]), bitorder="little")
        rows = np.empty((m, 2), np.uint64)

        def each(w: np.ndarray, tw: int, lo: int, hi: int) -> None:
            rows[lo:hi] = w

        self.iknp.extend(self.chan, m, lambda lo, hi: packed[lo // 8 : hi // 8], each)
        rows[:, 0] &= HIGH  # the lowest-bit convention: the choice bit in the lowest bit
        rows[:, 0] |= bits
        self.pool.push(rows)

    def _begin(self, p: Params) -> Job:
        base = self.pool.pop(p.base)
        t, h = p.t, p.depth
        tw = base[p.k :]  # the trees' base COTs, their choice bits in their lowest bits
        flight = spcot_recv_message(
            self.chan, choice_bits([tw]), tw, t, h, self.hashed, self.domain
        )
        self.hashed += t * h
        tree = self._tree(p)
        code, w = self.codes[p], base[: p.k]  # lsb(w) = u: the choice bits ride along

        def job() -> np.ndarray:
            out, pos = spcot_recv_expand(*flight, tree)
            # M = w*A ^ r with r in the lowest-bit convention, lsb(r) = e: the leaves' lowest
            # bits cleared, so lsb(M) = u*A, then e's ones added at the noise positions, so
            # that lsb(M) = u*A ^ e = x
            code.encode(w, out, clear_lsb=True)
            out[pos, 0] ^= LSB
            return out

        return job
