"""``twofold run server|client``: run a bundle's program as one party over TCP.

Each party walks the IR of its own bundle (the server DIR/server, the client DIR/client;
``runtime.program``); the program hashes of the two must agree in the handshake, and the
server's weights must be the compiled ones (manifest digest).

Session = connect/accept, handshake (protocol version, roles, program hash, DESIGN.md §5),
OT setup, the program, then the server sends its own cost summary (time, bytes, peak RSS) so
the client's report covers both parties. The server serves each client in its own forked
process (``--max-sessions`` at once), so one session's failure never reaches another;
``once`` serves a single client in-process and returns its status.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..ir.bundle import CLIENT, SERVER, BundleError, load_ir, read_manifest, resolve
from ..ir.bundle import load_weights as load_bundle_weights
from ..ir.output_function import apply_output_function
from .errors import PeerError, RuntimeProtocolError
from .executor import Executor
from .net import CONTROL_FRAME_MAX, Channel, connect
from .program import Program
from .report import Progress, cost_doc, format_table
from .session import Party

LINEAR = ("he", "ot", "auto")


class RunError(RuntimeProtocolError):
    """The bundle or the arguments of a run are unusable (the message names what and why)."""


def load_program(directory: str | Path, part: str = CLIENT) -> Program:
    """The program of a bundle: its IR (``part`` of the top DIR, or DIR itself), checked to
    reveal only its outputs, only to the client (``runtime.program``). No file of the bundle is
    executed: a ``program.py`` beside the IR is a listing for people, never imported."""
    command = "run server" if part == SERVER else "run client"
    try:
        d = resolve(directory, part, command)
        prog = Program(load_ir(d))
        want = read_manifest(d)["program_hash"]
    except BundleError as e:
        raise RunError(str(e)) from None
    if prog.PROGRAM_HASH != want:
        raise RunError(
            f"{d / 'ir.json'} is not the program {d / 'manifest.json'} names (hash "
            f"{prog.PROGRAM_HASH[:16]}... vs {str(want)[:16]}...): the bundle was modified"
        )
    return prog


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
    label: str = "server",
    progress: bool = True,
    out: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the program as the server on one connected channel; returns its cost document."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    try:
        party = Party("server", chan, prog.PROGRAM_HASH)
        chan.send(json.dumps({"linear": linear}).encode())  # the server picks the protocol
        setup = _setup_cost(chan, t0)
        rt = Executor(
            party,
            prog.ELL,
            weights=weights,
            linear=linear,
            steps=prog.STEPS,
            progress=Progress(label, enabled=progress),
        )
        prog.run(rt)
        doc = cost_doc(rt.cost, time.perf_counter() - t0, chan, setup)
        chan.send(json.dumps(_summary(doc)).encode())
        chan.flush()
    finally:
        chan.close()
    print(format_table(doc, label), file=out, flush=True)
    return doc


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise RunError("--tls-key needs --tls-cert")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise RunError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    return ctx


def _session_main(
    conn: socket.socket,
    sid: int,
    ctx: ssl.SSLContext | None,
    timeout: float,
    run: Callable[[Channel, str], Any],
) -> None:
    """Body of one forked session process: exit status 0 on success, 1 on any failure."""
    label = f"server[session {sid}]"
    try:
        if ctx is not None:
            conn.settimeout(timeout)
            conn = ctx.wrap_socket(conn, server_side=True)
        run(Channel(conn, timeout), label)
    except (RuntimeProtocolError, ssl.SSLError, OSError, ValueError) as e:
        print(f"twofold: {label}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except BaseException as e:  # noqa: BLE001 - a bug must still end only this session
        print(f"twofold: {label}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)


def serve(
    directory: str | Path,
    host: str,
    port: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    once: bool = False,
    max_sessions: int = 2,
    linear: str = "auto",
    timeout: float = 600.0,
    progress: bool = True,
    ready: Callable[[int], None] | None = None,
) -> int:
    """Serve clients until stopped (or one with ``once``); returns the exit status."""
    if linear not in LINEAR:
        raise RunError(f"--linear must be one of {', '.join(LINEAR)}, got {linear!r}")
    if max_sessions < 1:
        raise RunError(f"--max-sessions must be at least 1, got {max_sessions}")
    prog = load_program(directory, SERVER)
    weights = load_weights(directory)
    ctx = _tls_context(tls_cert, tls_key)
    try:
        lst = socket.create_server((host, port))
    except OSError as e:
        raise RunError(f"cannot listen on {host}:{port}: {e}") from None
    port = lst.getsockname()[1]
    print(
        f"twofold server: serving {Path(directory)} (program {prog.PROGRAM_HASH[:12]}, "
        f"l={prog.ELL}, linear={linear}) on {host}:{port}" + (", TLS" if ctx else ""),
        flush=True,
    )
    if ready is not None:
        ready(port)

    def run(chan: Channel, label: str) -> Any:  # noqa: ANN401
        return server_session(chan, prog, weights, linear=linear, label=label, progress=progress)

    with lst:
        if once:
            conn, _ = lst.accept()
            lst.close()
            try:
                _session_main(conn, 1, ctx, timeout, run)
            except SystemExit as e:
                return int(e.code or 0)
            return 0
        mp = multiprocessing.get_context("fork")
        active: dict[int, Any] = {}
        sid = 0
        lst.settimeout(0.2)
        try:
            while True:
                _reap(active)
                if len(active) >= max_sessions:
                    time.sleep(0.05)
                    continue
                try:
                    conn, addr = lst.accept()
                except TimeoutError:
                    continue
                sid += 1
                print(f"twofold server: session {sid} from {addr[0]}:{addr[1]}", flush=True)
                p = mp.Process(target=_child, args=(lst, conn, sid, ctx, timeout, run))
                p.start()
                conn.close()
                active[sid] = p
        except KeyboardInterrupt:
            lst.close()  # stop accepting; let running sessions finish and report them
            _reap(active, wait=True)
            raise


def _reap(active: dict[int, Any], wait: bool = False) -> None:
    """Join finished session processes (all of them with ``wait``) and log their status."""
    for k, p in list(active.items()):
        if wait:
            p.join()
        if not p.is_alive():
            p.join()
            status = "done" if p.exitcode == 0 else f"failed (exit {p.exitcode})"
            print(f"twofold server: session {k} {status}", flush=True)
            del active[k]


def _child(lst: socket.socket, *args: Any) -> None:  # noqa: ANN401
    lst.close()  # the session process must not hold the listening port
    _session_main(*args)


# ----------------------------------------------------------------------------------- client


def _session_settings(chan: Channel) -> str:
    """The linear-layer method the server chose (sent right after the handshake)."""
    try:
        linear = json.loads(chan.recv_bytes(max_len=CONTROL_FRAME_MAX).decode()).get("linear")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise PeerError(f"server sent malformed session settings: {e}") from None
    if linear not in LINEAR:
        raise PeerError(f"server chose an unknown linear method {linear!r}")
    return linear


def run_client(
    directory: str | Path,
    host: str,
    port: int,
    inputs: dict[str, np.ndarray],
    *,
    tls_ca: str | None = None,
    timeout: float = 600.0,
    connect_timeout: float = 10.0,
    progress: bool = True,
    out: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the program as the client; returns the out.json document (with ``cost``)."""
    out = out or sys.stdout
    prog = load_program(directory)
    for key, spec in prog.INPUTS.items():
        if key not in inputs:
            raise RunError(f"no value for the program input {key!r}")
        shp = tuple(np.shape(inputs[key]))
        if shp != tuple(spec["shape"]):
            raise RunError(
                f"input {key!r} has shape {list(shp)}, the program expects {spec['shape']}"
            )
    t0 = time.perf_counter()
    chan = connect(host, port, timeout, tls_ca, connect_timeout)
    try:
        party = Party("client", chan, prog.PROGRAM_HASH)
        linear = _session_settings(chan)
        setup = _setup_cost(chan, t0)
        rt = Executor(
            party,
            prog.ELL,
            inputs=inputs,
            linear=linear,
            steps=prog.STEPS,
            progress=Progress("client", enabled=progress),
        )
        res = prog.run(rt)
        try:
            server_cost = json.loads(chan.recv_bytes(max_len=CONTROL_FRAME_MAX).decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise PeerError(f"server sent a malformed cost summary: {e}") from None
    finally:
        chan.close()
    cost = cost_doc(rt.cost, time.perf_counter() - t0, chan, setup)
    print(format_table(cost, "client"), file=out, flush=True)
    cost["server"] = server_cost
    logits, outputs = {}, {}
    for name, spec in prog.OUTPUTS.items():
        real = np.asarray(res[name]).astype(np.float64) / 2.0 ** spec["scale"]
        logits[name] = {"shape": list(real.shape), "values": real.ravel().tolist()}
        prob = apply_output_function(spec["function"], real)
        outputs[name] = {"shape": list(prob.shape), "values": prob.ravel().tolist()}
    doc: dict[str, Any] = {"outputs": outputs, "logits": logits}
    if prog.LABELS:
        doc["labels"] = list(prog.LABELS)
    doc["cost"] = cost
    return doc


__all__ = ["RunError", "apply_output_function", "load_program", "run_client", "serve"]
