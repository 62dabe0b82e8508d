"""The shares flavour of 1-out-of-N OT (``OTPack.kkot_share_*``): the sender passes values V and
gets its share r, the receiver gets V[c] - r mod 2^k (or V[c] ^ r); entry 0 of every row is
implicit, so a row costs (N-1)·k bits on the wire. Both OT sources, every choice value."""

import numpy as np
import pytest
from scipy.stats import chisquare

from twofold.runtime import bitpack
from twofold.runtime.net import run_pair
from twofold.runtime.ot import nco
from twofold.runtime.ot.otpack import SOURCES
from twofold.runtime.session import Party

RNG = np.random.default_rng(20261201)  # public test inputs only; protocol randomness is secrets


def _pair(server_fn, client_fn, source):
    return run_pair(
        server_fn, client_fn, make=lambda role, ch: Party(role, ch, "test", ot_source=source)
    )


def _mask(k):
    return np.uint64((1 << k) - 1) if k < 64 else np.uint64(2**64 - 1)


def _want(v, r, k, op):
    v, r = v.astype(np.uint64), r.astype(np.uint64)
    return v ^ r if op == "xor" else (v - r) & _mask(k)


CASES = [  # (N, k, op, dtype): relu_trunc's 1-of-8 at ell bits, the leaves' 1-of-16, odd shapes
    (8, 39, "add", np.uint64),
    (8, 32, "add", np.uint64),
    (16, 2, "xor", np.uint8),
    (16, 1, "xor", np.uint8),
    (16, 4, "add", np.uint8),
    (8, 8, "add", np.uint64),  # packed keys on the silent source, "add" across fields
    (4, 16, "xor", np.uint64),
    (3, 5, "add", np.uint64),
    (2, 1, "xor", np.uint8),
    (256, 64, "add", np.uint64),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("nmsg,k,op,dtype", CASES)
def test_every_choice_gets_its_value_minus_the_share(recording, source, nmsg, k, op, dtype):
    """Every choice value, 0 included, decrypts V[c] - r (V[c] ^ r), and the message is exactly
    n·(N-1)·k bits (entry 0 is not sent); values above k bits are cut to k."""
    n = 777
    vals = RNG.integers(0, 2**63, (n, nmsg), dtype=np.uint64)
    vals = (vals & np.uint64(255) if dtype == np.uint8 else vals).astype(dtype)
    ch = (np.arange(n) % nmsg).astype(np.uint8)
    RNG.shuffle(ch)

    def srv(p):
        return p.ot.kkot_share_send(vals, k, op=op)

    def cli(p):
        got = p.ot.kkot_share_recv(ch, nmsg, k)
        return got, p.chan.view[-1].size

    r, (got, wire) = _pair(srv, cli, source)
    assert r.dtype == dtype and r.shape == (n,)
    assert np.all(r.astype(np.uint64) <= _mask(k))
    v = vals[np.arange(n), ch].astype(np.uint64) & _mask(k)
    assert np.array_equal(got, _want(v, r, k, op))
    assert wire == bitpack.packed_size(n * (nmsg - 1), k)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("op", ["xor", "add"])
def test_parts_across_chunks(monkeypatch, source, op):
    """Parts of 1-, 2- and 4-bit rows (the millionaire's leaves) whose bounds fall inside the
    hashing chunks, so that rows of 15, 30 and 60 bits are OR-ed in at odd bit offsets; on the
    silent source once from tables and once from packed words."""
    from twofold.runtime.ot import kk13

    monkeypatch.setattr(nco, "_SUB", 8)
    monkeypatch.setattr(kk13, "_SUB", 64)
    sizes, ks = [13, 0, 29, 5, 70], [1, 2, 4, 2, 4]
    n = sum(sizes)
    vals = RNG.integers(0, 16, (n, 16)).astype(np.uint8)
    ch = RNG.integers(0, 16, n).astype(np.uint8)
    width = np.repeat(ks, sizes).astype(np.uint64)
    v = vals[np.arange(n), ch].astype(np.uint64) & ((np.uint64(1) << width) - np.uint64(1))
    tries = 2 if source == "silent" else 1

    def srv(p):
        out = [p.ot.kkot_share_send(vals, ks, sizes, op=op)]
        if tries == 2:
            parts = np.split(vals, np.cumsum(sizes)[:-1])
            words = [
                bitpack.pack(t & np.uint8((1 << k) - 1), k).view(nco._WORD[16 * k])
                for t, k in zip(parts, ks, strict=True)
            ]
            out.append(p.ot.kkot_share_send_words(words, 16, ks, op=op))
        return out

    def cli(p):
        return [p.ot.kkot_share_recv(ch, 16, ks, sizes) for _ in range(tries)]

    rs, gots = _pair(srv, cli, source)
    for r, got in zip(rs, gots, strict=True):
        assert np.array_equal(got, _want(v, r, 4, op) & ((np.uint64(1) << width) - np.uint64(1)))


@pytest.mark.parametrize("source", SOURCES)
def test_share_and_unchosen_entries_are_uniform(recording, source):
    """With constant values (all zero) the sender's shares r, the receiver's outputs and the
    entries it did not choose are uniform (chi-square, p > 1e-6): r carries nothing but the
    pad of entry 0, which a receiver that chose another entry cannot compute."""
    n = 4096
    ch = RNG.integers(1, 16, n).astype(np.uint8)  # never 0: r must still look uniform

    def srv(p):
        return p.ot.kkot_share_send(np.zeros((n, 16), np.uint8), 4, op="add")

    def cli(p):
        got = p.ot.kkot_share_recv(ch, 16, 4)
        return got, p.chan.view[-1]

    r, (got, wire) = _pair(srv, cli, source)
    assert chisquare(np.bincount(r, minlength=16)).pvalue > 1e-6
    assert chisquare(np.bincount(got.astype(np.int64), minlength=16)).pvalue > 1e-6
    y = bitpack.unpack(wire, 15 * n, 4).reshape(n, 15)
    others = y[np.arange(1, 16)[None, :] != ch[:, None]]
    assert chisquare(np.bincount(others.astype(np.int64), minlength=16)).pvalue > 1e-6


@pytest.mark.parametrize(
    "k,dtype", [(1, np.uint16), (2, np.uint32), (4, np.uint64), (8, np.uint64)]
)
def test_packed_add_subtracts_every_field_without_borrows(k, dtype):
    """nco._seal_words "add": each k-bit field of the packed row becomes (v_x - r) mod 2^k, r =
    v_0 - key_0 mod 2^k, XORed with the key: against the per-field arithmetic."""
    nmsg = 8 * np.dtype(dtype).itemsize // k
    n = 4000
    v = RNG.integers(0, 1 << k, (n, nmsg)).astype(np.uint64)
    key = RNG.integers(0, 1 << k, (n, nmsg)).astype(np.uint64)
    sh = np.arange(nmsg, dtype=np.uint64) * np.uint64(k)
    word = lambda a: np.bitwise_or.reduce(a << sh, axis=1).astype(dtype)  # noqa: E731
    out, r = nco._seal_words(word(v), word(key), k, nmsg, "add")
    want_r = (v[:, 0] - key[:, 0]) & np.uint64((1 << k) - 1)
    assert np.array_equal(r.astype(np.uint64), want_r)
    fields = (out.astype(np.uint64)[:, None] >> sh) & np.uint64((1 << k) - 1)
    assert np.array_equal(fields, ((v - want_r[:, None]) & np.uint64((1 << k) - 1)) ^ key)
    assert not fields[:, 0].any()  # entry 0 encrypts to zero


def test_share_flavour_arguments_are_checked():
    def srv(p):
        with pytest.raises(ValueError, match="op must be one of"):
            p.ot.kkot_share_send(np.zeros((4, 8), np.uint64), 8, op="sub")
        with pytest.raises(ValueError, match="share op"):
            nco.nco_send(None, None, np.zeros((4, 8), np.uint64), 8, 0, op="add")

    _pair(srv, lambda p: None, "silent")


@pytest.mark.parametrize("source", SOURCES)
def test_entries_beyond_the_choices_are_not_sent(recording, monkeypatch, source):
    """Parts whose choices lie below ``ents`` (a w-bit digit in a 1-of-16 batch) send entries
    1..ents-1 only, at odd bit offsets inside hashing chunks; on the silent source also from
    packed words; and a choice at or above its part's bound is refused."""
    from twofold.runtime.ot import kk13

    monkeypatch.setattr(nco, "_SUB", 8)
    monkeypatch.setattr(kk13, "_SUB", 64)
    sizes, ks, ents = [21, 37, 70, 9], [2, 1, 4, 2], [8, 2, 4, 1]
    n = sum(sizes)
    vals = RNG.integers(0, 16, (n, 16)).astype(np.uint8)
    bound = np.repeat(ents, sizes)
    ch = (RNG.integers(0, 16, n) % bound).astype(np.uint8)
    width = np.repeat(ks, sizes).astype(np.uint64)
    low = (np.uint64(1) << width) - np.uint64(1)
    v = vals[np.arange(n), ch].astype(np.uint64) & low
    tries = 2 if source == "silent" else 1

    def srv(p):
        out = [p.ot.kkot_share_send(vals, ks, sizes, op="xor", ents=ents)]
        if tries == 2:
            parts = np.split(vals, np.cumsum(sizes)[:-1])
            words = [
                bitpack.pack(t & np.uint8((1 << k) - 1), k).view(nco._WORD[16 * k])
                for t, k in zip(parts, ks, strict=True)
            ]
            out.append(p.ot.kkot_share_send_words(words, 16, ks, op="xor", ents=ents))
        return out

    def cli(p):
        got = []
        for _ in range(tries):
            got.append((p.ot.kkot_share_recv(ch, 16, ks, sizes, ents=ents), p.chan.view[-1].size))
        bad = ch.copy()
        bad[sizes[0] + 3] = 2  # part 1 chooses below 2
        with pytest.raises(ValueError, match="part 1's choices must lie below 2"):
            p.ot.kkot_share_recv(bad, 16, ks, sizes, ents=ents)
        return got

    rs, gots = _pair(srv, cli, source)
    want_bytes = sum(
        bitpack.packed_size(s * (e - 1), k) for s, k, e in zip(sizes, ks, ents, strict=True)
    )
    for r, (got, wire) in zip(rs, gots, strict=True):
        assert np.array_equal(got, (v ^ r.astype(np.uint64)) & low)
        assert wire == want_bytes


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    "nmsg,k,op",
    [(16, 4, "add"), (16, 2, "xor"), (8, 39, "add"), (4, 39, "add")],  # leaves; relu_trunc
)
def test_entries_differing_in_two_choice_bits_xor_to_uniform(recording, source, nmsg, k, op):
    """The keys of one row are independent, not only each uniform: for entries x, x^e_i, x^e_j,
    x^e_i^e_j (entry 0's ciphertext being the implicit zero) the XOR of the four ciphertexts the
    receiver sees is uniform. Keys that drew every entry's part of COT i from one shared field
    (key(x) = XOR_i A_{i,x_i}) would make that XOR zero while each key still looked uniform."""
    n, m = 4096, nmsg.bit_length() - 1
    ch = RNG.integers(0, nmsg, n).astype(np.uint8)

    def srv(p):
        return p.ot.kkot_share_send(np.zeros((n, nmsg), np.uint64), k, op=op)

    def cli(p):
        p.ot.kkot_share_recv(ch, nmsg, k)
        return p.chan.view[-1]

    _, wire = _pair(srv, cli, source)
    ct = np.zeros((n, nmsg), np.uint64)  # entry 0: the implicit zero
    ct[:, 1:] = bitpack.unpack(wire, (nmsg - 1) * n, k).reshape(n, nmsg - 1)
    x = RNG.integers(0, nmsg, n)
    i = RNG.integers(0, m - 1, n)
    j = i + 1 + (RNG.integers(0, 1 << 20, n) % (m - 1 - i))  # j > i, both below m
    ei, ej = 1 << i, 1 << j
    rows = np.arange(n)
    four = ct[rows, x] ^ ct[rows, x ^ ei] ^ ct[rows, x ^ ej] ^ ct[rows, x ^ ei ^ ej]
    w = min(k, 4)  # the lowest and the highest w bits of the k-bit XORs, 2^w bins each
    for bits in (four & np.uint64((1 << w) - 1), four >> np.uint64(k - w)):
        assert chisquare(np.bincount(bits.astype(np.int64), minlength=1 << w)).pvalue > 1e-6


@pytest.mark.parametrize("send", ["kk13", "nco", "seal"])
def test_an_unknown_share_op_is_refused(send):
    """Every sender entry of the shares flavour refuses an op that is neither "xor" nor "add"
    (it is not read as "add"), before any traffic."""
    from twofold.runtime.ot import kk13, parts

    p = parts.Parts([4], [8], 4, True)
    v = np.zeros((4, 4), np.uint64)
    with pytest.raises(ValueError, match="share op"):
        if send == "kk13":
            kk13.kk_send(None, None, v, p, 0, op="sub")
        elif send == "nco":
            nco.nco_send(None, None, v, p, 0, op="sub")
        else:
            parts.seal(p, 0, v, v, "sub", np.zeros(4, np.uint64))
