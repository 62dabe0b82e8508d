"""``twofold run server|client`` between two OS processes over loopback TCP: the secure result
equals ``twofold simulate`` bit for bit, and every failure ends in one clear line, exit 1 and
no output file (DESIGN.md §6)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_python2pc import local_ops_graph
from test_runtime_net import _self_signed

from twofold.toolchain import compile_model

TWOFOLD = [sys.executable, "-m", "twofold.cli"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("run")
    a, b = d / "a", d / "b"
    compile_model(None, a, graph=local_ops_graph(16), preprocess="none", input_range=(-3, 3))
    # the same model at another scale: a different program (hash)
    compile_model(None, b, graph=local_ops_graph(16), preprocess="none", input_range=(-3, 3),
                  scale=9)  # fmt: skip
    x = np.random.default_rng(2).uniform(-3, 3, (1, 2, 16, 16))
    np.save(d / "x.npy", x)
    return {"a": a, "b": b, "dir": d, "x": d / "x.npy"}


PINS: dict[str, str] = {}  # server address -> the certificate fingerprint it printed


class Server:
    """A ``twofold run server`` process on a free loopback port (TLS with its self-signed
    certificate unless told otherwise; :func:`client` pins the fingerprint it prints)."""

    def __init__(self, bundle: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*TWOFOLD, "run", "server", str(bundle), "--listen", "127.0.0.1:0", "--quiet", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "serving" in line, line + self.proc.stderr.read()
        self.addr = "127.0.0.1:" + line.split(" on 127.0.0.1:")[1].split(",")[0].strip()
        self.fingerprint = (
            line.split("fingerprint ")[1].split(",")[0].strip() if "TLS" in line else None
        )
        if self.fingerprint:
            PINS[self.addr] = self.fingerprint

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err


def client(bundle: Path, addr: str, inp: Path, out: Path, *extra: str, **kw):  # noqa: ANN003, ANN201
    """``twofold run client``; pins the server's fingerprint unless ``extra`` sets TLS options."""
    tls_set = {"--tls-ca", "--server-fingerprint", "--insecure-plaintext"} & set(extra)
    pin = ["--server-fingerprint", PINS[addr]] if addr in PINS and not tls_set else []
    return subprocess.run(
        [*TWOFOLD, "run", "client", str(bundle), "--connect", addr, "--input", str(inp),
         "-o", str(out), *pin, *extra],
        capture_output=True, text=True, timeout=120, **kw,
    )  # fmt: skip


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("twofold: error: ")
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_run_equals_simulate_and_server_survives_bad_client(bundles):
    d = bundles["dir"]
    srv = Server(bundles["a"], "--max-sessions", "2")
    try:
        # a client with a different program is refused on both sides ...
        bad = client(bundles["b"], srv.addr, bundles["x"], d / "bad.json", "--quiet")
        one_line_error(bad, "program mismatch")
        assert not (d / "bad.json").exists()
        # ... and the server goes on serving the next client
        ok = client(bundles["a"], srv.addr, bundles["x"], d / "out.json")
        assert ok.returncode == 0, ok.stderr
        # two clients at once, each in its own server process
        both = [
            subprocess.Popen(
                [
                    *TWOFOLD,
                    "run",
                    "client",
                    str(bundles["a"]),
                    "--connect",
                    srv.addr,
                    "--input",
                    str(bundles["x"]),
                    "-o",
                    str(d / f"c{i}.json"),
                    "--quiet",
                    "--server-fingerprint",
                    srv.fingerprint,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for i in range(2)
        ]
        assert [p.wait(timeout=120) for p in both] == [0, 0]
    finally:
        out, err = srv.stop()
    assert re.search(
        r"connection 1 from 127\.0\.0\.1:\d+ refused at handshake: program mismatch", out
    )
    assert not err, err
    assert "session 2 done" in out and "session 3 done" in out and "session 4 done" in out
    for i in range(2):
        assert (
            json.loads((d / f"c{i}.json").read_text())["logits"]
            == json.loads((d / "out.json").read_text())["logits"]
        )
    sim = subprocess.run(
        [*TWOFOLD, "simulate", str(bundles["a"]), "--input", str(bundles["x"]),
         "-o", str(d / "sim.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    got, want = json.loads((d / "out.json").read_text()), json.loads((d / "sim.json").read_text())
    assert got["logits"] == want["logits"]  # bit for bit
    assert got["outputs"] == want["outputs"]
    cost = got["cost"]
    assert cost["bytes_sent"] > 0 and cost["server"]["bytes_recv"] == cost["bytes_sent"]
    assert cost["by_kind"]["relu"]["rounds"] > 0 and cost["peak_rss_mb"] > 0
    assert "TOTAL" in ok.stdout and "peak RSS (client)" in ok.stdout


def test_server_dying_mid_run(bundles):
    d = bundles["dir"]
    srv = Server(bundles["a"], "--once")
    proc = subprocess.Popen(
        [*TWOFOLD, "run", "client", str(bundles["a"]), "--connect", srv.addr,
         "--input", str(bundles["x"]), "-o", str(d / "dead.json"),
         "--server-fingerprint", srv.fingerprint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stderr.readline()  # progress after the input layer: the protocol is running
    assert "client: 1/" in first, first
    srv.proc.kill()
    srv.proc.wait()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("twofold: error: ") and "peer" in last, err
    assert "Traceback" not in err
    assert not (d / "dead.json").exists()


def test_malformed_image_and_wrong_shape(bundles):
    d = bundles["dir"]
    bad_png = d / "broken.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    res = client(bundles["a"], "127.0.0.1:9", bad_png, d / "o1.json", "--quiet")
    one_line_error(res, "broken.png")
    assert not (d / "o1.json").exists()
    np.save(d / "small.npy", np.zeros((1, 2, 5, 5)))
    res = client(bundles["a"], "127.0.0.1:9", d / "small.npy", d / "o2.json", "--quiet")
    one_line_error(res, "[1, 2, 5, 5]", "[1, 2, 16, 16]")
    assert not (d / "o2.json").exists()


def test_tls_run_and_plaintext_client_refused(bundles):
    """An operator's own certificate (--tls-cert): a CA-checking client runs; a plaintext
    client is told that TLS is expected; a client without any TLS option is told what to pass."""
    d = bundles["dir"]
    cert, key = _self_signed(d)
    srv = Server(bundles["a"], "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        plain = client(bundles["a"], srv.addr, bundles["x"], d / "plain.json", "--quiet",
                       "--timeout", "5", "--insecure-plaintext")  # fmt: skip
        one_line_error(plain, "requires TLS", "--server-fingerprint")
        assert not (d / "plain.json").exists()
        bare = subprocess.run(
            [*TWOFOLD, "run", "client", str(bundles["a"]), "--connect", srv.addr,
             "--input", str(bundles["x"]), "-o", str(d / "bare.json")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        one_line_error(bare, "--server-fingerprint", "--tls-ca", "--insecure-plaintext")
        ok = client(bundles["a"], srv.addr, bundles["x"], d / "tls.json", "--tls-ca", str(cert))
        assert ok.returncode == 0, ok.stderr
    finally:
        srv.stop()
    assert json.loads((d / "tls.json").read_text())["logits"]
