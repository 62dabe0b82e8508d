"""Party: one side of a 2PC session (role, channel, OT state, local and shared PRGs).

Setup = handshake then OT setup. The handshake exchanges the protocol version, the role and the
compiled program's hash (SHA-256 of IR JSON, ell, s, given by the caller); both sides compare the
same two records, so a mismatch raises :class:`ProgramMismatchError` on *both* sides. Then the
:class:`~twofold.runtime.ot.otpack.OTPack` is built once on the chosen OT source (base OTs in
both directions) and shared by every protocol through ``party.ot`` (as in EzPC SCI). A runner
that lets the server choose the source builds the Party with ``setup_ot=False``, agrees on the
source, then calls :meth:`Party.setup_ot`. DESIGN.md §5.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from .alloc import keep_freed_memory
from .errors import PeerError, ProgramMismatchError, peer_repr
from .net import Channel, connect, listen, run_pair
from .ot import otpack as _otpack
from .ot.otpack import OTPack
from .prg import PRG

PROTOCOL = "twofold-2pc"
#: What the messages mean: bump it on every change an older peer would misread, so that the
#: handshake refuses the pair instead of the run computing garbage (2: packed 1-of-N keys,
#: ot/nco.py, 2026-11-30; 3: 1-of-N OTs whose entry 0 is implicit, the shares flavour of
#: ot/parts.py, in the ReLU-truncation's output OT and the millionaire's leaves, the leaves of
#: narrow digits cut to their reachable entries, the silent ReLU-truncation's two 1-of-4 OTs,
#: and Ferret's climb back to the main set, which moves its iterations, 2026-11-30; 4: Ferret's
#: lowest-bit convention, lsb(Delta) = 1 and the receiver's choice bits in its rows' lowest bits,
#: which a v3 peer's rows do not follow, 2026-11-30).
PROTOCOL_VERSION = 4
ROLES = ("server", "client")
#: Correlated-OT sources a session can run on (``twofold run server --ot``) and the default:
#: the OTPack's (silent Ferret COT, or IKNP).
OT_SOURCES: tuple[str, ...] = tuple(_otpack.SOURCES)
OT_DEFAULT: str = _otpack.DEFAULT_SOURCE
#: The hello is four short fields (~150 bytes): a larger frame is refused before it is read, so
#: a stranger cannot make a connection's process parse megabytes of JSON.
HELLO_MAX = 4096
SEED_BYTES = 16


def check_ot_source(source: str) -> str:
    """``source`` if this build can run it; ValueError with one clear line otherwise."""
    if source not in OT_SOURCES:
        raise ValueError(f"--ot must be one of {', '.join(OT_SOURCES)}, got {source!r}")
    return source


class Party:
    """One party: ``role`` ("server" holds the weights, "client" the input), ``chan``, ``ot``,
    ``prg`` (private randomness) and ``shared_prg`` (a seed both parties contributed to)."""

    def __init__(
        self,
        role: str,
        chan: Channel,
        program_hash: str = "",
        *,
        setup_ot: bool = True,
        ot_source: str | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be 'server' or 'client', got {role!r}")
        keep_freed_memory()
        self.role = role
        self.is_server = role == "server"
        self.peer_role = "client" if self.is_server else "server"
        self.chan = chan
        self.program_hash = program_hash
        self.prg = PRG()
        with chan.section("handshake"):
            self.shared_prg = self._handshake()
        self.ot: OTPack | None = None
        self.ot_source: str | None = None
        if setup_ot:
            self.setup_ot(ot_source)

    def setup_ot(self, source: str | None = None) -> None:
        """Build the session's OT state on ``source`` (both parties, after the handshake, with
        the same source: the server announces it, see runner.py); a server admits the client
        before this. None: the OTPack's default, read now (so tests can switch it)."""
        source = _otpack.DEFAULT_SOURCE if source is None else source
        self.ot = OTPack(self.chan, self.role, source=check_ot_source(source))
        self.ot_source = source

    def _handshake(self) -> PRG:
        mine = {
            "protocol": PROTOCOL,
            "version": PROTOCOL_VERSION,
            "role": self.role,
            "program": self.program_hash,
        }
        contrib = secrets.token_bytes(SEED_BYTES)
        self.chan.send(json.dumps(mine, sort_keys=True).encode())
        self.chan.send(contrib)
        try:
            theirs = json.loads(self.chan.recv_bytes(max_len=HELLO_MAX).decode())
            if not isinstance(theirs, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise PeerError(f"handshake: peer sent a malformed hello ({e})") from None
        peer_contrib = self.chan.recv_bytes(max_len=SEED_BYTES)
        # Every peer field reaches a message only through peer_repr (capped): its type is
        # whatever the peer's JSON says, so it is compared, never formatted whole.
        proto, version = theirs.get("protocol"), theirs.get("version")
        role, program = theirs.get("role"), theirs.get("program")
        if proto != PROTOCOL or type(version) is not int or version != PROTOCOL_VERSION:
            raise ProgramMismatchError(
                f"protocol mismatch: this {self.role} speaks {PROTOCOL} v{PROTOCOL_VERSION}, "
                f"the peer {peer_repr(proto)} v{peer_repr(version)}"
            )
        if role != self.peer_role:
            raise ProgramMismatchError(
                f"role mismatch: both parties claim to be the {self.role}"
                if role == self.role
                else f"role mismatch: peer claims role {peer_repr(role)}"
            )
        if program != self.program_hash:
            theirs_text = f"{program[:16]!r}..." if isinstance(program, str) else peer_repr(program)
            raise ProgramMismatchError(
                f"program mismatch: this {self.role} runs program {self.program_hash[:16]!r}..., "
                f"the {self.peer_role} runs {theirs_text} "
                "(compile both sides from the same model and settings)"
            )
        if len(peer_contrib) != SEED_BYTES:
            raise PeerError("handshake: peer sent a malformed seed contribution")
        srv, cli = (contrib, peer_contrib) if self.is_server else (peer_contrib, contrib)
        return PRG(hashlib.sha256(b"twofold-shared-prg" + srv + cli).digest()[:16])

    def close(self) -> None:
        if self.ot is not None:
            self.ot.close()
        self.chan.close()


def run_parties(
    server_fn: Callable[[Party], Any],
    client_fn: Callable[[Party], Any],
    program_hash: str = "test",
    timeout: float = 60.0,
    setup_ot: bool = True,
) -> tuple[Any, Any]:
    """Two Parties over a socketpair, one thread each (tests); see :func:`net.run_pair`."""
    return run_pair(
        server_fn,
        client_fn,
        timeout=timeout,
        make=lambda role, ch: Party(role, ch, program_hash, setup_ot=setup_ot),
    )


def serve(
    host: str,
    port: int,
    program_hash: str,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    timeout: float = 60.0,
    accept_timeout: float | None = None,
) -> Party:
    """Server side over TCP: wait for one client on host:port and return the set-up Party."""
    with listen(host, port, tls_cert, tls_key, timeout) as lst:
        chan = lst.accept(accept_timeout)
    return Party("server", chan, program_hash)


def join(
    host: str,
    port: int,
    program_hash: str,
    *,
    tls_ca: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 10.0,
) -> Party:
    """Client side over TCP: connect to the server and return the set-up Party."""
    chan = connect(host, port, timeout, tls_ca, connect_timeout)
    return Party("client", chan, program_hash)
