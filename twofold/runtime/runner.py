"""``twofold run server|client``: run a bundle's program as one party over TCP.

Each party walks the IR of its own bundle (the server DIR/server, the client DIR/client;
``runtime.program``); the program hashes of the two must agree in the handshake, and the
server's weights must be the compiled ones (manifest digest).

Session = connect/accept, TLS and token (:mod:`.gate`), handshake (protocol version, roles,
program hash, DESIGN.md §5), OT setup, the program, then the server sends its own cost summary
(time, bytes, peak RSS) so the client's report covers both parties. The server serves each
client in its own forked process, admitted by :mod:`.admission` (a slot only after the
handshake, ``--max-sessions`` at once), so one session's failure never reaches another;
``once`` serves a single client and returns its status.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..ir import program_hash
from ..ir.bundle import CLIENT, SERVER, BundleError, load_ir, read_manifest, resolve
from ..ir.bundle import load_weights as load_bundle_weights
from ..ir.output_function import apply_output_function, invalid_result
from .admission import RATE_DEFAULT, serve_forked
from .errors import PeerError, RuntimeProtocolError, ServerBusy, peer_repr
from .executor import Executor, peak_rss_mb
from .fusion import relu_trunc_plan
from .gate import GateConfig, client_channel, read_token_file, server_channel
from .net import CONTROL_FRAME_MAX, Cancel, Cancelled, Channel, tcp_wire_bytes
from .program import Program
from .protocols._util import SMALL_CHUNK
from .report import Progress, cost_doc, format_table
from .session import OT_DEFAULT, OT_SOURCES, Party, check_ot_source
from .threads import one_blas_thread
from .tls import cert_fingerprint, ensure_self_signed, server_context

LINEAR = ("he", "ot", "auto")


class RunError(RuntimeProtocolError):
    """The bundle or the arguments of a run are unusable (the message names what and why)."""


def load_program(directory: str | Path, part: str = CLIENT) -> Program:
    """The program of a bundle: its IR (``part`` of the top DIR, or DIR itself), checked to
    reveal only its outputs, only to the client (``runtime.program``). No file of the bundle is
    executed: a ``program.py`` beside the IR is a listing for people, never imported.

    The IR's hash is checked against the manifest before anything else reads it, so an edited
    ir.json is "the bundle was modified", whatever the edit broke."""
    command = "run server" if part == SERVER else "run client"
    try:
        d = resolve(directory, part, command)
        g = load_ir(d)
        want = read_manifest(d)["program_hash"]
    except BundleError as e:
        raise RunError(str(e)) from None
    f = d / "ir.json"
    try:
        got = program_hash(g)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise RunError(f"{f} is malformed: {type(e).__name__}: {e}") from None
    if got != want:
        raise RunError(
            f"{f} is not the program {d / 'manifest.json'} names (hash "
            f"{got[:16]}... vs {str(want)[:16]}...): the bundle was modified"
        )
    try:
        return Program(g)
    except RecursionError:
        raise RunError(f"{f} is malformed: nested too deeply") from None


def load_weights(directory: str | Path) -> dict[str, np.ndarray]:
    """The server's integer weights by key, read once (forked sessions share them); refused
    unless they are the ones the program was compiled with (the manifest's digest)."""
    try:
        return load_bundle_weights(resolve(directory, SERVER, "run server"))
    except BundleError as e:
        raise RunError(str(e)) from None


def _setup_cost(chan: Channel, t0: float) -> dict[str, Any]:
    return {
        "s": round(time.perf_counter() - t0, 6),
        "bytes_sent": chan.bytes_sent,
        "bytes_recv": chan.bytes_recv,
        "rounds": chan.rounds,
    }


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("s", "bytes_sent", "bytes_recv", "rounds", "peak_rss_mb")} | {
        "by_kind": doc["by_kind"]
    }


# ----------------------------------------------------------------------------------- server


