"""1-out-of-N OT (N <= 256) from m = ceil(log2 N) correlated OTs (the Naor-Pinkas style reduction
used with silent OT in Cheetah, USENIX Security 2022, §2-§5), k-bit messages.

The receiver with choice c takes COT i with choice bit c_i (m chosen bits on the wire). For
COT (j, i) and bit v the sender derives R_{j,i,v} = H(q_{j,i} ^ v*Delta) (tweakable
correlation-robust hash, as many 128-bit blocks as needed), read as 2^(m-1) fields of k' bits
(k' = k rounded up to a power of two). Entry x of OT j is masked by

    key_j(x) = XOR_i field_{x without bit i}(R_{j,i,x_i}),

and the receiver knows R_{j,i,c_i} only, hence key_j(c). For x != c pick i with x_i != c_i:
field x-without-i of R_{j,i,1-c_i} appears in key_j(x) and in no other key, so all keys but
key_j(c) are jointly pseudorandom to the receiver. Sender: 2m hashes per OT; traffic m bits up
and N*k bits down per OT (1-of-16, k = 2: 36 bits, against 288 with KK13 on IKNP).

Packed keys. Where every message width k is a power of two and a row's N*k bits fill 8, 16,
32 or 64 bits (the millionaire's 1-of-16 leaves with k = 1, 2, 4), field x of a hash is read
instead: key_j(x) = XOR_i field_x(R_{j,i,x_i}), fields of k bits (R's first N*k bits). Then all
N keys of an OT are one word, the row's messages as they lie on the wire (entry x at bits
[x*k, x*k + k)): key_j = XOR_i (R_{j,i,0} AND M_{i,0}) OR (R_{j,i,1} AND M_{i,1}), M_{i,b} the
fields of the entries x with x_i = b, a few word operations per OT instead of N-wide gathers.
Security as above: for x != c and i with x_i != c_i, field x of R_{j,i,1-c_i} appears in
key_j(x) and in no other key (each key reads its own field), so the keys other than key_j(c)
are jointly pseudorandom; the receiver computes key_j(c) from its R_{j,i,c_i} alone. Each part
of a batch (``parts.py``) takes the fields of its own width from the same hashes.

Shares flavour (``op``, ``Parts(implicit=True)``): the sender's output is its share r_j, chosen
so that entry 0 encrypts to zero (r_j = v_j0 ^ key_j(0), or v_j0 - key_j(0) mod 2^k), and
only entries 1..N-1 are sent; the receiver gets v_jc ^ r_j (v_jc - r_j), with choice 0 its key
alone. To a receiver with c != 0, key_j(0) is one of the pseudorandom keys above, so r_j is
uniform to it; with c = 0 it learns key_j(0) = its output, as it should.
"""

from __future__ import annotations

import numpy as np

from ..ring import mask
from .crhash import crhash_wide, mmo_into, tweak_xor
from .parts import Parts, check_op, pack_rows, seal

_SUB = 1 << 15  # OTs per hashing batch


