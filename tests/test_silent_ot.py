"""Silent OT (Ferret): GGM trees, SPCOT, the LPN code, the extension loop and the OTPack flavours on
it -- correlation on every output, uniform choice bits, uniform views."""

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from twofold.runtime import bitpack
from twofold.runtime.errors import PeerError, ProgramMismatchError
from twofold.runtime.net import run_pair
from twofold.runtime.ot import ferret, ggm, lpn
from twofold.runtime.ot.baseot import base_ot_recv, base_ot_send
from twofold.runtime.ot.ferret import BOOT, MAIN, FerretReceiver, FerretSender, Params
from twofold.runtime.ot.iknp import ExtReceiver, ExtSender
from twofold.runtime.ot.lpn import BLOCK, D, LocalCode
from twofold.runtime.ot.nco import layout
from twofold.runtime.ot.otpack import OTPack
from twofold.runtime.ot.recycle import Recycler
from twofold.runtime.ot.spcot import spcot_recv_expand, spcot_recv_message, spcot_send
from twofold.runtime.prg import PRG
from twofold.runtime.session import Party

RNG = np.random.default_rng(20261130)  # public test inputs only; protocol randomness is secrets


def _base_cots(m: int):
    """m COTs with a random offset, made in the clear (for the building-block tests)."""
    g = PRG()
    q, delta, b = g.block(m), g.block(1)[0], g.bits(m)
    return q, delta, b, q ^ (b[:, None].astype(np.uint64) * delta)


def _offset_bits() -> np.ndarray:
    """The IKNP sender's s for a Ferret sender: random, its lowest bit set (Delta's lowest bit
    carries the receiver's choice bits, ferret.py)."""
    s = PRG().bits(128)
    s[0] = 1
    return s


def _spcot(t: int, h: int):
    q, delta, b, w = _base_cots(t * h)
    s, (r, pos) = run_pair(
        lambda ch: spcot_send(ch, q, delta, t, h, 5, 99),
        lambda ch: spcot_recv_expand(*spcot_recv_message(ch, b, w, t, h, 5, 99)),
    )
    return s, r, pos, delta


@pytest.mark.parametrize("t,h", [(1, 1), (3, 4), (7, 6)])
def test_spcot_correlation_and_positions(t, h):
    s, r, pos, delta = _spcot(t, h)
    assert s.shape == r.shape == ((1 << h) * t, 2)
    e = np.zeros(s.shape[0], bool)
    e[pos] = True
    assert np.array_equal(pos % t, np.arange(t))  # one position in every tree (regular noise)
    assert np.array_equal(r[~e], s[~e])
    assert np.array_equal(r[e], s[e] ^ delta)
    assert len({bytes(row) for row in s}) == s.shape[0]  # leaves distinct (pseudorandom)


def test_spcot_main_shape():
    """One SPCOT batch at Ferret's main shape: 1,280 trees of 2^13 leaves."""
    t, h = MAIN.t, MAIN.depth
    assert (t, h) == (1280, 13) and MAIN.base == 452_000 + 1280 * 13
    s, r, pos, delta = _spcot(t, h)
    diff = (r != s).any(axis=1)
    assert diff.sum() == t and diff[pos].all()
    assert np.array_equal(r[pos], s[pos] ^ delta)


def test_ggm_sums_match_levels():
    roots = PRG().block(3)
    leaves, sums = ggm.sender_expand(roots, 4)
    assert leaves.shape == (16 * 3, 2)
    x = np.bitwise_xor.reduce(leaves.reshape(16, 3, 2), axis=0)
    assert np.array_equal(x, sums[3, 0] ^ sums[3, 1])


def test_local_code_is_the_sparse_matrix():
    n, k = 300, 50
    code = LocalCode(n, k, "test")
    from twofold.runtime.prg import PRG as P

    idx = code.indices(P(code._seed), n)  # the public matrix: D indices per output
    assert idx.shape == (D, n) and idx.min() >= 0 and idx.max() < k
    v = PRG().block(k)
    out = np.zeros((n, 2), np.uint64)
    code.encode(v, out)
    assert np.array_equal(out, np.bitwise_xor.reduce(v[idx], axis=0))
    # Ferret's lowest-bit convention: out's lowest bits cleared first
    start = PRG().block(n)
    got = start.copy()
    code.encode(v, got, clear_lsb=True)
    want = start ^ np.bitwise_xor.reduce(v[idx], axis=0)
    want[:, 0] ^= start[:, 0] & 1
    assert np.array_equal(got, want)
    assert np.array_equal(code.indices(P(code._seed), n), idx)  # same on both sides


