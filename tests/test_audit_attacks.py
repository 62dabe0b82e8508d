"""Attacks on the hardened server and client (issue 12 audit), each replayed over real
loopback TCP against the code that stops it; every test here failed on the code before its fix."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_python2pc import local_ops_graph

from twofold.compiler.bundle import read_bundle
from twofold.ir.bundle import BundleError, load_ir
from twofold.ir.serialize import graph_from_json
from twofold.runtime.errors import PeerError
from twofold.runtime.gate import GateConfig, server_channel
from twofold.runtime.net import Channel
from twofold.runtime.program import Program, ProgramError
from twofold.runtime.runner import RunError, server_gate
from twofold.runtime.session import Party
from twofold.runtime.tls import ensure_self_signed, server_context
from twofold.toolchain import compile_model


def _tls_client(raw: socket.socket) -> tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """A TLS 1.3 client over memory BIOs (so the attacker controls every byte on the wire)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(1 << 16))
    raw.sendall(out.read())
    return obj, out


def test_trickled_tls_record_cannot_outlast_the_handshake_deadline(tmp_path: Path) -> None:
    """TLS up, then the opening frame's record one byte every 0.4 s: the record is never
    complete, so the old TLSStream.recv_into looped on the socket forever (each byte within the
    per-read timeout), holding a pending place for hours; the deadline now ends it."""
    cert, key = ensure_self_signed(tmp_path / "tls")
    hs = 1.5
    gate = GateConfig(server_context(cert, key), None, hs)
    lst = socket.create_server(("127.0.0.1", 0))
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = lst.accept()
        t0 = time.monotonic()
        try:
            server_channel(conn, gate, timeout=600.0)
            result["outcome"] = "admitted"
        except PeerError as e:
            result["outcome"] = str(e)
        result["held"] = time.monotonic() - t0

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    raw = socket.create_connection(lst.getsockname())
    try:
        obj, out = _tls_client(raw)
        body = b" " * 2000 + json.dumps({"token": None}).encode()
        obj.write(len(body).to_bytes(8, "little") + b"\0" + body)
        record = out.read()
        t0 = time.monotonic()
        for b in record[:-1]:  # never the last byte
            if not th.is_alive() or time.monotonic() - t0 > hs + 4:
                break
            try:
                raw.sendall(bytes([b]))
            except OSError:
                break
            th.join(0.4)
        th.join(2)
    finally:
        raw.close()
        lst.close()
    assert not th.is_alive() and result["outcome"] != "admitted", result
    assert "deadline" in str(result["outcome"]), result
    assert result["held"] < hs + 1.0, result


def _frame(body: bytes) -> bytes:
    return struct.pack("<QB", len(body), 0) + body


@pytest.mark.parametrize("stage", ["gate", "program handshake"])
def test_deeply_nested_json_is_a_malformed_frame(stage: str) -> None:
    """A 4 KiB opening frame of '[' made json.loads raise RecursionError, which no handler
    caught: a traceback in the server's log from anyone who can connect (before TLS in
    plaintext mode). Now it is a malformed frame, refused with a PeerError."""
    a, b = socket.socketpair()
    chan = None
    try:
        if stage == "gate":
            b.sendall(_frame(b"[" * 4000))
            with pytest.raises(PeerError, match="malformed opening frame"):
                server_channel(a, GateConfig(None, None, 5.0), timeout=5.0)
        else:
            chan = Channel(a, 5.0)
            b.sendall(_frame(b"[" * 4000) + _frame(b"\0" * 16))  # within HELLO_MAX
            with pytest.raises(PeerError, match="malformed hello"):
                Party("server", chan, "0" * 64, setup_ot=False)
    finally:
        for s in (a, b):
            s.close()


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("audit") / "b"
    compile_model(None, d, graph=local_ops_graph(16), preprocess="none", input_range=(-3, 3))
    return d


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda ir: ir["nodes"][6]["attrs"].update(bogus=1), "unexpected keyword argument 'bogus'"),
        (
            lambda ir: ir["meta"].update(ell=64),
            "meta.ell is 64, but the program.s tensors are on the ring of",
        ),
    ],
    ids=["extra attribute", "program ring unlike its nodes'"],
)
def test_ir_the_executor_cannot_call_is_refused_before_traffic(small_bundle, edit, needle):
    """A client IR (hash recomputed, as its vendor would) with an attribute the Executor method
    does not take passed check_program and failed mid-session with a TypeError traceback on the
    client (and an internal error on the server); now it is refused when the program loads."""
    ir = json.loads((small_bundle / "client" / "ir.json").read_text())
    assert ir["nodes"][6]["op"] == "relu"
    edit(ir)
    g = graph_from_json(json.dumps(ir))
    for key, pv in g.meta.get("public_params", {}).items():
        g.params[key] = np.asarray(pv["values"], np.int64).reshape(pv["shape"])
    with pytest.raises(ProgramError, match=needle):
        Program(g)


def test_world_readable_operator_tls_key_is_refused(small_bundle, tmp_path):
    """SECURITY.md: 'the server refuses a key file readable by others'. It did so only for the
    self-signed key it creates; an operator's --tls-key of mode 0644 was served with."""
    cert, key = ensure_self_signed(tmp_path / "tls")
    key.chmod(0o644)
    with pytest.raises(RunError, match="readable by others"):
        server_gate(small_bundle, tls_cert=str(cert), tls_key=str(key))
    key.chmod(0o600)
    gate, fp = server_gate(small_bundle, tls_cert=str(cert), tls_key=str(key))
    assert gate.ctx is not None and fp.startswith("sha256:")


@pytest.mark.parametrize("doc", ["[1]", '"ir"', '{"format": "twofold-ir", "nodes": [5]}'])
def test_ir_json_of_the_wrong_shape_is_one_clear_error(small_bundle, tmp_path, doc):
    """An ir.json that is valid JSON but not an object (or with nodes that are not objects)
    ended `run client` in an AttributeError traceback; now a BundleError naming the file."""
    d = tmp_path / "client"
    shutil.copytree(small_bundle / "client", d)
    (d / "ir.json").write_text(doc)
    with pytest.raises(BundleError, match="ir.json is malformed"):
        load_ir(d)


def test_simulate_refuses_weights_and_manifest_of_another_compile(small_bundle, tmp_path):
    """weights.npz and manifest.json both taken from another compile (scale 9) of the same
    graph: the digest matched the swapped manifest, so simulate (and eval's oracle) ran the
    IR with foreign weights; run server refused it (IR vs manifest hash), now so does
    read_bundle."""
    other = tmp_path / "other"
    compile_model(
        None, other, graph=local_ops_graph(16), preprocess="none", input_range=(-3, 3), scale=9
    )
    d = tmp_path / "swapped"
    shutil.copytree(small_bundle, d)
    for name in ("weights.npz", "manifest.json"):
        shutil.copy(other / "server" / name, d / "server" / name)
    read_bundle(small_bundle)  # the intact bundle loads
    with pytest.raises(BundleError, match="bundle was modified"):
        read_bundle(d)
