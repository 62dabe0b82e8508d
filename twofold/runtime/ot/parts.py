"""The wire layout of one batch of 1-out-of-N OTs whose rows come in parts of different message
widths (``OTPack.kkot_send`` with a list of tables): one extension batch, one message, so
several leaf tables of one protocol step cost one flight, not one each.

Part i holds rows [start_i, start_i + size_i) with k_i-bit messages, packed at k_i bits
(bitpack) one part after the other, each part from a byte boundary. The OT keys are derived
for the widest part and truncated to each part's width: a truncated pseudorandom key is still
a one-time pad for its message. A single part is byte for byte the layout of a plain batch.

Implicit first entry (``implicit=True``, the *shares* flavour of ``OTPack.kkot_share_send``):
the sender makes entry 0 of every row encrypt to zero by choosing its own share from entry 0's
key (:func:`seal`), so entry 0 is not sent, and the receiver with choice 0 takes its key alone.
Entries a part's choices never reach (``ents``: part i's choices are below ents_i, e.g. a
millionaire digit of 3 bits in a 1-of-16 batch) are not sent either. A row of part i is then
entries [implicit, ents_i) at k_i bits, rows dense (a row need not start on a byte: chunks are
OR-ed in at their bit offsets, ``bitpack.put_bits``).
"""

from __future__ import annotations

import numpy as np

from .. import bitpack
from ..ring import mask

#: How the sender's share r of a row is taken off the row's values V (``seal``): the receiver
#: gets V[c] ^ r ("xor", boolean shares) or V[c] - r mod 2^k ("add", additive shares).
SHARE_OPS = ("xor", "add")


def check_share_op(op: str) -> None:
    """ValueError unless ``op`` is one of ``SHARE_OPS`` (any other is refused, not read as
    "add")."""
    if op not in SHARE_OPS:
        raise ValueError(f"1-of-N OT: share op must be one of {SHARE_OPS}, got {op!r}")


def check_op(parts: Parts, op: str | None) -> None:
    """The shares flavour (``op`` one of ``SHARE_OPS``) needs the implicit-first-entry layout,
    and only it."""
    if op is not None:
        check_share_op(op)
    if (op is not None) != parts.implicit:
        raise ValueError(f"1-of-N OT: share op {op!r} with implicit={parts.implicit}")