def test_local_code_cached_indices_are_the_stream(monkeypatch):
    """Across blocks (the last one short): the first encodings derive the indices from the AES
    stream as they go, later ones read them from the cache, and all give the sparse matrix of
    the stream (``indices`` block after block)."""
    monkeypatch.setattr(lpn, "_CACHE", lpn._Indices())
    n, k = 2 * BLOCK + 300, 1000
    code = LocalCode(n, k, "test-blocks")
    from twofold.runtime.prg import PRG as P

    stream = P(code._seed)
    idx = np.concatenate(
        [code.indices(stream, min(BLOCK, n - j0)) for j0 in range(0, n, BLOCK)], axis=1
    )
    v = PRG().block(k)
    for i in range(lpn.STREAM_FIRST + 2):  # another instance each time: one cache per process
        out = np.zeros((n, 2), np.uint64)
        LocalCode(n, k, "test-blocks").encode(v, out)
        assert np.array_equal(out, np.bitwise_xor.reduce(v[idx], axis=0))
        assert (code._seed in lpn._CACHE._codes) == (i >= lpn.STREAM_FIRST)


def test_local_code_indices_wait_has_a_deadline(monkeypatch):
    """A thread waiting for another's derivation gives up after LOCK_WAIT with a clear error."""
    cache = lpn._Indices()
    monkeypatch.setattr(lpn, "_CACHE", cache)
    monkeypatch.setattr(lpn, "LOCK_WAIT", 0.05)
    cache._lock.acquire()  # another thread deriving
    try:
        with pytest.raises(RuntimeError, match="waited 0.05 s for its indices"):
            LocalCode(100, 10, "test-wait").encode(PRG().block(10), np.zeros((100, 2), np.uint64))
    finally:
        cache._lock.release()


def test_local_code_stream_known_answer():
    """The code both parties derive is pinned: SHA-256 of the index stream of a three-block
    code (the same before and after the cache; a change to the stream is a protocol change)."""
    import hashlib

    words = LocalCode(2 * BLOCK + 300, 1000, "kat")._derive_all()
    assert words.dtype == np.uint32 and words.size == D * (2 * BLOCK + 300)
    digest = hashlib.sha256(words.tobytes()).hexdigest()
    assert digest == "996dc39dc01b3937a8bbded078087c75836145c9ad8bb0261b1f22902fdbe9ce"


