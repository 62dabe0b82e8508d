"""OTPack: all OT state of one connection, built once per session (as in EzPC SCI's OTPack).

Setup (both parties, fixed order): the OT source names are compared; 128 Chou-Orlandi base OTs
with the server as extension sender, then 128 with the client as extension sender; then on the
IKNP source, for each direction, 256 random OTs from the opposite IKNP instance seed a
width-256 extension for KK13; on the silent source, each direction bootstraps Ferret from 41,030
IKNP COTs and runs its first iteration (~1.9 MB and a few tenths of a second per session; later
iterations run when a batch needs them, their traffic also counted in the section
``ot-silent``). Every call below is batched (one numpy pass per batch) and must be
matched by the peer's counterpart call with the same n (and k, N, d): the caller of ``*_send``
is the OT sender, either party may be. Flavours (wire cost per OT: IKNP / silent):

* random OT: 128-bit messages, uint64[n, 2] (16 bytes / 1 bit);
* correlated OT over Z_2^k: the sender gives corr (uint64[n] or [n, d]) and gets x; the receiver
  gives b and gets x + b*corr mod 2^k (16 bytes / 1 bit, + d*k bits);
* chosen-message OT of k-bit values (uint64[n] or [n, d] each);
* 1-out-of-N OT (KK13), N <= 256, per-OT tables uint64[n, N] of k-bit messages (on the silent
  source also as rows already packed into words, ``kkot_send_words``); its *shares* flavour
  (``kkot_share_*``): the sender passes values V and gets its share r, the receiver gets
  V[c] - r mod 2^k (or V[c] ^ r), entry 0 implicit ((N-1)·k bits a row on the wire);
* random OT with long messages (``lrot_*``): keystreams of any length per OT (``lrot.LongOT``);
* random OT with random choices (``rrot_*``): free of traffic on the silent source.

Two sources of the correlated OTs underneath, chosen per session by ``source`` (both parties must
pass the same; the setup compares them and refuses a mismatch):

* ``"silent"`` (the default, :data:`DEFAULT_SOURCE`): Ferret LPN-based COT extension
  (``ferret.py``, bootstrapped by IKNP), ~0.44 bits per COT plus 1 bit per chosen choice bit;
  1-out-of-N OT from log2 N COTs (``nco.py``);
* ``"iknp"``: IKNP/ALSZ, 128 bits per OT; 1-out-of-N by KK13 on a width-256 extension.

The flavours hash the COT rows the same way for both sources, so their results are identical in
distribution; only the traffic and the 1-out-of-N construction differ.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import bitpack
from ..errors import ProgramMismatchError
from ..prg import PRG
from ..ring import mask
from .baseot import base_ot_recv, base_ot_send
from .crhash import crhash_wide, mmo_into, tweaks
from .ferret import FerretReceiver, FerretSender
from .iknp import ExtReceiver, ExtSender, padded
from .kk13 import WIDTH as KK_WIDTH
from .kk13 import kk_recv, kk_send
from .lrot import LongOT
from .nco import nco_recv, nco_send, nco_send_words
from .parts import Parts
from .silent import SilentReceiver, SilentSender

KAPPA = 128
_ROT, _COT, _OT, _KK, _LROT, _FERRET = 1, 2, 3, 4, 5, 6
SOURCES = ("silent", "iknp")
#: The roles whose Ferret iterations are computed on a worker thread (ferret.py, "prepared
#: ahead"); the others compute theirs inline at the same protocol points. The client: it waits
#: for the server about half of a DenseNet-121 run (the server does the HE linear layers), so
#: its thread has the time, and its encodings then no longer run at the same moment as the
#: server's, which on a shared machine contend for the caches; a worker on the busy server
#: competes with the server's own thread (docs/PERFORMANCE.md, "Silent OT in the whole run").
FERRET_WORKER_ROLES = ("client",)
DEFAULT_SOURCE = "silent"


def _check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or not 1 <= int(k) <= 64:
        raise ValueError(f"OT message bit length k must be in [1, 64], got {k!r}")
    return int(k)


def _check_choices(choices: np.ndarray, limit: int = 2) -> np.ndarray:
    c = np.asarray(choices)
    if c.ndim != 1:
        raise ValueError(f"OT choices must be a 1-D array, got shape {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= limit):
        raise ValueError(f"OT choices must lie in [0, {limit}), got values up to {c.max()}")
    return np.ascontiguousarray(c, dtype=np.uint8)


def _choice_cols(c: np.ndarray):  # noqa: ANN202
    """Per-chunk packed choice bits, broadcast to every extension column (IKNP)."""
    bits = np.zeros(padded(c.shape[0]), np.uint8)
    bits[: c.shape[0]] = c
    packed = np.packbits(bits, bitorder="little")
    return lambda lo, hi: packed[lo // 8 : hi // 8]


def _as2d(a: np.ndarray) -> tuple[np.ndarray, bool]:
    a = np.asarray(a, dtype=np.uint64)
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        raise ValueError(f"OT values must be uint64[n] or uint64[n, d], got shape {a.shape}")
    return a, False


class OTPack:
    """OT extension state for one party of one connection; see the module docstring."""

    def __init__(self, chan, role: str, source: str | None = None) -> None:  # noqa: ANN001
        """Set up the OT state of ``role`` on ``chan``; ``source`` is ``"silent"`` or ``"iknp"``
        (None: :data:`DEFAULT_SOURCE`), the same on both sides."""
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', got {role!r}")
        source = DEFAULT_SOURCE if source is None else source
        if source not in SOURCES:
            raise ValueError(f"OT source must be one of {SOURCES}, got {source!r}")
        self.chan, self.role, self.source = chan, role, source
        self.silent = source == "silent"
        self.worker: ThreadPoolExecutor | None = None
        self._dir = 0 if role == "server" else 1  # domain bit: who is the sender
        prg = PRG()
        with chan.section("ot-setup"):
            chan.send(source.encode())
            peer = chan.recv_bytes(max_len=16).decode(errors="replace")
            if peer != source:
                raise ProgramMismatchError(
                    f"OT source mismatch: this {role} uses {source!r}, the peer {peer!r} "
                    "(pass the same --ot to both sides)"
                )
            s = prg.bits(KAPPA)
            if self.silent:  # Ferret's offset Delta = s has its lowest bit set (ferret.py)
                s[0] = 1
            if role == "server":
                self._snd = ExtSender(s, base_ot_recv(chan, s))
                self._rcv = ExtReceiver(base_ot_send(chan, KAPPA))
            else:
                self._rcv = ExtReceiver(base_ot_send(chan, KAPPA))
                self._snd = ExtSender(s, base_ot_recv(chan, s))
            if self.silent:  # Ferret on top of IKNP, one instance per direction
                if role in FERRET_WORKER_ROLES:  # both directions' local work, ahead of need
                    self.worker = ThreadPoolExecutor(1, thread_name_prefix="twofold-ferret")
                self._snd = SilentSender(
                    FerretSender(chan, self._snd, self._dom(_FERRET, True), worker=self.worker)
                )
                self._rcv = SilentReceiver(
                    FerretReceiver(chan, self._rcv, self._dom(_FERRET, False), worker=self.worker)
                )
                first, second = (
                    (self._snd, self._rcv) if role == "server" else (self._rcv, self._snd)
                )
                first.ferret.prime()  # the server-to-client direction first on both sides
                second.ferret.prime()
                return
            # KK13 bases: my KK sender is a base-OT receiver -> random OTs where I receive.
            s2 = prg.bits(KK_WIDTH)
            if role == "server":
                self._kk_snd = ExtSender(s2, _seeds(self.rot_recv(s2)))
                self._kk_rcv = ExtReceiver(_seed_pairs(*self.rot_send(KK_WIDTH)))
            else:
                self._kk_rcv = ExtReceiver(_seed_pairs(*self.rot_send(KK_WIDTH)))
                self._kk_snd = ExtSender(s2, _seeds(self.rot_recv(s2)))

    def close(self) -> None:
        """Stop the Ferret worker thread (iterations in preparation are dropped)."""
        if self.worker is not None:
            self.worker.shutdown(wait=False, cancel_futures=True)

    def _dom(self, flavour: int, sending: bool) -> int:
        sender_dir = self._dir if sending else 1 - self._dir
        return flavour | (sender_dir << 8) | (int(self.silent) << 9)

    # -- random OT ----------------------------------------------------------------------------
    def rot_send(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n random OTs as sender: returns (m0, m1), each uint64[n, 2] (128-bit messages)."""
        n = int(n)
        m0, m1, each = self._rot_hash_send(n)
        self._snd.extend(self.chan, n, each)
        return m0[:n], m1[:n]

    def _rot_hash_send(self, n: int) -> tuple[np.ndarray, np.ndarray, Callable[..., None]]:
        """The sender's random-OT messages for n COT rows q: m0 = H(q), m1 = H(q ^ s) under
        the ROT tweaks, written by the returned chunk callback into (m0, m1). One spare row:
        the AES output of each chunk is written in place (mmo_into's slack)."""
        m0, m1 = np.empty((n + 1, 2), np.uint64), np.empty((n + 1, 2), np.uint64)
        dom, s = self._dom(_ROT, True), self._snd.s

        def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
            z = tweaks(tw, hi - lo, dom)  # then ^= q: one temporary, not two
            z ^= q
            mmo_into(z, m0[lo:])
            _xor_block(z, s)
            mmo_into(z, m1[lo:])

        return m0, m1, each

    def rot_recv(self, choices: np.ndarray) -> np.ndarray:
        """Random OTs as receiver with the given choice bits: returns m_b, uint64[n, 2]."""
        c = _check_choices(choices)
        n = c.shape[0]
        out, each = self._rot_hash_recv(n)
        self._rcv.extend(self.chan, n, _choice_cols(c), each)
        return out[:n]

    def _rot_hash_recv(self, n: int) -> tuple[np.ndarray, Callable[..., None]]:
        """The receiver's random-OT messages m_b = H(t) for n COT rows t (the twin of
        :meth:`_rot_hash_send`), written by the returned chunk callback into ``out``."""
        out = np.empty((n + 1, 2), np.uint64)
        dom = self._dom(_ROT, False)

        def each(t: np.ndarray, tw: int, lo: int, hi: int) -> None:
            t ^= tweaks(tw, hi - lo, dom)
            mmo_into(t, out[lo:])

        return out, each

    # -- random OT with random choices -----------------------------------------------------
    def rrot_send(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n random OTs whose receiver's choices are random too: (m0, m1) as :meth:`rot_send`.
        Silent source: no traffic beyond Ferret's (no derandomisation bits)."""
        if not self.silent:
            return self.rot_send(n)
        n = int(n)
        m0, m1, each = self._rot_hash_send(n)
        self._snd.extend_random(n, each)
        return m0[:n], m1[:n]

    def rrot_recv(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Receiver of :meth:`rrot_send`: (uniform choice bits uint8[n], m_b uint64[n, 2])."""
        n = int(n)
        if not self.silent:
            c = PRG().bits(n)
            return c, self.rot_recv(c)
        out, each = self._rot_hash_recv(n)
        c = self._rcv.extend_random(n, each)
        return c, out[:n]

    # -- random OT with long messages -----------------------------------------------------------
    def lrot_send(self, n: int) -> LongOT:
        """n random OTs as sender whose messages are streams (``LongOT.blocks(..., both=True)``)."""
        n = int(n)
        rows = np.empty((n, 2), np.uint64)
        index0 = self._snd.count

        def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
            rows[lo:hi] = q

        self._snd.extend(self.chan, n, each)
        return LongOT(rows, index0, self._dom(_LROT, True), self._snd.s)

    def lrot_recv(self, choices: np.ndarray) -> LongOT:
        """Receiver of :meth:`lrot_send`: the chosen stream of every OT (``LongOT.blocks``)."""
        c = _check_choices(choices)
        rows = np.empty((c.shape[0], 2), np.uint64)
        index0 = self._rcv.count

        def each(t: np.ndarray, tw: int, lo: int, hi: int) -> None:
            rows[lo:hi] = t

        self._rcv.extend(self.chan, c.shape[0], _choice_cols(c), each)
        return LongOT(rows, index0, self._dom(_LROT, False), None)

    # -- correlated OT over Z_2^k -------------------------------------------------------------
    @staticmethod
    def _limbs(rows: np.ndarray, tw: int, dom: int, d: int) -> np.ndarray:
        if d <= 2:
            z = tweaks(tw, rows.shape[0], dom)
            z ^= rows
            h = np.empty((rows.shape[0] + 1, 2), np.uint64)
            mmo_into(z, h)
            return h[:-1, :d]
        return crhash_wide(rows, tw, dom, (d + 1) // 2)[:, :d]

    def _sender_pads(self, n: int, d: int, k: int, flavour: int, fn) -> None:  # noqa: ANN001
        """Run the extension as sender; fn(lo, hi, pad0, pad1) gets the k-bit hash pads."""
        dom, s, m = self._dom(flavour, True), self._snd.s, mask(k)

        def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
            p0 = self._limbs(q, tw, dom, d) & m
            _xor_block(q, s)
            fn(lo, hi, p0, self._limbs(q, tw, dom, d) & m)

        self._snd.extend(self.chan, n, each)

    def _receiver_pads(self, c: np.ndarray, d: int, k: int, flavour: int) -> np.ndarray:
        """Run the extension as receiver; returns the k-bit pads H(t_j), uint64[n, d]."""
        n = c.shape[0]
        out = np.empty((n, d), np.uint64)
        dom, m = self._dom(flavour, False), mask(k)

        def each(t: np.ndarray, tw: int, lo: int, hi: int) -> None:
            np.bitwise_and(self._limbs(t, tw, dom, d), m, out=out[lo:hi])

        self._rcv.extend(self.chan, n, _choice_cols(c), each)
        return out

    def cot_send(self, corr: np.ndarray, k: int) -> np.ndarray:
        """Correlated OT as sender: returns x (shape of corr); the receiver gets x + b*corr."""
        k = _check_k(k)
        c2, flat = _as2d(corr)
        n, d = c2.shape
        m = mask(k)
        x = np.empty((n, d), np.uint64)
        wire = np.empty(bitpack.packed_size(n * d, k), np.uint8)

        def fn(lo: int, hi: int, p0: np.ndarray, p1: np.ndarray) -> None:
            x[lo:hi] = p0
            p0 += c2[lo:hi]
            p0 -= p1
            p0 &= m
            _put(wire, bitpack.pack(p0, k), lo * d * k)

        self._sender_pads(n, d, k, _COT, fn)
        self.chan.send(wire)
        return x[:, 0].copy() if flat else x

    def cot_recv(self, choices: np.ndarray, k: int, d: int | None = None) -> np.ndarray:
        """Correlated OT as receiver: returns x + b*corr mod 2^k (uint64[n], or [n, d])."""
        k = _check_k(k)
        c = _check_choices(choices)
        n, dd = c.shape[0], 1 if d is None else int(d)
        h = self._receiver_pads(c, dd, k, _COT)
        delta = bitpack.unpack(
            self.chan.recv_array(np.uint8, bitpack.packed_size(n * dd, k)), n * dd, k
        ).reshape(n, dd)
        delta *= c[:, None].astype(np.uint64)
        h += delta
        h &= mask(k)
        return h[:, 0].copy() if d is None else h

    # -- chosen-message OT of k-bit values ----------------------------------------------------
    def ot_send(self, m0: np.ndarray, m1: np.ndarray, k: int) -> None:
        """1-out-of-2 OT of k-bit messages m0, m1 (uint64[n] or [n, d], same shape)."""
        k = _check_k(k)
        a0, _ = _as2d(m0)
        a1, _ = _as2d(m1)
        if a0.shape != a1.shape:
            raise ValueError(f"ot_send: m0 {a0.shape} and m1 {a1.shape} differ in shape")
        n, d = a0.shape
        m = mask(k)
        e = np.empty((n, 2, d), np.uint64)

        def fn(lo: int, hi: int, p0: np.ndarray, p1: np.ndarray) -> None:
            e[lo:hi, 0] = (p0 ^ a0[lo:hi]) & m
            e[lo:hi, 1] = (p1 ^ a1[lo:hi]) & m

        self._sender_pads(n, d, k, _OT, fn)
        self.chan.send(bitpack.pack(e, k))

    def ot_recv(self, choices: np.ndarray, k: int, d: int | None = None) -> np.ndarray:
        """Receiver of :meth:`ot_send`: returns m_b (uint64[n], or [n, d])."""
        k = _check_k(k)
        c = _check_choices(choices)
        n, dd = c.shape[0], 1 if d is None else int(d)
        h = self._receiver_pads(c, dd, k, _OT)
        e = bitpack.unpack(
            self.chan.recv_array(np.uint8, bitpack.packed_size(2 * n * dd, k)), 2 * n * dd, k
        ).reshape(n, 2, dd)
        h ^= e[np.arange(n), c]
        return h[:, 0].copy() if d is None else h

    # -- 1-out-of-N OT (KK13) -----------------------------------------------------------------
    def kkot_send(
        self,
        tables: np.ndarray | list[np.ndarray],
        k: int | list[int],
        sizes: list[int] | None = None,
    ) -> None:
        """1-out-of-N OT as sender: tables uint64[n, N] (N <= 256) of k-bit messages. Rows in
        parts of different widths, in one batch and one flight (``ot/parts.py``): a list of
        tables and a list of widths, or one table with its part ``sizes`` (no copy). Narrow
        tables: uint8 tables are taken as they are when every k is at most 8 (the millionaire's
        leaves: 16 bytes a row where uint64 would write and read 128)."""
        self._kk_send(tables, k, sizes, None, None)

    def kkot_share_send(
        self,
        values: np.ndarray | list[np.ndarray],
        k: int | list[int],
        sizes: list[int] | None = None,
        op: str = "add",
        ents: list[int] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """1-out-of-N OT whose sender output is its share (the *shares* flavour): values V as
        :meth:`kkot_send`'s tables; returns r (V's dtype, [n], or a list per part for a list
        of tables) such that the receiver's :meth:`kkot_share_recv` gets V[i, c_i] - r_i mod
        2^k (``op="add"``) or V[i, c_i] ^ r_i (``op="xor"``). r_i is fixed by the OT so that
        entry 0 encrypts to zero, so only entries 1..N-1 are sent ((N-1)·k bits a row instead
        of N·k); to the receiver r_i is as uniform as a fresh random share (``ot/nco.py``).
        ``ents`` (one per part): the receiver's choices of part i lie below ents_i, so only
        entries 1..ents_i - 1 are sent (a narrow millionaire digit in a 1-of-16 batch). An op
        other than ``parts.SHARE_OPS`` is refused before any traffic (``parts.check_op``)."""
        return self._kk_send(values, k, sizes, op, ents)

    def _kk_send(self, tables, k, sizes, op: str | None, ents):  # noqa: ANN001, ANN202
        """kkot_send / kkot_share_send: the tables checked, cut into parts and sent."""
        many = isinstance(tables, list)
        ks = [_check_k(x) for x in (k if sizes is not None or many else [k])]
        pieces = tables if many else [tables]
        narrow = max(ks) <= 8 and all(np.asarray(t).dtype == np.uint8 for t in pieces)
        dt = np.uint8 if narrow else np.uint64
        if many:
            sizes = [np.shape(t)[0] for t in tables]
            tables = np.concatenate([np.asarray(t, dtype=dt) for t in tables])
        t = np.asarray(tables, dtype=dt)
        if t.ndim != 2 or not 2 <= t.shape[1] <= 256:
            raise ValueError(f"kkot_send: tables must be [n, N], 2 <= N <= 256; got {t.shape}")
        t = np.ascontiguousarray(t)
        sizes = sizes if sizes is not None else [t.shape[0]]
        parts = Parts(sizes, ks, t.shape[1], op is not None, ents)
        if parts.n != t.shape[0]:
            raise ValueError(f"kkot_send: parts of {sizes} rows, table of {t.shape[0]}")
        if self.silent:
            shares = nco_send(self._snd, self.chan, t, parts, self._dom(_KK, True), op)
        else:
            shares = kk_send(self._kk_snd, self.chan, t, parts, self._dom(_KK, True), op)
        return np.split(shares, parts.starts[1:-1]) if many and op else shares

    def kkot_send_words(self, words: list[np.ndarray], nmsg: int, ks: list[int]) -> None:
        """1-out-of-N OT as sender on the silent source, rows already packed: part i's rows as
        one word each (``nco.row_word``: N*k_i bits, entry x at bits [x*k_i, x*k_i + k_i)),
        every k_i a power of two and N*k_i one of 8, 16, 32, 64 bits (``nco.packable``). The
        receiver runs :meth:`kkot_recv` with parts of the same sizes and widths: the same OT as
        :meth:`kkot_send` with the unpacked tables, without building them."""
        self._kk_send_words(words, nmsg, ks, None, None)

    def kkot_share_send_words(
        self,
        words: list[np.ndarray],
        nmsg: int,
        ks: list[int],
        op: str = "xor",
        ents: list[int] | None = None,
    ) -> np.ndarray:
        """:meth:`kkot_share_send` with the rows packed as :meth:`kkot_send_words` takes them;
        returns the shares of all parts, uint8[n] when every k is at most 8, else uint64[n].
        The receiver runs :meth:`kkot_share_recv`; ``ents`` as :meth:`kkot_share_send`."""
        return self._kk_send_words(words, nmsg, ks, op, ents)

    def _kk_send_words(self, words, nmsg: int, ks: list[int], op: str | None, ents):  # noqa: ANN001, ANN202
        if not self.silent:
            raise ValueError("kkot_send_words: packed rows are for the silent source")
        sizes = [np.shape(w)[0] for w in words]
        parts = Parts(sizes, [_check_k(k) for k in ks], int(nmsg), op is not None, ents)
        return nco_send_words(self._snd, self.chan, list(words), parts, self._dom(_KK, True), op)

    def kkot_recv(
        self,
        choices: np.ndarray | list[np.ndarray],
        nmsg: int,
        k: int | list[int],
        sizes: list[int] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """1-out-of-N OT as receiver: choices uint8[n] in [0, N); returns uint64[n]. Parts as
        :meth:`kkot_send`: a list of choice arrays gives a list of results; one array with
        ``sizes`` one result."""
        return self._kk_recv(choices, nmsg, k, sizes, False, None)

    def kkot_share_recv(
        self,
        choices: np.ndarray | list[np.ndarray],
        nmsg: int,
        k: int | list[int],
        sizes: list[int] | None = None,
        ents: list[int] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Receiver of :meth:`kkot_share_send` / :meth:`kkot_share_send_words`: V[i, c_i]
        combined with the sender's share (its op), uint64[n]; arguments as :meth:`kkot_recv`,
        and the sender's ``ents`` (every choice of part i below ents_i, else ValueError)."""
        return self._kk_recv(choices, nmsg, k, sizes, True, ents)

    def _kk_recv(self, choices, nmsg, k, sizes, implicit: bool, ents):  # noqa: ANN001, ANN202
        many = isinstance(choices, list)
        if many:
            sizes = [np.shape(c)[0] for c in choices]
            choices = np.concatenate([np.asarray(c, dtype=np.uint8) for c in choices])
        ks = [_check_k(x) for x in (k if sizes is not None else [k])]
        if not 2 <= int(nmsg) <= 256:
            raise ValueError(f"kkot_recv: N must be in [2, 256], got {nmsg}")
        c = _check_choices(choices, int(nmsg))
        sizes = sizes if sizes is not None else [c.shape[0]]
        parts = Parts(sizes, ks, int(nmsg), implicit, ents)
        if parts.n != c.shape[0]:
            raise ValueError(f"kkot_recv: parts of {sizes} rows, {c.shape[0]} choices")
        parts.check_choices(c)
        if self.silent:
            got = nco_recv(self._rcv, self.chan, c, int(nmsg), parts, self._dom(_KK, False))
        else:
            got = kk_recv(self._kk_rcv, self.chan, c, int(nmsg), parts, self._dom(_KK, False))
        return np.split(got, parts.starts[1:-1]) if many else got


def _xor_block(rows: np.ndarray, s: np.ndarray) -> None:
    """rows ^= s in place for uint64[n, 2] rows and one 128-bit s: one strided pass per limb
    (numpy's broadcast over a length-2 inner axis is ~7x slower)."""
    rows[:, 0] ^= s[0]
    rows[:, 1] ^= s[1]


def _put(wire: np.ndarray, packed: np.ndarray, bit_offset: int) -> None:
    """Copy one chunk's packed values into the batch's wire buffer (chunks start at multiples
    of 64 OTs, so every chunk starts on a byte boundary)."""
    off = bit_offset // 8
    wire[off : off + packed.size] = packed


def _seeds(m: np.ndarray) -> list[bytes]:
    return [bytes(r) for r in np.ascontiguousarray(m).view(np.uint8).reshape(-1, 16)]


def _seed_pairs(m0: np.ndarray, m1: np.ndarray) -> list[tuple[bytes, bytes]]:
    return list(zip(_seeds(m0), _seeds(m1), strict=True))