def layout(nmsg: int, k: int) -> tuple[int, int, int, int]:
    """(m, fields per hash, field bits k', 128-bit blocks per hash) for N = nmsg, k bits."""
    m = max(1, (int(nmsg) - 1).bit_length())
    f = 1 << (m - 1)
    kk = 1 << max(0, (int(k) - 1).bit_length())
    return m, f, kk, max(1, (f * kk + 127) // 128)


def _fields(h: np.ndarray, f: int, kk: int) -> np.ndarray:
    """The first f fields of kk bits of every row of h (uint64[r, 2*blocks]), uint64[r, f]."""
    r = h.shape[0]
    if kk >= 8:
        return h.view(np.dtype(f"<u{kk // 8}"))[:, :f].astype(np.uint64)
    b = h.view(np.uint8)[:, : (f * kk + 7) // 8]
    per = 8 // kk
    sh = (np.arange(per, dtype=np.uint8) * np.uint8(kk))[None, None, :]
    v = (b[:, :, None] >> sh) & np.uint8((1 << kk) - 1)
    return v.reshape(r, -1)[:, :f].astype(np.uint64)


def _narrow(bits: int) -> np.dtype:
    """The narrowest unsigned dtype of at least ``bits`` bits."""
    return np.dtype(
        next(
            t
            for t in (np.uint8, np.uint16, np.uint32, np.uint64)
            if 8 * np.dtype(t).itemsize >= bits
        )
    )


def _drop_bit(x: np.ndarray, i: int) -> np.ndarray:
    """x with bit i removed (the higher bits move down by one)."""
    return ((x >> (i + 1)) << i) | (x & ((1 << i) - 1))


def _perm(nmsg: int, m: int, f: int) -> list[np.ndarray]:
    """Per COT i: the column of entry x in the concatenation [fields(R_0) | fields(R_1)]."""
    x = np.arange(nmsg, dtype=np.int64)
    return [((x >> i) & 1) * f + _drop_bit(x, i) for i in range(m)]


_WORD = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def packable(parts: Parts) -> bool:
    """Whether the batch takes packed keys: every width a power of two, N*k one word."""
    return all(k & (k - 1) == 0 and parts.nmsg * k in _WORD for k in parts.ks)


def _entry_masks(nmsg: int, k: int) -> np.ndarray:
    """uint64[m]: row i has the k-bit fields of the entries x whose bit i is set."""
    m = layout(nmsg, k)[0]
    x = np.arange(nmsg, dtype=np.uint64)
    field = np.uint64((1 << k) - 1) << (x * np.uint64(k))
    return np.array(
        [np.bitwise_or.reduce(field[((x >> np.uint64(i)) & np.uint64(1)) == 1]) for i in range(m)],
        np.uint64,
    )


def _packed_keys(h0: np.ndarray, h1: np.ndarray, masks: np.ndarray, bits: int) -> np.ndarray:
    """All N keys of every OT as one word: h0, h1 uint64[r, m] (the hashes' low words for
    bit 0 and 1 of every COT), key = XOR_i h0_i ^ ((h0_i ^ h1_i) AND M_i)."""
    key = h0[:, 0] ^ ((h0[:, 0] ^ h1[:, 0]) & masks[0])
    for i in range(1, h0.shape[1]):
        key ^= h0[:, i]
        key ^= (h0[:, i] ^ h1[:, i]) & masks[i]
    return key.astype(_WORD[bits])  # the low N*k bits


def _row_chunks(ext, chan, n: int, cols, step: int):  # noqa: ANN001, ANN202
    """The n COT rows of one extension batch as (lo, hi, rows, tweak index of row lo) per
    chunk of ``step`` rows: the silent source's pool views, or the IKNP chunks collected and
    cut (``cols`` None: the sender)."""
    if hasattr(ext, "extend_chunks"):
        if cols is None:
            yield from ext.extend_chunks(chan, n, step)
        else:
            yield from ext.extend_chunks(chan, n, cols, step)
        return
    rows = np.empty((n, 2), np.uint64)
    start = [0]

    def each(q: np.ndarray, tw: int, lo: int, hi: int) -> None:
        if lo == 0:
            start[0] = tw
        rows[lo:hi] = q

    if cols is None:
        ext.extend(chan, n, each)
    else:
        ext.extend(chan, n, cols, each)
    for lo in range(0, n, step):
        yield lo, min(n, lo + step), rows[lo : lo + step], start[0] + lo


def nco_send(ext, chan, tables: np.ndarray, k: int | Parts, domain: int, op: str | None = None):  # noqa: ANN001, ANN201, E501
    """Sender: ``tables`` uint64[n, N] of k-bit messages (or rows in ``Parts`` of several
    widths), or uint8[n, N] when every k is at most 8; ``ext`` a 128-bit COT sender. With
    ``op`` (the shares flavour, ``Parts(implicit=True)``) the tables are values and the
    sender's shares r (tables' dtype, [n]) are returned (module docstring)."""
    n, nmsg = tables.shape
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    check_op(parts, op)
    if packable(parts):
        return _send_packed(ext, chan, tables, parts, domain, op)
    shares = np.empty(n, tables.dtype) if op else None
    m, f, kk, nblk = layout(nmsg, parts.k)
    s = np.asarray(ext.s, np.uint64)
    word = f * kk <= 64  # all fields of a hash in its first 64-bit word: shifts, no gathers
    dt = _narrow(min(f * kk, 64))
    perm = _perm(nmsg, m, f)
    x = np.arange(nmsg, dtype=np.int64)
    sel = [(x >> i) & 1 for i in range(m)]
    shift = [(_drop_bit(x, i) * kk).astype(dt) for i in range(m)]
    wire = parts.wire()
    for lo, hi, r, tw in _row_chunks(ext, chan, n * m, None, _SUB * m):
        j0, j1 = lo // m, hi // m
        h0 = crhash_wide(r, tw, domain, nblk)
        r1 = r.copy()
        r1[:, 0] ^= s[0]
        r1[:, 1] ^= s[1]
        h1 = crhash_wide(r1, tw, domain, nblk)
        if word:  # in the narrowest dtype that holds the fields: less memory traffic
            both = np.empty((j1 - j0, m, 2), dt)
            both[:, :, 0] = h0[:, 0].reshape(j1 - j0, m)
            both[:, :, 1] = h1[:, 0].reshape(j1 - j0, m)
            key = both[:, 0, sel[0]] >> shift[0]
            for i in range(1, m):
                key ^= both[:, i, sel[i]] >> shift[i]
        else:
            f0 = _fields(h0, f, kk).reshape(j1 - j0, m, f)
            f1 = _fields(h1, f, kk).reshape(j1 - j0, m, f)
            both = np.concatenate([f0, f1], axis=2)
            key = both[:, 0, perm[0]]
            for i in range(1, m):
                key ^= both[:, i, perm[i]]
        # in the tables' dtype: a uint8 table has k <= 8, so the key's low byte is its field
        if op:
            out = seal(parts, j0, tables[j0:j1], key, op, shares)
        else:
            out = np.bitwise_xor(tables[j0:j1], key, dtype=tables.dtype, casting="unsafe")
        parts.put(wire, j0, out)  # _SUB * N * k bits: every chunk starts on a byte
    chan.send(wire)
    return shares


def nco_recv(ext, chan, choices: np.ndarray, nmsg: int, k: int | Parts, domain: int) -> np.ndarray:  # noqa: ANN001, E501
    """Receiver: choices uint8[n] in [0, N); returns the chosen k-bit messages uint64[n]."""
    n = choices.shape[0]
    parts = k if isinstance(k, Parts) else Parts([n], [k], nmsg)
    m, f, kk, nblk = layout(nmsg, parts.k)  # packable parts: one block (N*k <= 64)
    c = choices.astype(np.int64)
    bits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8).reshape(-1)
    npad = max(64, (n * m + 63) // 64 * 64)
    packed = np.packbits(
        np.concatenate([bits, np.zeros(npad - n * m, np.uint8)]), bitorder="little"
    )
    cols = lambda lo, hi: packed[lo // 8 : hi // 8]  # noqa: E731
    key = np.zeros(n, np.uint64)
    ar = np.arange(n)
    word = f * kk <= 64
    packed_keys = packable(parts)
    for lo, hi, r, tw in _row_chunks(ext, chan, n * m, cols, _SUB * m):
        j0, j1 = lo // m, hi // m
        h = crhash_wide(r, tw, domain, nblk)
        cj = c[j0:j1]
        if packed_keys:  # field c of every R_{j,i,c_i}, at each part's width
            w = h[:, 0].reshape(j1 - j0, m)
            for _, a, b, kp, _ in parts.overlap(j0, j1):
                sh = (cj[a - j0 : b - j0] * kp).astype(np.uint64)
                for i in range(m):
                    key[a:b] ^= w[a - j0 : b - j0, i] >> sh
        elif word:
            w = h[:, 0].reshape(j1 - j0, m)
            for i in range(m):
                key[j0:j1] ^= w[:, i] >> (_drop_bit(cj, i) * kk).astype(np.uint64)
        else:
            fr = _fields(h, f, kk).reshape(j1 - j0, m, f)
            for i in range(m):
                key[j0:j1] ^= fr[ar[: j1 - j0], i, _drop_bit(cj, i)]
    return parts.take(chan.recv_array(np.uint8, parts.nbytes), c, key)


def _send_packed(ext, chan, tables: np.ndarray, parts: Parts, domain: int, op: str | None):  # noqa: ANN001, ANN201, E501
    """nco_send with packed keys (module docstring): each part's rows packed at its width."""
    words = [
        pack_rows(tables[parts.starts[i] : parts.starts[i + 1]], kp).view(row_word(parts, i))
        for i, kp in enumerate(parts.ks)
    ]
    shares = nco_send_words(ext, chan, words, parts, domain, op)
    return None if shares is None else shares.astype(tables.dtype)


def row_word(parts: Parts, i: int) -> np.dtype:
    """The dtype of part i's rows packed as words (entry x at bits [x*k, x*k + k))."""
    return np.dtype(_WORD[parts.nmsg * parts.ks[i]])


def _field_consts(nmsg: int, k: int, dtype: np.dtype) -> tuple:
    """(field mask, r -> r in every field multiplier, top bit of every field) for N k-bit
    fields in one word of ``dtype``."""
    rep = sum(1 << (x * k) for x in range(nmsg))
    top = rep << (k - 1)
    return dtype.type(mask(k)), dtype.type(rep), dtype.type(top)


def _seal_words(v: np.ndarray, key: np.ndarray, k: int, nmsg: int, op: str):  # noqa: ANN202
    """:func:`parts.seal` on packed rows: (rows ^ key with the share r taken off every field,
    r), r = field 0 of v ^ key ("xor") or of v - key ("add"); "add" subtracts r from every
    field without borrows between fields (SWAR: ((v | H) - (R & ~H)) ^ ((v ^ ~R) & H), H the
    fields' top bits)."""
    fm, rep, top = _field_consts(nmsg, k, v.dtype)
    if op == "xor":
        r = (v ^ key) & fm
        return v ^ key ^ (r * rep), r
    r = (v - key) & fm
    big = r * rep
    t = ((v | top) - (big & ~top)) ^ ((v ^ ~big) & top)
    return t ^ key, r


def nco_send_words(
    ext, chan, words: list[np.ndarray], parts: Parts, domain: int, op: str | None = None
):  # noqa: ANN001, ANN201, E501
    """Sender, packed keys: ``words[i]`` holds part i's rows as words of :func:`row_word`'s
    dtype, entry x of a row at bits [x*k, x*k + k) (``bitpack.pack`` of the row), so a caller
    that builds its rows this way skips the N-wide tables. The receiver runs ``nco_recv``.
    With ``op`` (shares flavour) returns the sender's shares, uint8[n] when every k is at most
    8, else uint64[n]."""
    check_op(parts, op)
    shares = np.empty(parts.n, np.uint8 if parts.k <= 8 else np.uint64) if op else None
    if not packable(parts):
        raise ValueError(f"nco_send_words: parts {parts.ks} of N={parts.nmsg} are not packable")
    for i, w in enumerate(words):
        want = (parts.sizes[i],)
        if w.dtype != row_word(parts, i) or w.shape != want:
            raise ValueError(f"nco_send_words: part {i} needs {row_word(parts, i)}{list(want)}")
    m = layout(parts.nmsg, parts.k)[0]
    s = np.asarray(ext.s, np.uint64)
    masks = {kp: _entry_masks(parts.nmsg, kp) for kp in set(parts.ks)}
    wire = parts.wire()
    for lo, hi, r, tw in _row_chunks(ext, chan, parts.n * m, None, _SUB * m):
        j0, j1 = lo // m, hi // m
        z = tweak_xor(r, tw, domain)  # H(q ^ b*Delta) = pi(z ^ b*Delta) ^ z ^ b*Delta
        h0 = np.empty((z.shape[0] + 1, 2), np.uint64)
        mmo_into(z, h0)
        z[:, 0] ^= s[0]
        z[:, 1] ^= s[1]
        h1 = np.empty_like(h0)
        mmo_into(z, h1)
        w0 = h0[:-1, 0].reshape(j1 - j0, m)
        w1 = h1[:-1, 0].reshape(j1 - j0, m)
        for i, a, b, kp, _ in parts.overlap(j0, j1):
            bits = parts.nmsg * kp
            msg = _packed_keys(w0[a - j0 : b - j0], w1[a - j0 : b - j0], masks[kp], bits)
            v = words[i][a - parts.starts[i] : b - parts.starts[i]]
            if op:
                msg, shares[a:b] = _seal_words(v, msg, kp, parts.nmsg, op)
            else:
                msg ^= v
            parts.put_words(wire, i, a, msg)
    chan.send(wire)
    return shares
