"""TLS for the two-party channel: the server's self-signed certificate, its pinned fingerprint.

The channel is TLS by default (DESIGN.md §5). A server without ``--tls-cert`` creates an
ECDSA P-256 key and a self-signed certificate once, in its TLS directory (key mode 0600), and
prints the certificate's SHA-256 fingerprint; the vendor hands that fingerprint to its customers
out of band. A client authenticates the server either by that pin (``--server-fingerprint``:
the certificate's DER encoding must hash to it, compared in constant time, nothing else is
checked) or by a CA (``--tls-ca``: chain and host name, the usual web PKI check). TLS 1.3 only.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import os
import re
import ssl
import tempfile
from pathlib import Path

from .errors import PeerError, RuntimeProtocolError
from .tls_stream import TLSStream

CERT_NAME, KEY_NAME = "server-cert.pem", "server-key.pem"
_FP_RE = re.compile(r"^(?:sha256[:=])?([0-9a-f]{2}(?::?[0-9a-f]{2}){31})$")


class TLSConfigError(RuntimeProtocolError):
    """A TLS option is unusable (names the option or file at fault)."""


def fingerprint_der(der: bytes) -> str:
    """``sha256:<64 hex>`` of a DER certificate (what the server prints, what clients pin)."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cert_fingerprint(cert_path: str | Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    try:
        der = ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())
    except (OSError, ValueError) as e:
        raise TLSConfigError(f"cannot read the TLS certificate {cert_path}: {e}") from None
    return fingerprint_der(der)


def parse_fingerprint(text: str) -> bytes:
    """The 32 digest bytes of ``sha256:HEX`` / ``HEX`` / ``AB:CD:...`` (case-insensitive)."""
    m = _FP_RE.match(text.strip().lower())
    if m is None:
        raise TLSConfigError(
            f"--server-fingerprint must be the SHA-256 fingerprint the server printed "
            f"(sha256: and 64 hex digits), got {text!r}"
        )
    return bytes.fromhex(m.group(1).replace(":", ""))


def _new_self_signed() -> tuple[bytes, bytes]:
    """A fresh ECDSA P-256 key and a self-signed certificate for it, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twofold server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_self_signed(tls_dir: str | Path) -> tuple[Path, Path]:
    """Cert and key paths in ``tls_dir``, created on first use (dir 0700, key 0600).

    Creation is atomic: the pair is written into a fresh directory that is then renamed into
    place, so concurrent first starts agree on one certificate (the loser loads the winner's).
    """
    d = Path(tls_dir)
    cert, key = d / CERT_NAME, d / KEY_NAME
    if not (cert.is_file() and key.is_file()):
        if d.exists() and any(d.iterdir()):
            raise TLSConfigError(f"{d} exists but holds no {CERT_NAME} and {KEY_NAME}")
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tls-", dir=d.parent))  # mode 0700
        try:
            cert_pem, key_pem = _new_self_signed()
            fd = os.open(tmp / KEY_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            (tmp / CERT_NAME).write_bytes(cert_pem)
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()  # an empty leftover directory
            os.rename(tmp, d)
        except OSError:
            if not (cert.is_file() and key.is_file()):
                raise
        finally:
            for p in (tmp / KEY_NAME, tmp / CERT_NAME):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            with contextlib.suppress(FileNotFoundError, OSError):
                tmp.rmdir()
    if key.stat().st_mode & 0o077:
        raise TLSConfigError(f"{key} is readable by others; chmod 600 it")
    return cert, key


def server_context(cert: str | Path, key: str | Path | None) -> ssl.SSLContext:
    """TLS 1.3 server context for a PEM certificate chain and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(str(cert), None if key is None else str(key))
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    return ctx


def client_context(tls_ca: str | None, server_fingerprint: str | None) -> ssl.SSLContext:
    """TLS 1.3 client context: CA verification, or none (the pin is checked after the handshake)."""
    if tls_ca is not None and server_fingerprint is not None:
        raise TLSConfigError("pass either --tls-ca or --server-fingerprint, not both")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if tls_ca is not None:
        try:
            ctx.load_verify_locations(cafile=tls_ca)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(f"cannot load the CA file --tls-ca {tls_ca}: {e}") from None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # authenticated by the pinned fingerprint instead
    return ctx


def check_pin(sock: ssl.SSLSocket | TLSStream, pin: bytes, where: str) -> None:
    """PeerError unless the peer's certificate hashes to ``pin`` (constant-time compare)."""
    der = sock.getpeercert(binary_form=True) or b""
    if not hmac.compare_digest(hashlib.sha256(der).digest(), pin):
        raise PeerError(
            f"the server at {where} presented certificate {fingerprint_der(der)}, not the pinned "
            f"--server-fingerprint sha256:{pin.hex()}: refusing to talk to it"
        )


__all__ = [
    "TLSConfigError",
    "cert_fingerprint",
    "check_pin",
    "client_context",
    "ensure_self_signed",
    "fingerprint_der",
    "parse_fingerprint",
    "server_context",
]
