"""Authenticated by default (issue 12, deliverable 5): the server's self-signed certificate and
its pinned fingerprint, TLS/plaintext mismatches named on both sides, per-customer tokens."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from test_run_cli import TWOFOLD, Server, bundles, client, one_line_error  # noqa: F401

from twofold.runtime.gate import read_token_file, token_accepted
from twofold.runtime.tls import TLSConfigError, cert_fingerprint, ensure_self_signed


def test_self_signed_cert_created_once_key_private(tmp_path):
    cert, key = ensure_self_signed(tmp_path / "tls")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    fp = cert_fingerprint(cert)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    assert ensure_self_signed(tmp_path / "tls") == (cert, key)  # a restart keeps the pin
    assert cert_fingerprint(cert) == fp
    os.chmod(key, 0o644)
    with pytest.raises(TLSConfigError, match="chmod 600"):
        ensure_self_signed(tmp_path / "tls")


def test_token_file_and_constant_time_check(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# customers\nhospital-a-0123456789abcdef\n\nhospital-b-fedcba9876543210\n")
    os.chmod(f, 0o600)
    acc = read_token_file(f)
    assert token_accepted("hospital-b-fedcba9876543210", acc)
    assert not token_accepted("hospital-b-fedcba987654321", acc)
    assert not token_accepted(None, acc) and not token_accepted(["x"], acc)
    os.chmod(f, 0o644)
    with pytest.raises(TLSConfigError, match="chmod 600"):
        read_token_file(f)
    f.write_text("short\n")
    os.chmod(f, 0o600)
    with pytest.raises(TLSConfigError, match="line 1"):
        read_token_file(f)


def test_pin_mismatch_plaintext_server_and_tokens(bundles, tmp_path):  # noqa: F811
    d, a, x = bundles["dir"], bundles["a"], bundles["x"]
    tokens = tmp_path / "tokens"
    tokens.write_text("hospital-a-0123456789abcdef\n")
    os.chmod(tokens, 0o600)
    srv = Server(a, "--token-file", str(tokens), "--tls-dir", str(tmp_path / "tls"))
    plain = Server(a, "--insecure-plaintext")
    try:
        assert plain.fingerprint is None
        wrong = "sha256:" + "ab" * 32
        res = client(a, srv.addr, x, d / "p.json", "--quiet", "--server-fingerprint", wrong)
        one_line_error(res, "not the pinned --server-fingerprint")
        res = client(a, srv.addr, x, d / "p.json", "--quiet")
        one_line_error(res, "refused the session", "token")
        res = client(
            a, srv.addr, x, d / "p.json", "--quiet", "--token", "hospital-a-0123456789abcdeX"
        )
        one_line_error(res, "refused the session", "token")
        assert not (d / "p.json").exists()
        res = client(
            a, srv.addr, x, d / "p.json", "--quiet", "--token", "hospital-a-0123456789abcdef"
        )
        assert res.returncode == 0, res.stderr
        # a TLS client against a plaintext server is told that TLS was not offered
        res = client(a, plain.addr, x, d / "q.json", "--quiet", "--server-fingerprint", wrong)
        one_line_error(res, "did not offer TLS", "--insecure-plaintext")
        res = client(a, plain.addr, x, d / "q.json", "--quiet", "--insecure-plaintext")
        assert res.returncode == 0, res.stderr
    finally:
        out, err = srv.stop()
        pout, perr = plain.stop()
    assert "refused at handshake: the client presented no accepted access token" in out
    assert "session 4 done" in out and not err
    assert "refused at handshake: the client started TLS" in pout, pout + perr
    assert stat.S_IMODE((tmp_path / "tls" / "server-key.pem").stat().st_mode) == 0o600


def test_insecure_plaintext_excludes_tls_options(bundles):  # noqa: F811
    res = subprocess.run(
        [*TWOFOLD, "run", "client", str(bundles["a"]), "--connect", "127.0.0.1:9", "--input",
         str(bundles["x"]), "--insecure-plaintext", "--server-fingerprint", "sha256:" + "0" * 64],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(res, "--insecure-plaintext cannot be combined")
