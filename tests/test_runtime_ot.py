"""OT flavours in both directions, odd batch sizes, building blocks, and statistical checks."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl import bindings as nb
from scipy.stats import chisquare

from twofold.runtime import bitpack
from twofold.runtime.errors import PeerError, ProgramMismatchError
from twofold.runtime.net import run_pair
from twofold.runtime.ot import iknp, kk13, otpack
from twofold.runtime.ot.baseot import base_ot_recv, base_ot_send
from twofold.runtime.ot.crhash import FIXED_KEY, crhash
from twofold.runtime.ot.kk13 import CODEWORDS
from twofold.runtime.ot.transpose import transpose_bits
from twofold.runtime.prg import PRG
from twofold.runtime.session import Party, run_parties

RNG = np.random.default_rng(20240611)  # public test inputs only; protocol randomness is secrets


@pytest.mark.parametrize("shape", [(8, 64), (128, 64), (128, 640), (256, 1024), (16, 64 * 300)])
def test_transpose_matches_unpackbits(shape):
    rows, cols = shape
    m = RNG.integers(0, 256, (rows, cols // 8), dtype=np.uint8)
    ref = np.packbits(np.unpackbits(m, axis=1, bitorder="little").T, axis=1, bitorder="little")
    assert np.array_equal(transpose_bits(m), ref)
    if rows % 64 == 0:
        assert np.array_equal(transpose_bits(transpose_bits(m)), m)


def test_crhash_is_mmo_with_tweak():
    x = RNG.integers(0, 2**63, (5, 2), dtype=np.uint64)
    got = crhash(x, 7, domain=3)
    ecb = Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()
    for j in range(5):
        z = x[j].copy()
        z[0] ^= np.uint64(7 + j)
        z[1] ^= np.uint64(3)
        pz = np.frombuffer(ecb.update(z.tobytes()), np.uint64)
        assert np.array_equal(got[j], pz ^ z)
    assert not np.array_equal(crhash(x, 7, 3), crhash(x, 8, 3))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8, 13, 32, 63, 64])
@pytest.mark.parametrize("m", [37, 40])
def test_bitpack_roundtrip(k, m):
    v = RNG.integers(0, 2**63, m, dtype=np.uint64) & np.uint64((1 << k) - 1)
    p = bitpack.pack(v, k)
    assert p.nbytes == bitpack.packed_size(m, k) == (m * k + 7) // 8
    assert np.array_equal(bitpack.unpack(p, m, k), v)
    idx = np.array([m - 1, 0, 5, 5, 17])
    assert np.array_equal(bitpack.take(p, idx, m, k), v[idx])
    bits = np.unpackbits(p, bitorder="little")[: m * k].reshape(m, k)  # the documented layout
    assert np.array_equal((bits.astype(np.uint64) << np.arange(k, dtype=np.uint64)).sum(1), v)


@pytest.mark.parametrize("k", [3, 7, 13, 15, 30, 39, 60, 63])
@pytest.mark.parametrize("m", [bitpack.PERIODIC_MIN, 10_007])
def test_bitpack_periodic_is_the_same_layout(k, m):
    """Long arrays take the periodic packers: the same bytes as the per-value packer (the
    documented layout, checked above) and back, also across several blocks of periods."""
    v = RNG.integers(0, 2**63, m, dtype=np.uint64) & np.uint64((1 << k) - 1)
    p = bitpack.pack(v, k)
    assert np.array_equal(p, bitpack._pack_words(v, k))
    assert np.array_equal(bitpack.unpack(p, m, k), v)
    assert np.array_equal(bitpack._unpack_words(p, m, k), v)


def test_bitpack_periodic_crosses_blocks(monkeypatch):
    monkeypatch.setattr(bitpack, "_BLOCK", 3)
    v = RNG.integers(0, 1 << 39, 5_000, dtype=np.uint64)
    p = bitpack.pack(v, 39)
    assert np.array_equal(p, bitpack._pack_words(v, 39))
    assert np.array_equal(bitpack.unpack(p, v.size, 39), v)


@pytest.mark.parametrize("k", [1, 3, 8, 15])
def test_put_bits_streams_at_any_offset_in_any_order(k):
    """Streams OR-ed into a zeroed buffer at their bit offsets, in a shuffled order, give the
    packing of their concatenation (neighbours share the byte at a boundary)."""
    sizes = [0, 1, 5, 8, 13, 0, 21, 3]
    vals = [RNG.integers(0, 1 << k, s).astype(np.uint64) for s in sizes]
    wire = np.zeros(bitpack.packed_size(sum(sizes), k), np.uint8)
    offs = np.cumsum([0, *sizes]) * k
    for i in RNG.permutation(len(sizes)):
        bitpack.put_bits(wire, int(offs[i]), bitpack.pack(vals[i], k), sizes[i] * k)
    assert np.array_equal(wire, bitpack.pack(np.concatenate(vals), k))


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("m", [1, 37, 40])
def test_bitpack_narrow_input_packs_the_same(k, m):
    v = RNG.integers(0, 1 << k, m, dtype=np.uint64)
    assert np.array_equal(bitpack.pack(v.astype(np.uint8), k), bitpack.pack(v, k))


def test_hadamard_codewords_distance_128():
    bits = np.unpackbits(CODEWORDS, axis=1, bitorder="little").astype(np.int32)
    d = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    assert np.all(d[~np.eye(256, dtype=bool)] == 128)


def test_base_ot_correct_and_rejects_bad_points():
    c = PRG().bits(128)
    ks, kr = run_pair(lambda ch: base_ot_send(ch, 128), lambda ch: base_ot_recv(ch, c))
    assert all(kr[i] == ks[i][c[i]] and kr[i] != ks[i][1 - c[i]] for i in range(128))

    def evil_receiver(ch):
        ch.recv_bytes()
        pts = np.zeros((4, 32), np.uint8)  # all-zero encoding: not a valid point
        pts[:, 0] = 1  # the identity (small order): must be rejected
        ch.send(pts)

    with pytest.raises(PeerError, match="invalid curve point"):
        run_pair(lambda ch: base_ot_send(ch, 4), evil_receiver)
    ident = bytes([1] + [0] * 31)
    assert not nb.crypto_core_ed25519_is_valid_point(ident)


def _pair(server_fn, client_fn, source):
    """run_parties with the OT on ``source``."""
    return run_pair(
        server_fn, client_fn, make=lambda role, ch: Party(role, ch, "test", ot_source=source)
    )


def _choices(n, limit=2):
    return RNG.integers(0, limit, n).astype(np.uint8)


@pytest.mark.parametrize("source", otpack.SOURCES)
@pytest.mark.parametrize("sender", ["server", "client"])
@pytest.mark.parametrize("n,chunk", [(1, 1 << 16), (63, 1 << 16), (1001, 1 << 16), (1001, 192)])
def test_all_flavours(sender, n, chunk, source, monkeypatch):
    monkeypatch.setattr(iknp, "CHUNK", chunk)  # 192: a batch of 1001 spans six chunks
    monkeypatch.setattr(kk13, "_SUB", 64 if chunk < 1000 else 1 << 12)  # KK13 sub-batches
    c = _choices(n)
    corr = RNG.integers(0, 2**63, n, dtype=np.uint64)
    corr_v = RNG.integers(0, 2**63, (n, 5), dtype=np.uint64)
    m0 = RNG.integers(0, 2**63, (n, 3), dtype=np.uint64) & np.uint64(2**40 - 1)
    m1 = RNG.integers(0, 2**63, (n, 3), dtype=np.uint64) & np.uint64(2**40 - 1)
    tab16 = RNG.integers(0, 16, (n, 16), dtype=np.uint64)
    tab256 = RNG.integers(0, 2**63, (n, 256), dtype=np.uint64)
    ch16, ch256 = _choices(n, 16), _choices(n, 256)
    mk = {k: np.uint64((1 << k) - 1) for k in (1, 7, 32, 64)}

    def snd(p):
        o = p.ot
        return (
            o.rot_send(n),
            {k: o.cot_send(corr & mk[k], k) for k in (1, 7, 32, 64)},
            o.cot_send(corr_v, 20),
            o.ot_send(m0, m1, 40),
            o.kkot_send(tab16, 4),
            o.kkot_send(tab256, 64),
            o.source,
        )

    def rcv(p):
        o = p.ot
        return (
            o.rot_recv(c),
            {k: o.cot_recv(c, k) for k in (1, 7, 32, 64)},
            o.cot_recv(c, 20, d=5),
            o.ot_recv(c, 40, d=3),
            o.kkot_recv(ch16, 16, 4),
            o.kkot_recv(ch256, 256, 64),
            o.source,
        )

    if sender == "server":
        s, r = _pair(snd, rcv, source)
    else:
        r, s = _pair(rcv, snd, source)
    assert s[-1] == r[-1] == source
    s, r = s[:-1], r[:-1]
    (m0r, m1r), xs, xv, _, _, _ = s
    mr, zs, zv, got, kk16, kk256 = r
    cb = c[:, None].astype(bool)
    assert np.array_equal(mr, np.where(cb, m1r, m0r))
    assert not np.any(np.all(mr == np.where(cb, m0r, m1r), axis=1))  # other message unknown
    for k in (1, 7, 32, 64):
        assert np.array_equal(zs[k], (xs[k] + c * (corr & mk[k])) & mk[k]), k
    m20 = np.uint64(2**20 - 1)
    assert np.array_equal(zv, (xv + cb * corr_v) & m20)
    assert np.array_equal(got, np.where(cb, m1, m0))
    assert np.array_equal(kk16, tab16[np.arange(n), ch16])
    assert np.array_equal(kk256, tab256[np.arange(n), ch256])


@pytest.mark.parametrize("source", otpack.SOURCES)
def test_narrow_tables_give_the_same_messages_and_bytes(source):
    """uint8 tables (every k <= 8) go through the 1-of-N sender as they are: the receiver gets
    table[i, c_i] and the wire is as long as with uint64 tables, for one part and for parts."""
    n = 777
    tab = RNG.integers(0, 16, (n, 16), dtype=np.uint8)
    tab[:300] &= 3  # parts: 300 rows of 2-bit messages, then 4-bit ones
    ch = _choices(n, 16)

    def snd(p):
        sent = []
        for t in (tab, tab.astype(np.uint64)):
            b0 = p.chan.bytes_sent
            p.ot.kkot_send(t, 4)
            p.ot.kkot_send(t, [2, 4], [300, n - 300])
            p.ot.kkot_send([t[:300], t[300:]], [2, 4])
            sent.append(p.chan.bytes_sent - b0)
        return sent

    def rcv(p):
        out = []
        for _ in range(2):
            out.append(p.ot.kkot_recv(ch, 16, 4))
            out.append(p.ot.kkot_recv(ch, 16, [2, 4], [300, n - 300]))
            out.append(np.concatenate(p.ot.kkot_recv([ch[:300], ch[300:]], 16, [2, 4])))
        return out

    sent, got = _pair(snd, rcv, source)
    assert sent[0] == sent[1]
    want = tab[np.arange(n), ch].astype(np.uint64)
    assert all(np.array_equal(g, want) for g in got)


def test_bad_arguments_are_clear():
    def srv(p):
        with pytest.raises(ValueError, match=r"k must be in \[1, 64\]"):
            p.ot.cot_send(np.zeros(3, np.uint64), 65)
        with pytest.raises(ValueError, match="choices must lie"):
            p.ot.rot_recv(np.array([0, 2], np.uint8))
        with pytest.raises(ValueError, match="N must be"):
            p.ot.kkot_recv(np.zeros(3, np.uint8), 300, 4)
        p.ot.rot_send(10)

    def cli(p):
        p.ot.rot_recv(np.zeros(11, np.uint8))  # mismatched batch size

    with pytest.raises(PeerError, match="batch size mismatch"):
        run_parties(srv, cli)


def test_handshake_mismatch_raises_on_both_sides():
    hashes = {"server": "a" * 64, "client": "b" * 64}

    def make(role, ch):
        try:
            return Party(role, ch, hashes[role])
        except ProgramMismatchError as e:
            return e

    s, c = run_pair(lambda x: x, lambda x: x, make=make)
    assert isinstance(s, ProgramMismatchError) and isinstance(c, ProgramMismatchError)
    assert "program mismatch" in str(s) and "program mismatch" in str(c)

    def make_roles(role, ch):
        try:
            return Party("server", ch, "h", setup_ot=False)
        except ProgramMismatchError as e:
            return e

    s, c = run_pair(lambda x: x, lambda x: x, make=make_roles)
    assert "both parties claim" in str(s) and "both parties claim" in str(c)


@pytest.mark.parametrize("old", [1, 2, 3])
def test_older_protocol_version_is_refused(old):
    """A peer of an older protocol version (v1: 1-of-N keys before the packed ones; v2: every
    1-of-N entry sent, before the shares flavour; v3: Ferret rows without the lowest-bit
    convention, whose receiver would read wrong choice bits) is refused at the handshake,
    naming both versions, before any OT runs."""
    import json

    from twofold.runtime.session import PROTOCOL, PROTOCOL_VERSION

    def make(role, ch):
        if role == "client":  # an old client: its hello, its contribution, then it waits
            hello = {"protocol": PROTOCOL, "version": old, "role": "client", "program": "h"}
            ch.send(json.dumps(hello, sort_keys=True).encode())
            ch.send(b"\0" * 16)
            return json.loads(ch.recv_bytes(max_len=4096).decode())
        try:
            return Party(role, ch, "h", setup_ot=False)
        except ProgramMismatchError as e:
            return e

    s, c = run_pair(lambda x: x, lambda x: x, make=make)
    assert c["version"] == PROTOCOL_VERSION == 4
    assert isinstance(s, ProgramMismatchError)
    assert f"v{PROTOCOL_VERSION}" in str(s) and f"v{old}" in str(s)


def _uniform(counts):
    return chisquare(counts).pvalue


def test_views_are_uniform(recording):
    """The sender's view of the choice bits (u) and the receiver's view of the non-chosen
    messages are uniform even for constant inputs (chi-square over several runs, p > 1e-6).
    IKNP source (the silent one: test_silent_ot.py)."""
    n = 2048
    runs = 3
    ones = np.ones(n, np.uint8)
    ch16 = _choices(n, 16)

    def snd(p):
        p.chan.view.clear()
        for _ in range(runs):
            p.ot.rot_send(n)
        zero = np.zeros(n, np.uint64)
        p.ot.ot_send(zero, zero, 8)
        p.ot.kkot_send(np.zeros((n, 16), np.uint64), 4)
        p.ot.cot_send(zero, 8)
        return [a for a in p.chan.view if a.dtype == np.uint8 and a.ndim == 2 and a.shape[0] == 128]

    def rcv(p):
        for _ in range(runs):
            p.ot.rot_recv(ones)
        p.chan.view.clear()
        p.ot.ot_recv(ones, 8)
        e_ot = p.chan.view[-1]
        p.ot.kkot_recv(ch16, 16, 4)
        e_kk = p.chan.view[-1]
        p.ot.cot_recv(ones, 8)
        return e_ot, e_kk, p.chan.view[-1]

    us, (e_ot, e_kk, d_cot) = _pair(snd, rcv, "iknp")
    assert len(us) == runs + 2  # three ROT batches, the chosen-message OT and the COT
    byte_counts = np.bincount(np.concatenate([u.reshape(-1) for u in us]), minlength=256)
    assert _uniform(byte_counts) > 1e-6
    # Chosen-message OT, m0 = m1 = 0 and b = 1: the non-chosen ciphertexts (entry 0) are uniform.
    e = bitpack.unpack(e_ot, 2 * n, 8).reshape(n, 2)
    assert _uniform(np.bincount(e[:, 0].astype(np.int64), minlength=256)) > 1e-6
    # KK13 with all-zero tables: every non-chosen masked entry is uniform over 4 bits.
    y = bitpack.unpack(e_kk, 16 * n, 4).reshape(n, 16)
    others = y[np.arange(16)[None, :] != ch16[:, None]]
    assert _uniform(np.bincount(others.astype(np.int64), minlength=16)) > 1e-6
    # COT with corr = 0: the correction word the receiver sees is uniform.
    assert _uniform(np.bincount(d_cot, minlength=256)) > 1e-6


def test_parties_over_tls_tcp(tmp_path):
    """serve/join: handshake and OTs through a TLS connection on loopback."""
    import socket
    import threading

    from test_runtime_net import _self_signed

    from twofold.runtime.session import join, serve

    cert, key = _self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = {}

    def server():
        p = serve("127.0.0.1", port, "h", tls_cert=cert, tls_key=key, accept_timeout=20)
        out["m"] = p.ot.rot_send(100)
        p.close()

    t = threading.Thread(target=server)
    t.start()
    p = join("127.0.0.1", port, "h", tls_ca=cert, connect_timeout=20)
    c = _choices(100)
    m = p.ot.rot_recv(c)
    p.close()
    t.join(20)
    m0, m1 = out["m"]
    assert np.array_equal(m, np.where(c[:, None] == 1, m1, m0))


def test_kk13_row_hash_is_crhash256():
    from twofold.runtime.ot.crhash import crhash256, tweaks
    from twofold.runtime.ot.kk13 import _RowHasher

    rows = RNG.integers(0, 2**63, (33, 4), dtype=np.uint64)
    off = RNG.integers(0, 2**63, 4, dtype=np.uint64)
    got = _RowHasher(rows, tweaks(11, 33, 9))(off)
    z = rows ^ off
    assert np.array_equal(got, crhash256(z[:, :2], z[:, 2:], 11, 9)[:, 0])