def test_local_code_indices_derived_once_per_process(monkeypatch):
    """Two instances and two threads of one code derive its indices once; the cache keeps a
    bounded number of codes, read-only."""
    import threading
    import time

    calls = []
    derive = LocalCode._derive_all

    def counted(self):  # noqa: ANN001, ANN202
        calls.append(self._seed)
        time.sleep(0.2)  # the second thread arrives while the first derives
        return derive(self)

    monkeypatch.setattr(LocalCode, "_derive_all", counted)
    monkeypatch.setattr(lpn, "_CACHE", lpn._Indices())
    monkeypatch.setattr(lpn, "STREAM_FIRST", 0)  # kept from the first encoding
    v, outs = PRG().block(64), [np.zeros((3000, 2), np.uint64) for _ in range(2)]
    threads = [
        threading.Thread(target=LocalCode(3000, 64, "test-once").encode, args=(v, o)) for o in outs
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(calls) == 1 and np.array_equal(outs[0], outs[1]) and outs[0].any()
    assert not next(iter(lpn._CACHE._codes.values())).flags.writeable
    for i in range(lpn._KEEP + 1):
        LocalCode(100 + i, 64, "test-keep").encode(v, np.zeros((100 + i, 2), np.uint64))
    assert len(calls) == 1 + lpn._KEEP + 1 and len(lpn._CACHE._codes) == lpn._KEEP


SMALL = Params(4096, 1024, 64)  # test-only sizes: 6-level trees
SMALL_MAIN = Params(16384, 2048, 128)  # 7-level trees


def _ferret_pair(sizes, switch):
    def srv(ch):
        s = _offset_bits()
        ext = ExtSender(s, base_ot_recv(ch, s))
        f = FerretSender(ch, ext, 6, boot=SMALL, main=SMALL_MAIN, switch=switch)
        return [f.take(n) for n in sizes], f.delta, f.iterations

    def cli(ch):
        f = FerretReceiver(ch, ExtReceiver(base_ot_send(ch, 128)), 6, SMALL, SMALL_MAIN, switch)
        return [f.take(n) for n in sizes], f.iterations

    return run_pair(srv, cli)


def test_ferret_sender_refuses_an_offset_with_lowest_bit_clear():
    """The receiver reads its choice bits from its rows' lowest bit, which needs lsb(Delta) = 1:
    a sender given another offset refuses before any traffic."""
    s = _offset_bits()
    s[0] = 0
    ext = ExtSender(s, [bytes(16)] * 128)
    with pytest.raises(ValueError, match="lowest bit"):
        FerretSender(None, ext, 6)


def test_ferret_correlation_on_every_output():
    sizes = [1, 1000, 3000, 5000, 40000, 7]
    (ks, delta, it_s), (xm, it_c) = _ferret_pair(sizes, switch=6000)
    assert it_s == it_c >= 5
    k = np.concatenate(ks)
    x = np.concatenate([b for b, _ in xm])
    m = np.concatenate([r for _, r in xm])
    assert k.shape[0] == sum(sizes)
    assert np.array_equal(m, k ^ (x[:, None].astype(np.uint64) * delta))
    # the lowest-bit convention: lsb(Delta) = 1, lsb(K) = 0, so lsb(M) is the choice bit
    assert delta[0] & 1 == 1 and not (k[:, 0] & 1).any()
    assert np.array_equal(m[:, 0] & 1, x)
    assert len({bytes(r) for r in k}) == k.shape[0]  # no output handed out twice
    # choice bits uniform: bit frequency and the 8-bit patterns
    assert binomtest(int(x.sum()), x.size).pvalue > 1e-6
    pat = np.packbits(x[: x.size // 8 * 8])
    assert chisquare(np.bincount(pat, minlength=256)).pvalue > 1e-6


def test_ferret_reuses_tree_memory_only_when_free():
    """Iterations reuse the trees' buffers of rows nobody holds any more, and never those of rows
    a caller still holds: those keep their values while later iterations run."""
    sizes = [3000] * 24

    def side(f, take):  # noqa: ANN001
        copies, held = [], []
        for i, n in enumerate(sizes):
            got = take(f, n)
            copies.append(tuple(np.copy(a) for a in got))
            if i % 8 == 0:
                held.append((got, copies[-1]))
        unchanged = all(
            np.array_equal(a, c) for got, cs in held for a, c in zip(got, cs, strict=True)
        )
        return copies, unchanged, f.buffers.reused, f.iterations

    def srv(ch):
        s = _offset_bits()
        f = FerretSender(ch, ExtSender(s, base_ot_recv(ch, s)), 6, SMALL, SMALL_MAIN, 6000)
        return side(f, lambda f, n: (f.take(n),)), f.delta

    def cli(ch):
        f = FerretReceiver(ch, ExtReceiver(base_ot_send(ch, 128)), 6, SMALL, SMALL_MAIN, 6000)
        return side(f, lambda f, n: f.take(n))

    ((ks, s_same, s_reused, it), delta), (xm, c_same, c_reused, _) = run_pair(srv, cli)
    assert it >= 5 and s_reused > 0 and c_reused > 0
    assert s_same and c_same
    k = np.concatenate([c[0] for c in ks])
    x = np.concatenate([c[0] for c in xm])
    m = np.concatenate([c[1] for c in xm])
    assert np.array_equal(m, k ^ (x[:, None].astype(np.uint64) * delta))
    assert len({bytes(r) for r in k}) == k.shape[0]


@pytest.mark.parametrize(
    "size,worker_side,depth",
    [(1300, "neither", 1), (1500, "neither", 1), (2600, "neither", 1), (1300, "client", 1)]
    + [(1300, "both", 2), (2600, "server", 2)],
)
def test_ferret_leaves_the_bootstrap_set_after_the_switch(size, worker_side, depth):
    """Takes of a size that a bootstrap-set iteration just covers (it yields 2,688 here) used
    to keep a direction on the bootstrap set for good once its pool had dropped below a main
    iteration's base COTs (20 bootstrap iterations and no main one for 40 takes of 1,300):
    prefetching now climbs back by bootstrap iterations and starts a main one, with iterations
    prepared inline or on a worker on either side, one or two ahead. Every COT is still
    correlated and handed out once, and both sides run the same iterations."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [size] * 40

    def pool(side):  # noqa: ANN001, ANN202
        return ThreadPoolExecutor(1) if worker_side in (side, "both") else None

    def srv(ch):
        s = _offset_bits()
        ext = ExtSender(s, base_ot_recv(ch, s))
        f = FerretSender(ch, ext, 6, SMALL, SMALL_MAIN, 6000, pool("server"), depth)
        return [f.take(n) for n in sizes], f.delta, f.iterations, f.produced

    def cli(ch):
        ext = ExtReceiver(base_ot_send(ch, 128))
        f = FerretReceiver(ch, ext, 6, SMALL, SMALL_MAIN, 6000, pool("client"), depth)
        return [f.take(n) for n in sizes], f.iterations, f.produced

    (ks, delta, it, produced), (xm, it_c, produced_c) = run_pair(srv, cli)
    assert (it, produced) == (it_c, produced_c)
    boot, main = SMALL.n - SMALL.base, SMALL_MAIN.n - SMALL_MAIN.base  # usable per iteration
    n_main = (produced - boot * it) // (main - boot)
    assert it - n_main <= 5 and n_main >= 4, (it - n_main, n_main)  # 3 before the switch
    k = np.concatenate(ks)
    m = np.concatenate([r for _, r in xm])
    x = np.concatenate([b for b, _ in xm])
    assert np.array_equal(m, k ^ (x[:, None].astype(np.uint64) * delta))
    assert len({bytes(r) for r in k}) == k.shape[0]


@pytest.mark.parametrize("worker_side", ["client", "server", "both", "neither"])
def test_ferret_prepared_ahead(worker_side):
    """Iterations prepared ahead, on a worker thread on either side or inline: both sides start
    the same iterations at the same points, and every COT handed out is correlated."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [1, 1000, 3000, 5000, 40000, 7, 20000]

    def pool(side):  # noqa: ANN001, ANN202
        return ThreadPoolExecutor(1) if worker_side in (side, "both") else None

    def srv(ch):
        s = _offset_bits()
        w = pool("server")
        f = FerretSender(ch, ExtSender(s, base_ot_recv(ch, s)), 6, SMALL, SMALL_MAIN, 6000, w)
        out = [f.take(n) for n in sizes]
        return out, f.delta, f.iterations, len(f.pending)

    def cli(ch):
        w = pool("client")
        f = FerretReceiver(ch, ExtReceiver(base_ot_send(ch, 128)), 6, SMALL, SMALL_MAIN, 6000, w)
        return [f.take(n) for n in sizes], f.iterations, len(f.pending)

    (ks, delta, it_s, pend_s), (xm, it_c, pend_c) = run_pair(srv, cli)
    assert it_s == it_c and pend_s == pend_c == ferret.DEPTH  # prepared ahead, the same
    k = np.concatenate(ks)
    x = np.concatenate([b for b, _ in xm])
    m = np.concatenate([r for _, r in xm])
    assert np.array_equal(m, k ^ (x[:, None].astype(np.uint64) * delta))
    assert len({bytes(r) for r in k}) == k.shape[0]


def test_recycler_hands_out_only_unreferenced_buffers():
    r = Recycler(keep=2)
    shape = (4, 2)
    view = r.get(shape, np.uint64)[1:]  # buffer A, held through a view only
    a = id(view.base)
    b = id(r.get(shape, np.uint64))  # A is in use: a new buffer B (free again at once)
    assert b != a
    assert id(r.get(shape, np.uint64)) == b
    del view
    assert id(r.get(shape, np.uint64)) == a  # nothing references A now
    held = [r.get(shape, np.uint64), r.get(shape, np.uint64)]
    assert {id(h) for h in held} == {a, b}
    assert id(r.get(shape, np.uint64)) not in {a, b}  # both kept ones in use: a new one
    assert r.get((8,), np.uint8).shape == (8,)  # another shape has its own buffers
    assert (r.allocated, r.reused) == (4, 4)


def test_params_are_ferrets():
    assert (MAIN.n, MAIN.k, MAIN.t, MAIN.depth) == (10_485_760, 452_000, 1_280, 13)
    assert (BOOT.n, BOOT.k, BOOT.t, BOOT.depth) == (470_016, 32_768, 918, 9)
    assert BOOT.n >= MAIN.base  # one bootstrap iteration can seed the main one
    with pytest.raises(ValueError, match="power of two"):
        Params(1000, 10, 3).check()
    with pytest.raises(ValueError, match="more than it uses"):
        Params(64, 100, 4).check()


def run_silent(server_fn, client_fn):
    """Two Parties over a socketpair with the OT on the silent source."""
    return run_pair(
        server_fn, client_fn, make=lambda role, ch: Party(role, ch, "test", ot_source="silent")
    )


@pytest.mark.parametrize(
    "nmsg,k", [(2, 1), (3, 5), (8, 1), (8, 2), (16, 2), (16, 4), (4, 16), (17, 3), (256, 64)]
)
def test_one_of_n_from_cots(nmsg, k):
    n = 777
    tab = RNG.integers(0, 2**63, (n, nmsg), dtype=np.uint64) & np.uint64((1 << k) - 1)
    ch = RNG.integers(0, nmsg, n).astype(np.uint8)
    m, f, kk, nblk = layout(nmsg, k)
    assert 1 << m >= nmsg and f * kk <= nblk * 128

    def srv(p):
        p.ot.kkot_send(tab, k)
        return p.chan.bytes_sent

    def cli(p):
        return p.ot.kkot_recv(ch, nmsg, k)

    _, got = run_silent(srv, cli)
    assert np.array_equal(got, tab[np.arange(n), ch])


@pytest.mark.parametrize("ks", [[2, 4, 2, 4], [3, 5, 3, 5]])  # packed keys, and the fields path
def test_one_of_n_parts_across_chunks(monkeypatch, ks):
    """Parts whose bounds fall inside hashing chunks (8 OTs a chunk here), an empty part and
    values above k bits in the tables: every receiver gets its entry cut to its part's width."""
    from twofold.runtime.ot import nco

    monkeypatch.setattr(nco, "_SUB", 8)
    sizes = [13, 0, 29, 5]
    tab = RNG.integers(0, 256, (sum(sizes), 16)).astype(np.uint8)  # not masked to k bits
    ch = RNG.integers(0, 16, sum(sizes)).astype(np.uint8)
    _, got = run_silent(
        lambda p: p.ot.kkot_send(tab, ks, sizes), lambda p: p.ot.kkot_recv(ch, 16, ks, sizes)
    )
    width = np.repeat(ks, sizes).astype(np.uint64)
    want = tab[np.arange(sum(sizes)), ch].astype(np.uint64) & (
        (np.uint64(1) << width) - np.uint64(1)
    )
    assert np.array_equal(got, want)


def test_one_of_n_from_packed_words():
    """kkot_send_words (the rows as packed words) is the OT of kkot_send with the unpacked
    tables, parts of 2 and 4 bits whose boundary falls inside a hashing chunk; a wrong word
    type is refused before anything is sent."""
    from twofold.runtime import bitpack as bp

    sizes, ks = [40_000, 1_001], [2, 4]
    tabs = [
        RNG.integers(0, 1 << k, (n, 16)).astype(np.uint8) for n, k in zip(sizes, ks, strict=True)
    ]
    words = [
        bp.pack(t, k).view(np.uint32 if k == 2 else np.uint64)
        for t, k in zip(tabs, ks, strict=True)
    ]
    ch = RNG.integers(0, 16, sum(sizes)).astype(np.uint8)

    def srv(p):
        with pytest.raises(ValueError, match="part 0 needs uint32"):
            p.ot.kkot_send_words([words[0].astype(np.uint64), words[1]], 16, ks)
        p.ot.kkot_send_words(words, 16, ks)

    def cli(p):
        return p.ot.kkot_recv(ch, 16, ks, sizes)

    _, got = run_silent(srv, cli)
    want = np.concatenate(tabs)[np.arange(sum(sizes)), ch]
    assert np.array_equal(got, want.astype(np.uint64))


def test_source_mismatch_is_refused():
    def make(role):
        def f(ch):
            try:
                OTPack(ch, role, source="silent" if role == "server" else "iknp")
            except ProgramMismatchError as e:
                return str(e)

        return f

    s, c = run_pair(make("server"), make("client"))
    assert "OT source mismatch" in s and "OT source mismatch" in c
    with pytest.raises(ValueError, match="OT source must be one of"):
        OTPack(None, "server", source="ferret")


def test_silent_batch_size_mismatch():
    with pytest.raises(PeerError, match="batch size mismatch"):
        run_silent(lambda p: p.ot.rot_send(10), lambda p: p.ot.rot_recv(np.zeros(11, np.uint8)))


def test_silent_views_are_uniform(recording):
    """Sender's view of the chosen bits (d = x ^ c) and the receiver's view of the SPCOT sums
    and of the non-chosen messages are uniform for constant inputs (chi-square, p > 1e-6)."""
    n = 4096
    ones = np.ones(n, np.uint8)
    ch16 = RNG.integers(0, 16, n).astype(np.uint8)

    def snd(p):
        p.chan.view.clear()
        p.ot.rot_send(n)
        zero = np.zeros(n, np.uint64)
        p.ot.ot_send(zero, zero, 8)
        return [a for a in p.chan.view if a.dtype == np.uint8 and a.ndim == 1]

    def rcv(p):
        spcot = [a for a in p.chan.view if a.dtype == np.uint64 and a.ndim == 2]  # from setup
        p.chan.view.clear()
        p.ot.rot_recv(ones)
        p.ot.ot_recv(ones, 8)
        e_ot = p.chan.view[-1]
        p.ot.kkot_recv(ch16, 16, 4)
        e_kk = p.chan.view[-1]
        return spcot, e_ot, e_kk

    def snd2(p):
        out = snd(p)
        p.ot.kkot_send(np.zeros((n, 16), np.uint64), 4)
        return out

    ds, (spcot, e_ot, e_kk) = run_silent(snd2, rcv)
    assert len(ds) == 2  # the derandomisation bits of the two batches
    assert chisquare(np.bincount(np.concatenate(ds), minlength=256)).pvalue > 1e-6
    assert spcot, "the session setup runs a Ferret iteration per direction"
    sp = np.concatenate([a.reshape(-1) for a in spcot]).view(np.uint8)
    assert chisquare(np.bincount(sp, minlength=256)).pvalue > 1e-6
    e = bitpack.unpack(e_ot, 2 * n, 8).reshape(n, 2)
    assert chisquare(np.bincount(e[:, 0].astype(np.int64), minlength=256)).pvalue > 1e-6
    y = bitpack.unpack(e_kk, 16 * n, 4).reshape(n, 16)
    others = y[np.arange(16)[None, :] != ch16[:, None]]
    assert chisquare(np.bincount(others.astype(np.int64), minlength=16)).pvalue > 1e-6
    # packed keys (nco.py): every key reads its own field, so two non-chosen entries of one
    # row are independent: their XOR is uniform too (a key field shared by two entries, or
    # read at the same place for both, would cancel)
    for d in (1, 2, 8):
        pair = (ch16 != np.arange(n) % 16) & ((np.arange(n) + d) % 16 != ch16)
        x = np.arange(n) % 16
        xor = (y[np.arange(n), x] ^ y[np.arange(n), (x + d) % 16])[pair]
        assert chisquare(np.bincount(xor.astype(np.int64), minlength=16)).pvalue > 1e-6


def test_switch_to_main_plan():
    f = ferret._Ferret(None, 0, SMALL, SMALL_MAIN, switch=100)
    assert f._plan(10, SMALL_MAIN.base) is SMALL
    assert f._plan(200, SMALL_MAIN.base) is SMALL_MAIN
    assert f._plan(200, SMALL_MAIN.base - 1) is SMALL  # not enough base COTs yet


@pytest.mark.slow
def test_one_main_set_iteration():
    """Ferret's real main set once (10,485,760 outputs from 2^13-leaf trees and the 452,000 x
    10.5 M local code), seeded by a real bootstrap-set iteration: the correlation holds on the
    COTs handed out, which span both iterations' outputs."""
    n = 2_000_000

    def srv(ch):
        s = _offset_bits()
        f = FerretSender(ch, ExtSender(s, base_ot_recv(ch, s)), 6, switch=0, depth=0)
        k = f.take(n)
        return k, f.delta, f.iterations, f.produced

    def cli(ch):
        f = FerretReceiver(ch, ExtReceiver(base_ot_send(ch, 128)), 6, switch=0, depth=0)
        return f.take(n), f.iterations

    (k, delta, it, made), ((x, m), it_c) = run_pair(srv, cli, timeout=600)
    assert it == it_c == 2 and made == (BOOT.n - BOOT.base) + (MAIN.n - MAIN.base)
    assert np.array_equal(m, k ^ (x[:, None].astype(np.uint64) * delta))
    assert binomtest(int(x.sum()), n).pvalue > 1e-6


def test_chunk_rows_views_and_straddlers():
    """The pool's segments handed out in CHUNK-aligned chunks: the same rows in order, views
    where a chunk lies in one segment."""
    from twofold.runtime.ot import iknp
    from twofold.runtime.ot.silent import _chunk_rows

    sizes = [0, 3, iknp.CHUNK + 5, 2 * iknp.CHUNK, 7]
    parts = [PRG().block(s) for s in sizes]
    n = sum(sizes) - 4
    got = list(_chunk_rows(parts, n))
    assert [(lo, hi) for lo, hi, _ in got] == [
        (lo, min(n, lo + iknp.CHUNK)) for lo in range(0, n, iknp.CHUNK)
    ]
    assert np.array_equal(np.concatenate([r for _, _, r in got]), np.concatenate(parts)[:n])
    assert np.shares_memory(got[2][2], parts[3])  # inside one segment: no copy


def test_chosen_choices_in_chunks_across_iterations():
    """extend / extend_chunks / extend_random over pool segments of several iterations: every
    row of every chunk correlated with the chosen (or returned random) choice, tweaks in order."""
    from twofold.runtime.ot.silent import SilentReceiver, SilentSender

    n = 150_001  # > 2 chunks, straddling the iterations' segments
    c = PRG().bits(n)
    packed = np.packbits(np.concatenate([c, np.zeros(-n % 64, np.uint8)]), bitorder="little")

    def srv(ch):
        s = _offset_bits()
        f = FerretSender(ch, ExtSender(s, base_ot_recv(ch, s)), 6, SMALL, SMALL_MAIN, 0)
        snd = SilentSender(f)
        q = np.empty((n, 2), np.uint64)
        tws = []

        def each(rows, tw, lo, hi):
            q[lo:hi] = rows
            tws.append(tw - lo)

        snd.extend(ch, n, each)
        qr = np.empty((n, 2), np.uint64)
        snd.extend_random(n, lambda rows, tw, lo, hi: qr.__setitem__(slice(lo, hi), rows))
        return q, qr, f.delta, tws

    def cli(ch):
        f = FerretReceiver(ch, ExtReceiver(base_ot_send(ch, 128)), 6, SMALL, SMALL_MAIN, 0)
        rcv = SilentReceiver(f)
        t, tr = np.empty((n, 2), np.uint64), np.empty((n, 2), np.uint64)

        def into(a):
            return lambda r, tw, lo, hi: a.__setitem__(slice(lo, hi), r)

        rcv.extend(ch, n, lambda lo, hi: packed[lo // 8 : hi // 8], into(t))
        x = rcv.extend_random(n, into(tr))
        return t, tr, x

    (q, qr, delta, tws), (t, tr, x) = run_pair(srv, cli)
    assert np.array_equal(t, q ^ (c[:, None].astype(np.uint64) * delta))
    assert np.array_equal(tr, qr ^ (x[:, None].astype(np.uint64) * delta))
    assert set(tws) == {0}  # tweak index of row lo is the batch's first + lo