class Parts:
    """Rows of a 1-of-``nmsg`` OT batch in parts of ``sizes`` rows with ``ks``-bit messages;
    ``implicit``: entry 0 of every row is not sent; ``ents``: part i's choices lie below
    ents_i (default N), only those entries are sent (module docstring)."""

    def __init__(
        self,
        sizes: list[int],
        ks: list[int],
        nmsg: int,
        implicit: bool = False,
        ents: list[int] | None = None,
    ) -> None:
        if len(sizes) != len(ks) or not sizes:
            raise ValueError("OT parts: one width per part, at least one part")
        ents = [int(nmsg)] * len(ks) if ents is None else [int(e) for e in ents]
        if len(ents) != len(ks) or not all(1 <= e <= nmsg for e in ents):
            raise ValueError(f"OT parts: entries {ents} must be one per part, in 1..{nmsg}")
        self.dense = bool(implicit) or any(e != nmsg for e in ents)  # rows OR-ed in at bits
        if not self.dense and len(sizes) > 1 and any(nmsg * k % 8 for k in ks):
            raise ValueError(f"OT parts: N·k must be a multiple of 8 (N={nmsg}, k={ks})")
        self.nmsg = int(nmsg)
        self.implicit = bool(implicit)
        self.ents = ents
        self.sent = [e - int(self.implicit) for e in ents]  # entries of a row on the wire
        self.sizes = [int(s) for s in sizes]
        self.ks = [int(k) for k in ks]
        self.k = max(self.ks)
        self.starts = np.cumsum([0, *self.sizes]).tolist()
        sek = zip(self.sizes, self.sent, self.ks, strict=True)
        nb = [bitpack.packed_size(s * e, k) for s, e, k in sek]
        self.offs = np.cumsum([0, *nb]).tolist()
        self.n = self.starts[-1]
        self.nbytes = self.offs[-1]

    def wire(self) -> np.ndarray:
        """A buffer for the batch's message (zeroed where rows are OR-ed in at bit offsets)."""
        return (np.zeros if self.dense else np.empty)(self.nbytes, np.uint8)

    def bit_offset(self, i: int, a: int) -> int:
        """Where row a of part i starts on the wire, in bits."""
        return self.offs[i] * 8 + (a - self.starts[i]) * self.sent[i] * self.ks[i]

    def overlap(self, lo: int, hi: int):  # noqa: ANN201
        """(i, a, b, k, offset): part i's rows [a, b) within [lo, hi), its width and the wire
        offset of row a in bits, for every part that has some."""
        for i, k in enumerate(self.ks):
            a, b = max(lo, self.starts[i]), min(hi, self.starts[i + 1])
            if a < b:
                yield i, a, b, k, self.bit_offset(i, a)

    def put(self, wire: np.ndarray, lo: int, out: np.ndarray) -> None:
        """Pack the masked messages ``out`` (uint64[r, nmsg], or uint8 when every width is at
        most 8) of rows [lo, lo + r) into ``wire``; unless ``dense``, ``lo`` must start a byte
        in every part (a multiple of 8 rows will do)."""
        for i, a, b, k, off in self.overlap(lo, lo + out.shape[0]):
            rows = out[a - lo : b - lo, int(self.implicit) : self.ents[i]]
            packed = pack_rows(rows, k)
            if self.dense:
                bitpack.put_bits(wire, off, packed, rows.size * k)
            else:
                wire[off // 8 : off // 8 + packed.size] = packed

    def put_words(self, wire: np.ndarray, i: int, a: int, words: np.ndarray) -> None:
        """Part i's rows from row a on, masked and packed as words (entry x at bits [x*k,
        x*k + k); with ``implicit``, entry 0's field is zero and dropped, and the fields from
        ents_i on are dropped)."""
        k, off = self.ks[i], self.bit_offset(i, a)
        if not self.dense:
            wire[off // 8 : off // 8 + words.nbytes] = words.view(np.uint8)
            return
        bits = self.sent[i] * k
        if not bits:
            return
        rest = words.astype(np.uint64) >> np.uint64(k * self.implicit)
        if bits < 64:
            rest &= np.uint64((1 << bits) - 1)
        bitpack.put_bits(wire, off, bitpack.pack(rest, bits), rest.size * bits)

    def take(self, wire: np.ndarray, choices: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The receiver's chosen messages (uint64[n]): entry ``choices`` of each row, unmasked
        by its ``key`` and cut to its part's width (with ``implicit``, choice 0 is its key)."""
        got = np.empty(self.n, np.uint64)
        for i, k in enumerate(self.ks):
            a, b = self.starts[i], self.starts[i + 1]
            c = choices[a:b].astype(np.int64)
            idx = np.arange(b - a, dtype=np.int64) * self.sent[i] + c
            if self.implicit:
                idx = np.maximum(idx - 1, 0)
            seg = wire[self.offs[i] : self.offs[i + 1]]
            got[a:b] = bitpack.take(seg, idx, (b - a) * self.sent[i], k) if self.sent[i] else 0
            if self.implicit:
                got[a:b][c == 0] = 0
            got[a:b] ^= key[a:b]
            got[a:b] &= mask(k)
        return got

    def check_choices(self, choices: np.ndarray) -> None:
        """ValueError unless every part's choices lie below its ``ents``."""
        for i, e in enumerate(self.ents):
            c = choices[self.starts[i] : self.starts[i + 1]]
            if e < self.nmsg and c.size and int(c.max()) >= e:
                raise ValueError(f"1-of-N OT: part {i}'s choices must lie below {e}")


def pack_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """Rows of N messages cut to k bits and packed as they go on the wire (``bitpack.pack``:
    entry x of a row at bits [x*k, x*k + k) of the row's bits), uint8."""
    return bitpack.pack(rows & rows.dtype.type(mask(k)), k)


def seal(parts: Parts, lo: int, values: np.ndarray, key: np.ndarray, op: str, shares: np.ndarray):  # noqa: ANN201
    """The sender's rows [lo, lo + r) of an implicit-first-entry batch, ready for ``put``:
    with r_j = v_j0 ^ key_j0 ("xor") or v_j0 - key_j0 mod 2^k ("add") written to
    ``shares[lo:]``, row j is (v_j ^ r_j) ^ key_j, or ((v_j - r_j) mod 2^k) ^ key_j, so
    entry 0 encrypts to 0 and the receiver with choice c decrypts v_jc ^ r_j (v_jc - r_j).
    ``values`` uint64 or uint8 [r, N], ``key`` the same shape (k-bit keys or wider)."""
    check_share_op(op)
    out = np.empty(values.shape, values.dtype)
    for _, a, b, k, _ in parts.overlap(lo, lo + values.shape[0]):
        v, ky = values[a - lo : b - lo], key[a - lo : b - lo].astype(values.dtype, copy=False)
        m = values.dtype.type(mask(k))
        if op == "xor":
            r = (v[:, 0] ^ ky[:, 0]) & m
            t = v ^ r[:, None]
        else:
            r = (v[:, 0] - ky[:, 0]) & m
            t = (v - r[:, None]) & m
        np.bitwise_xor(t, ky, out=out[a - lo : b - lo])
        shares[a:b] = r
    return out
