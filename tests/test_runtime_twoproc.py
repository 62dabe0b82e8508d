"""Two separate OS processes exchange OTs over loopback TCP (the server is a subprocess)."""

import subprocess
import sys
import textwrap

import numpy as np

from twofold.runtime.session import join

SERVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from twofold.runtime.net import listen
    from twofold.runtime.session import Party

    with listen("127.0.0.1", 0, timeout=30) as lst:
        print(lst.port, flush=True)
        p = Party("server", lst.accept(30), "h" * 64)
    rng = np.random.default_rng(5)  # public test inputs, same on both sides
    corr = rng.integers(0, 2**32, 777, dtype=np.uint64)
    tab = rng.integers(0, 16, (777, 16), dtype=np.uint64)
    m0, m1 = p.ot.rot_send(777)
    x = p.ot.cot_send(corr, 32)
    p.ot.kkot_send(tab, 4)
    got = p.ot.cot_recv(np.arange(777, dtype=np.uint8) % 2, 17)
    np.savez(sys.argv[1], m0=m0, m1=m1, x=x, got=got)
    p.close()
    """
)


def test_two_processes_over_tcp(tmp_path):
    out = tmp_path / "server.npz"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        p = join("127.0.0.1", port, "h" * 64, timeout=30)
        rng = np.random.default_rng(5)
        corr = rng.integers(0, 2**32, 777, dtype=np.uint64)
        tab = rng.integers(0, 16, (777, 16), dtype=np.uint64)
        c = (np.arange(777) % 3 == 0).astype(np.uint8)
        c16 = (np.arange(777) * 7 % 16).astype(np.uint8)
        m = p.ot.rot_recv(c)
        z = p.ot.cot_recv(c, 32)
        kk = p.ot.kkot_recv(c16, 16, 4)
        corr17 = np.arange(777, dtype=np.uint64) * 1234567 % (1 << 17)
        y = p.ot.cot_send(corr17, 17)
        p.close()
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
    s = np.load(out)
    assert np.array_equal(m, np.where(c[:, None] == 1, s["m1"], s["m0"]))
    assert np.array_equal(z, (s["x"] + c * corr) & np.uint64(2**32 - 1))
    assert np.array_equal(kk, tab[np.arange(777), c16])
    b = np.arange(777, dtype=np.uint64) % 2
    assert np.array_equal(s["got"], (y + b * corr17) & np.uint64(2**17 - 1))