def server_session(
    chan: Channel,
    prog: Program,
    weights: dict[str, np.ndarray],
    *,
    linear: str = "auto",
    ot: str = OT_DEFAULT,
    fuse: bool = True,
    label: str = "server",
    progress: bool = True,
    out: IO[str] | None = None,
    party: Party | None = None,
) -> dict[str, Any]:
    """Run the program as the server on one connected channel; returns its cost document.

    ``party``: a Party whose program handshake already ran on ``chan`` (the admission stage);
    its OT setup runs here.
    """
    out = out or sys.stdout
    t0 = time.perf_counter()
    try:
        if party is None:
            party = Party("server", chan, prog.PROGRAM_HASH, setup_ot=False)
        # the server picks the protocols, before the OT setup that depends on them
        chan.send(json.dumps({"linear": linear, "ot": ot, "fuse": fuse}).encode())
        if party.ot is None:
            party.setup_ot(ot)
        setup = _setup_cost(chan, t0)
        rt = Executor(
            party,
            prog.ELL,
            weights=weights,
            linear=linear,
            steps=prog.STEPS,
            progress=Progress(label, enabled=progress),
            fuse=relu_trunc_plan(prog.graph) if fuse else frozenset(),
            chunk=None if fuse else SMALL_CHUNK,
        )
        with one_blas_thread():
            prog.run(rt)
        rt.verdict()  # the overflow flags go to the client only
        doc = cost_doc(rt.cost, time.perf_counter() - t0, chan, setup)
        chan.send(json.dumps(_summary(doc)).encode())
        chan.flush()
    finally:
        if party is not None:
            party.close()  # the channel, and the Ferret worker if this role has one
        else:
            chan.close()
    print(format_table(doc, label), file=out, flush=True)
    return doc


def server_gate(
    directory: str | Path,
    *,
    insecure_plaintext: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_dir: str | None = None,
    token_file: str | None = None,
    handshake_timeout: float = 10.0,
) -> tuple[GateConfig, str | None]:
    """The server's TLS/token settings and the certificate fingerprint to print (None: no TLS).

    Without ``--tls-cert`` the server uses (creating it on first start) a self-signed
    certificate in ``--tls-dir``, by default ``tls/`` beside the bundle's server side.
    """
    tokens = read_token_file(token_file) if token_file else None
    handshake_timeout = check_seconds(handshake_timeout, "--handshake-timeout", TIMEOUT_MAX)
    if insecure_plaintext:
        if tls_cert or tls_key or tls_dir:
            raise RunError(
                "--insecure-plaintext cannot be combined with --tls-cert/--tls-key/--tls-dir"
            )
        return GateConfig(None, tokens, handshake_timeout), None
    if tls_cert is None:
        if tls_key is not None:
            raise RunError("--tls-key needs --tls-cert")
        d = Path(directory)
        base = d / "server" if (d / "server").is_dir() else d
        tls_cert, tls_key = (str(p) for p in ensure_self_signed(tls_dir or base / "tls"))
    _check_key_private(Path(tls_key or tls_cert))
    ctx = server_context(tls_cert, tls_key)
    return GateConfig(ctx, tokens, handshake_timeout), cert_fingerprint(tls_cert)


def _check_key_private(key: Path) -> None:
    """Refuse a TLS private key file (``--tls-key``, or ``--tls-cert`` holding the key) that
    other users can read: whoever reads it can impersonate the vendor to every client."""
    try:
        mode = key.stat().st_mode
    except OSError:
        return  # server_context names the missing file
    if mode & 0o077:
        raise RunError(f"the TLS private key {key} is readable by others; chmod 600 it")


def session_deadline(prog: Program, session_timeout: float | None) -> float:
    """Seconds one session may hold a slot: ``--session-timeout``, else derived from the
    program's size (10 min plus 2 s per step and image of the batch: DenseNet-121 224² has
    ~1,000 steps and needs ~5 min on 2 cores, so the bound is generous yet finite)."""
    if session_timeout is not None:
        if session_timeout <= 0:
            raise RunError(f"--session-timeout must be positive, got {session_timeout}")
        return float(session_timeout)
    batch = max((spec["shape"][0] for spec in prog.INPUTS.values() if spec["shape"]), default=1)
    return 600.0 + 2.0 * int(prog.STEPS) * max(int(batch), 1)


