"""No secret-dependent bytes on disk (issue 12, deliverable 7): ciphertexts are serialised
through an anonymous in-memory file, so a client SIGKILLed in the middle of its HE linear
layers leaves nothing under /dev/shm or the temporary directory (the old code left
/dev/shm/twofold-ct-*/PID-TID, whose last content held a·s, i.e. the secret key)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import seal
from fixedpoint_graphs import small_cnn
from test_run_cli import PINS, TWOFOLD, Server

from twofold.runtime.linear.linear_he_seal import N, ct_to_array, he_params
from twofold.toolchain import compile_model


def _links(pid: int | str) -> list[str]:
    """Where the open descriptors of a process point (those still open while we look)."""
    out = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def test_ct_to_array_round_trip_in_memory_and_per_process():
    hp = he_params(32)
    kg = seal.KeyGenerator(hp.ctx)
    ct = seal.Encryptor(hp.ctx, kg.secret_key()).encrypt_symmetric(seal.Plaintext(N))
    a = ct_to_array(ct)
    assert a.shape == (2, 3, N) and a.flags.writeable
    assert (a == ct_to_array(ct)).all()  # the memfd is rewritten, not appended to
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked session gets its own in-memory file
        ok = (ct_to_array(ct) == a).all()
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    links = _links("self")
    assert any(x.startswith("/memfd:twofold-ct") for x in links)
    assert not any("/dev/shm/" in x or "twofold-ct-" in x for x in links)


def _shm_files_of(pid: int | str) -> list[str]:
    found = []
    for d in Path("/dev/shm").glob("twofold-ct-*"):
        with contextlib.suppress(OSError):  # another process's directory may vanish meanwhile
            found += [str(f) for f in d.glob(f"{pid}-*")]
    return found


def test_sigkilled_client_leaves_no_file(tmp_path):
    # files of old runs on this machine (before the memfd) may carry a reused pid: not ours
    stale = set(_shm_files_of("*"))
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.uniform(-3, 3, (1, 3, 16, 16)))
    bundle = tmp_path / "cnn"
    compile_model(None, bundle, graph=small_cnn(size=16), preprocess="none",
                  input_range=(-3, 3), calibrate=[tmp_path / "x.npy"])  # fmt: skip
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    srv = Server(bundle, "--linear", "he")
    env = os.environ | {"TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [*TWOFOLD, "run", "client", str(bundle), "--connect", srv.addr, "--input",
         str(tmp_path / "x.npy"), "-o", str(tmp_path / "out.json"), "--quiet",
         "--server-fingerprint", PINS[srv.addr]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline, seen = time.monotonic() + 120, False
        while not seen and time.monotonic() < deadline and proc.poll() is None:
            links = _links(proc.pid)
            seen = any(x.startswith("/memfd:twofold-ct") for x in links)
            time.sleep(0.005)
        assert seen, "the client never serialised a ciphertext"
        assert not any(x.startswith(("/dev/shm", str(tmp))) for x in links), links
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
    assert list(tmp.iterdir()) == []
    assert [f for f in _shm_files_of(proc.pid) if f not in stale] == []
