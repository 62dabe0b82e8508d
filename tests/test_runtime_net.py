"""Channel framing, counters, faults (close mid-message, truncation, wrong size, timeout), TLS."""

import datetime
import ipaddress
import struct
import threading

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twofold.runtime.errors import PeerError
from twofold.runtime.net import connect, listen, run_pair, socketpair_channels


def test_roundtrip_arrays_bytes_and_counters():
    big = np.arange(1 << 18, dtype=np.uint64).reshape(512, -1)

    def server(ch):
        with ch.section("layer1"):
            ch.send(b"hello")
            ch.send(big)
            ch.send(np.zeros(0, np.uint8))
            return ch.recv_array(np.int32, (3,))

    def client(ch):
        with ch.section("layer1"):
            a = ch.recv_bytes()
            b = ch.recv_array(np.uint64, big.shape)
            c = ch.recv_array(np.uint8, 0)
            ch.send(np.array([1, -2, 3], np.int32))
        return a, b, c, ch

    got, (a, b, c, ch) = run_pair(server, client)
    assert np.array_equal(got, [1, -2, 3])
    assert a == b"hello" and np.array_equal(b, big) and c.size == 0
    st = ch.stats["layer1"]
    assert st.bytes_recv == 5 + big.nbytes + 3 * 9 and st.bytes_sent == 12 + 9
    assert ch.bytes_recv == st.bytes_recv and st.rounds == 1 and st.seconds > 0


def test_wrong_size_and_dtype_are_peer_errors():
    a, b = socketpair_channels(5)
    a.send(np.zeros(4, np.uint64))
    a.send(np.zeros(4, np.int32))
    a.flush()
    with pytest.raises(PeerError, match="32 bytes, expected 24"):
        b.recv_array(np.uint64, (3,))
    with pytest.raises(PeerError, match="int32"):
        b.recv_array(np.uint32, (4,))
    a.close()
    b.close()


def test_peer_closes_mid_message():
    a, b = socketpair_channels(5)
    a.sock.sendall(struct.pack("<QB", 8000, ord(np.dtype(np.uint64).char)) + bytes(100))
    a.close()
    with pytest.raises(PeerError, match="closed the connection.*100 of 8000"):
        b.recv_array(np.uint64, (1000,))
    b.close()


def test_truncated_header():
    a, b = socketpair_channels(5)
    a.sock.sendall(b"\x05\x00\x00")
    a.close()
    with pytest.raises(PeerError, match="frame header"):
        b.recv_bytes()
    b.close()


def test_timeout_is_peer_error():
    a, b = socketpair_channels(0.2)
    with pytest.raises(PeerError, match="timed out"):
        b.recv_bytes()
    a.close()
    b.close()


def test_run_pair_reraises_and_unblocks_other_side():
    def server(ch):
        raise ValueError("boom in server")

    def client(ch):
        return ch.recv_bytes()  # would block forever without the unblocking close

    with pytest.raises(ValueError, match="boom in server"):
        run_pair(server, client, timeout=10)


def test_run_pair_timeout_never_hangs():
    def stall(ch):
        threading.Event().wait(1)
        return 1

    with pytest.raises(PeerError):
        run_pair(stall, lambda ch: ch.recv_bytes(), timeout=0.3, chan_timeout=30)


def _self_signed(tmp_path):
    """A throwaway CA-flagged certificate for localhost/127.0.0.1; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cp, kp = tmp_path / "cert.pem", tmp_path / "key.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    kp.chmod(0o600)  # a server refuses a private key others can read
    return str(cp), str(kp)


def test_tls_roundtrip_and_client_verifies_server(tmp_path):
    cert, key = _self_signed(tmp_path)
    data = np.arange(100_000, dtype=np.uint64)
    with listen("127.0.0.1", 0, tls_cert=cert, tls_key=key, timeout=10) as lst:
        out = {}

        def serve():
            try:
                ch = lst.accept(10)
                ch.send(data)
                out["echo"] = ch.recv_bytes()
                ch.close()
            except PeerError as e:
                out["err"] = e

        t = threading.Thread(target=serve)
        t.start()
        ch = connect("127.0.0.1", lst.port, timeout=10, tls_ca=cert)
        got = ch.recv_array(np.uint64, data.shape)
        ch.send(b"ok")
        ch.close()
        t.join(10)
    assert np.array_equal(got, data) and out["echo"] == b"ok"


def test_tls_rejects_untrusted_server(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = _self_signed(tmp_path / "a")
    wrong_ca, _ = _self_signed(tmp_path / "b")
    with listen("127.0.0.1", 0, tls_cert=cert, tls_key=key, timeout=5) as lst:
        t = threading.Thread(target=lambda: pytest.raises(PeerError, lst.accept, 5))
        t.start()
        with pytest.raises(PeerError, match="TLS"):
            connect("127.0.0.1", lst.port, timeout=5, tls_ca=wrong_ca)
        t.join(10)


def test_connect_refused_is_peer_error():
    with listen("127.0.0.1", 0) as lst:
        port = lst.port
    with pytest.raises(PeerError, match="cannot connect"):
        connect("127.0.0.1", port, connect_timeout=0.2)


def test_control_frame_longer_than_allowed_is_refused_without_allocating_it():
    """A peer claiming a huge control frame gets a PeerError, not a giant allocation."""
    a, b = socketpair_channels(timeout=5.0)
    try:
        a.sock.sendall(struct.pack("<QB", 1 << 35, 0))  # header only: "34 GiB follow"
        with pytest.raises(PeerError, match="at most 16 are expected"):
            b.recv_bytes(max_len=16)
    finally:
        a.close()
        b.close()