def serve(
    directory: str | Path,
    host: str,
    port: int,
    *,
    insecure_plaintext: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_dir: str | None = None,
    token_file: str | None = None,
    handshake_timeout: float = 10.0,
    session_timeout: float | None = None,
    once: bool = False,
    max_sessions: int = 2,
    max_pending: int = 16,
    max_pending_per_address: int | None = None,
    max_queued: int = 4,
    queue_wait: float = 60.0,
    rate_per_address: float = RATE_DEFAULT,
    burst_per_address: int | None = None,
    linear: str = "auto",
    ot: str = OT_DEFAULT,
    fuse: bool = True,
    timeout: float = 600.0,
    progress: bool = True,
    ready: Callable[[int], None] | None = None,
) -> int:
    """Serve clients until stopped (or one with ``once``); returns the exit status.

    TLS is on unless ``insecure_plaintext`` (see :func:`server_gate`); with ``token_file`` only
    clients presenting one of its tokens get a session. Admission (see :mod:`.admission`): a
    connection gets a session slot only after its handshake completed within
    ``handshake_timeout`` of connecting (at most ``max_pending`` at once in that stage,
    ``max_pending_per_address`` from one address), then waits at most ``queue_wait`` for one
    (at most ``max_queued`` waiting); a session holds its slot at most
    :func:`session_deadline`. One address gets a handshake process for at most
    ``burst_per_address`` connections at once and ``rate_per_address`` a second sustained,
    not counting those whose session completed (:class:`.admission.ConnectRate`; rate 0: no
    limit).
    """
    if linear not in LINEAR:
        raise RunError(f"--linear must be one of {', '.join(LINEAR)}, got {linear!r}")
    # at start, naming the option: 0, a negative, NaN or infinity would fail every client later
    timeout, session_timeout = check_timeouts(timeout, session_timeout)
    if max_sessions < 1:
        raise RunError(f"--max-sessions must be at least 1, got {max_sessions}")
    if max_pending < 1:
        raise RunError(f"--max-pending must be at least 1, got {max_pending}")
    per_address = max(1, max_pending // 4)
    if max_pending_per_address is not None:
        per_address = max_pending_per_address
        if not 1 <= per_address <= max_pending:
            raise RunError(
                f"--max-pending-per-address must be 1 to --max-pending ({max_pending}), "
                f"got {per_address}"
            )
    if max_queued < 0:
        raise RunError(f"--max-queued must be at least 0, got {max_queued}")
    queue_wait = check_seconds(queue_wait, "--queue-wait", TIMEOUT_MAX)
    rate, burst = check_rate(rate_per_address, burst_per_address)  # None: serve_forked's
    try:
        check_ot_source(ot)
    except ValueError as e:
        raise RunError(str(e)) from None
    prog = load_program(directory, SERVER)
    weights = load_weights(directory)
    gate, fp = server_gate(
        directory, insecure_plaintext=insecure_plaintext, tls_cert=tls_cert, tls_key=tls_key,
        tls_dir=tls_dir, token_file=token_file, handshake_timeout=handshake_timeout,
    )  # fmt: skip
    session_s = session_deadline(prog, session_timeout)
    host = host.removeprefix("[").removesuffix("]")  # [::1]:7000 as well as ::1:7000
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # the /64 rule needs IPv6
    try:
        lst = socket.create_server((host, port), family=family)
    except OSError as e:
        raise RunError(f"cannot listen on {host}:{port}: {e}") from None
    port = lst.getsockname()[1]

    def announce() -> None:
        """The banner (and ``ready``), once the accept loop handles Ctrl-C itself."""
        print(
            f"twofold server: serving {Path(directory)} (program {prog.PROGRAM_HASH[:12]}, "
            f"l={prog.ELL}, linear={linear}, ot={ot}) on {host}:{port}, "
            + (f"TLS, fingerprint {fp}" if fp else "PLAINTEXT (--insecure-plaintext)")
            + (", token required" if gate.tokens else ""),
            flush=True,
        )
        if ready is not None:
            ready(port)

    def handshake(conn: socket.socket, label: str, deadline: float) -> Party:
        """TLS, token and program handshake, all by the connection's handshake deadline."""
        chan = server_channel(conn, gate, timeout, deadline)  # leaves the deadline set
        try:
            party = Party("server", chan, prog.PROGRAM_HASH, setup_ot=False)
        except BaseException:
            chan.abort()
            raise
        chan.set_deadline(None)
        return party

    def session(party: Party, label: str) -> None:
        party.chan.set_deadline(
            time.monotonic() + session_s, f"session deadline of {session_s:g} s"
        )
        try:
            server_session(
                party.chan, prog, weights, linear=linear, ot=ot, fuse=fuse, label=label,
                progress=progress, party=party,
            )  # fmt: skip
        except RuntimeProtocolError as e:
            raise RuntimeProtocolError(f"{e} (peak RSS {peak_rss_mb():.0f} MiB)") from None

    def refuse(party: Party, why: str) -> None:
        """Tell a client that completed the handshake why it gets no session, in the frame
        where it expects the session settings (``{"error": why}``), then close."""
        party.chan.set_deadline(time.monotonic() + 2.0, "deadline of the busy reply")
        with contextlib.suppress(RuntimeProtocolError, OSError):
            party.chan.send(json.dumps({"error": why}).encode())
            party.chan.flush()
        party.chan.close()

    with lst:
        lst.setblocking(False)
        return serve_forked(
            lst, handshake, session, refuse, once=once, max_sessions=max_sessions,
            max_pending=max_pending, per_address=per_address, max_queued=max_queued,
            queue_wait=queue_wait, handshake_timeout=gate.handshake_timeout,
            session_deadline=session_s, once_wait=timeout if once else None, rate=rate,
            burst=burst, on_ready=announce,
        )  # fmt: skip


# ----------------------------------------------------------------------------------- client


SETTINGS_MAX = 4096  # the session-settings frame is a few short keys
HANDSHAKE_SLACK = 60.0  # s: the client's default deadline also covers the program handshake
TIMEOUT_MAX = 86400.0  # s: a wait for the peer longer than a day is a typo, not a setting


def check_seconds(value: float, option: str, maximum: float | None = None) -> float:
    """``value`` as a duration to wait: a finite number of seconds above 0 (and at most
    ``maximum``); RunError naming ``option`` otherwise. NaN or infinity would switch a
    deadline off (a comparison with NaN is never true), 0 or less would end every wait at
    once, and a huge value overflows the socket timeout."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RunError(f"{option} must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise RunError(f"{option} must be a finite number of seconds above 0, got {value!r}")
    if maximum is not None and v > maximum:
        raise RunError(f"{option} must be at most {maximum:g} s, got {value!r}")
    return v


def check_rate(rate: Any, burst: Any) -> tuple[float, int | None]:  # noqa: ANN401
    """``--rate-per-address`` (connections a second: finite, 0 for no limit) and
    ``--burst-per-address`` (a whole number, at least 1; None: the default), RunError naming
    the option otherwise: NaN would switch the limit off unnoticed (no comparison with it is
    true) and a burst below 1 would refuse every client."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        r = math.nan
    if not (math.isfinite(r) and r >= 0):
        raise RunError(
            "--rate-per-address must be a finite number of connections a second, 0 for no "
            f"limit, got {rate!r}"
        )
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise RunError(f"--burst-per-address must be a whole number, at least 1, got {burst!r}")
    return r, burst


def check_timeouts(timeout: float, session_timeout: float | None) -> tuple[float, float | None]:
    """``--timeout`` (each wait for the peer, at most :data:`TIMEOUT_MAX`) and
    ``--session-timeout`` (the whole run; None: the program-sized default), checked as
    :func:`check_seconds` checks them: what ``run server``, ``run client`` and their callers
    take."""
    timeout = check_seconds(timeout, "--timeout", TIMEOUT_MAX)
    if session_timeout is not None:
        session_timeout = check_seconds(session_timeout, "--session-timeout")
    return timeout, session_timeout


def _session_settings(
    chan: Channel, want_ot: str | None = None, where: str = "the server"
) -> tuple[str, str, bool]:
    """The linear-layer method, OT source and ReLU-truncation fusion the server chose (sent
    right after the handshake); ``want_ot``: the source this client insists on, if any.

    The server sends them once it gave the session a slot: a client that waits in vain (all
    ``--max-sessions`` slots busy until the timeout, or a server that stopped answering) is
    told that the server did not start the session, not just "timed out (frame header)"."""
    try:
        raw = chan.recv_bytes(max_len=SETTINGS_MAX)
    except PeerError as e:
        raise type(e)(
            f"{where} did not start the session (all its session slots busy, or it is not "
            f"answering): {e}"
        ) from None
    try:
        doc = json.loads(raw.decode())
        linear, ot, fuse = doc.get("linear"), doc.get("ot"), doc.get("fuse")
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as e:
        raise PeerError(f"server sent malformed session settings: {e}") from None
    if "error" in doc:  # no session for us (busy, stopping): said in place of the settings
        raise ServerBusy(f"the server turned the session away: {peer_repr(doc['error'], 300)}")
    if linear not in LINEAR:
        raise PeerError(f"server chose an unknown linear method {linear!r}")
    if ot not in OT_SOURCES:
        raise PeerError(f"server chose an unknown OT source {ot!r} (this client runs {OT_SOURCES})")
    if want_ot is not None and ot != want_ot:
        raise PeerError(f"server chose --ot {ot}, this client was asked for --ot {want_ot}")
    if not isinstance(fuse, bool):
        raise PeerError(f"server sent a malformed fusion setting {fuse!r}")
    return linear, ot, fuse


def run_client(
    directory: str | Path,
    host: str,
    port: int,
    inputs: dict[str, np.ndarray],
    *,
    tls_ca: str | None = None,
    server_fingerprint: str | None = None,
    token: str | None = None,
    insecure_plaintext: bool = False,
    timeout: float = 600.0,
    connect_timeout: float = 10.0,
    progress: bool = True,
    out: IO[str] | None = None,
    ot: str | None = None,
    session_timeout: float | None = None,
    program: Program | None = None,
    cancel: Cancel | None = None,
) -> dict[str, Any]:
    """Run the program as the client; returns the out.json document (with ``cost``, and
    ``overflow_checked``: False when the program cannot flag an overflow, so its result may be
    wrong without notice — see ``Program.OVERFLOW_CHECKED``; the CLI refuses such a program
    unless asked, this function leaves that policy to its caller).

    ``program``: the program of ``directory`` if the caller already loaded it (the one whose
    metadata prepared the inputs), else it is loaded here.

    The whole exchange, from connecting to the last byte, ends within ``session_timeout``
    seconds, else within the program-sized :func:`session_deadline` the server also uses plus
    ``HANDSHAKE_SLACK``: a server that trickles bytes cannot hold the client.

    The server is authenticated by ``server_fingerprint`` (pinned) or ``tls_ca``; neither is
    an error unless ``insecure_plaintext`` (see :func:`twofold.runtime.gate.client_channel`).
    ``ot``: refuse a server that chose another OT source (None: accept the server's).
    ``cancel``: lets another thread end the run at once (:class:`~.net.Cancel`); the run then
    raises :class:`~.net.Cancelled`, whatever error the ended connection gave.
    """
    out = out or sys.stdout
    timeout, session_timeout = check_timeouts(timeout, session_timeout)
    if ot is not None:
        try:
            check_ot_source(ot)
        except ValueError as e:
            raise RunError(str(e)) from None
    prog = program or load_program(directory)
    for key, spec in prog.INPUTS.items():
        if key not in inputs:
            raise RunError(f"no value for the program input {key!r}")
        shp = tuple(np.shape(inputs[key]))
        if shp != tuple(spec["shape"]):
            raise RunError(
                f"input {key!r} has shape {list(shp)}, the program expects {spec['shape']}"
            )
    if session_timeout is None:
        session_s = session_deadline(prog, None) + HANDSHAKE_SLACK
    else:
        session_s = session_timeout  # the limit the user gave, connecting included
    t0 = time.perf_counter()
    end = time.monotonic() + session_s
    try:
        return _client_session(
            prog, host, port, inputs, end, session_s, t0, cancel, out, ot=ot, progress=progress,
            tls_ca=tls_ca, server_fingerprint=server_fingerprint, token=token,
            insecure_plaintext=insecure_plaintext, timeout=timeout,
            connect_timeout=min(connect_timeout, session_s),
        )  # fmt: skip
    except (RuntimeProtocolError, OSError) as e:
        if cancel is not None and cancel.cancelled and not isinstance(e, Cancelled):
            raise Cancelled(f"the session was cancelled ({e})") from None
        raise
    finally:
        if cancel is not None:
            cancel.release()


def _client_session(
    prog: Program,
    host: str,
    port: int,
    inputs: dict[str, np.ndarray],
    end: float,
    session_s: float,
    t0: float,
    cancel: Cancel | None,
    out: IO[str],
    *,
    ot: str | None,
    progress: bool,
    **connect: Any,  # noqa: ANN401 - client_channel's TLS, token and timeout arguments
) -> dict[str, Any]:
    """:func:`run_client` from connecting on (its arguments checked, its deadline set)."""
    chan = client_channel(host, port, deadline=end, cancel=cancel, **connect)
    chan.set_deadline(end, f"session deadline of {session_s:g} s")
    party = None
    try:
        party = Party("client", chan, prog.PROGRAM_HASH, setup_ot=False)
        linear, ot_source, fuse = _session_settings(chan, ot, f"the server at {host}:{port}")
        party.setup_ot(ot_source)
        setup = _setup_cost(chan, t0)
        rt = Executor(
            party,
            prog.ELL,
            inputs=inputs,
            linear=linear,
            steps=prog.STEPS,
            progress=Progress("client", enabled=progress),
            fuse=relu_trunc_plan(prog.graph) if fuse else frozenset(),
            chunk=None if fuse else SMALL_CHUNK,
        )
        with one_blas_thread():
            res = prog.run(rt)
        verdict = rt.verdict()
        try:
            server_cost = json.loads(chan.recv_bytes(max_len=CONTROL_FRAME_MAX).decode())
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise PeerError(f"server sent a malformed cost summary: {e}") from None
        wire = tcp_wire_bytes(chan.sock)
    finally:
        if party is not None:
            party.close()  # the channel, and the Ferret worker (an iteration prepared ahead)
        else:
            chan.close()
    cost = cost_doc(rt.cost, time.perf_counter() - t0, chan, setup)
    if wire is not None:  # what TCP carried: the frames plus TLS records and handshake
        cost["wire"] = {"bytes_sent": wire[0], "bytes_recv": wire[1]}
    print(format_table(cost, "client"), file=out, flush=True)
    cost["server"] = server_cost
    cost["settings"] = {"linear": linear, "ot": ot_source, "fuse": fuse}
    checked = {"overflow_checked": bool(prog.OVERFLOW_CHECKED)}  # False: a wrong result is silent
    if verdict is not None and not verdict["valid"]:
        return invalid_result(verdict["overflow_at"]) | checked | {"cost": cost}
    logits, outputs = {}, {}
    for name, spec in prog.OUTPUTS.items():
        real = np.asarray(res[name]).astype(np.float64) / 2.0 ** spec["scale"]
        logits[name] = {"shape": list(real.shape), "values": real.ravel().tolist()}
        prob = apply_output_function(spec["function"], real)
        outputs[name] = {"shape": list(prob.shape), "values": prob.ravel().tolist()}
    doc: dict[str, Any] = {"outputs": outputs, "logits": logits}
    if verdict is not None:
        doc["valid"] = True
    if prog.LABELS:
        doc["labels"] = list(prog.LABELS)
    doc |= checked
    doc["cost"] = cost
    return doc


__all__ = ["RunError", "apply_output_function", "load_program", "run_client", "serve"]
