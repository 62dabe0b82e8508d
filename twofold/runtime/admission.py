"""Admitting clients: a cheap handshake stage, then a bounded number of session slots.

A server facing the internet must not let idle, trickling or probing connections starve real
clients (DESIGN.md §5, issue 12). Every accepted connection gets its own forked process at
once (at most ``max_pending`` in the handshake stage; beyond that it is closed on the spot).
That process runs the opening (TLS, token, program handshake) under one deadline, then asks
the parent for a session slot over a pipe; the parent grants at most ``max_sessions`` slots,
first come first served, and frees a slot when its process exits (whatever the exit). So a
connection only holds a slot after it has proven to be a client of this program, and a stuck
handshake costs one pending place for at most the handshake deadline. With ``once`` the server
ends after the first session that got a slot, and returns its exit status; connections that
fail their handshake (a port probe, garbage, a wrong program) do not count.

Exit statuses of a connection's process: 0 session done, 1 session failed, 2 internal error,
3 refused in the handshake stage.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import RuntimeProtocolError

HANDSHAKE_FAILED = 3
_GO = b"go"
_READY = b"ready"


@dataclass
class _Conn:
    sid: int
    proc: Any  # multiprocessing.Process
    pipe: mpc.Connection
    state: str = "handshake"  # -> "ready" (waits for a slot) -> "session"


def _log(msg: str) -> None:
    print(f"twofold server: {msg}", flush=True)


def _die_with_parent(parent: int) -> None:
    """A killed server takes its sessions with it (Linux prctl PR_SET_PDEATHSIG; best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:
        os._exit(1)


def _child(
    lst: socket.socket,
    conn: socket.socket,
    pipe: mpc.Connection,
    sid: int,
    handshake: Callable[[socket.socket, str], Any],
    session: Callable[[Any, str], None],
    slot_wait: float,
    parent: int,
) -> None:
    """One connection's process: handshake, wait for a slot, run the session; exit status."""
    _die_with_parent(parent)
    lst.close()  # the connection's process must not hold the listening port
    label = f"server[session {sid}]"
    try:
        state = handshake(conn, label)
    except (RuntimeProtocolError, OSError, ValueError) as e:
        print(f"twofold: {label}: refused at handshake: {e}", file=sys.stderr, flush=True)
        sys.exit(HANDSHAKE_FAILED)
    except Exception as e:  # noqa: BLE001 - a bug met by a stranger's bytes: one line, this one
        msg = f"twofold: {label}: internal error at handshake: {type(e).__name__}: {e}"
        print(msg, file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        pipe.send_bytes(_READY)
        if not pipe.poll(slot_wait) or pipe.recv_bytes() != _GO:
            raise RuntimeProtocolError(f"no session slot became free within {slot_wait:g} s")
        session(state, label)
    except (RuntimeProtocolError, OSError, ValueError, EOFError) as e:
        print(f"twofold: {label}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except BaseException as e:  # noqa: BLE001 - a bug must still end only this session
        print(f"twofold: {label}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)


def serve_forked(
    lst: socket.socket,
    handshake: Callable[[socket.socket, str], Any],
    session: Callable[[Any, str], None],
    *,
    once: bool = False,
    max_sessions: int = 2,
    max_pending: int = 16,
    slot_wait: float = 600.0,
    once_wait: float | None = None,
) -> int:
    """Accept on ``lst`` until interrupted (or, with ``once``, until one session ends).

    ``handshake(conn, label)`` runs in the connection's process under its own deadline and
    returns the state ``session(state, label)`` continues from once a slot is granted.
    ``once_wait``: with ``once``, give up (exit status 1) if no client got a slot in that time.
    """
    mp = multiprocessing.get_context("fork")
    conns: dict[int, _Conn] = {}
    queue: deque[int] = deque()
    sid = 0
    the_one: int | None = None
    started = time.monotonic()
    try:
        while True:
            if once and the_one is None and once_wait is not None:
                if time.monotonic() - started > once_wait:
                    _log(f"no client completed a handshake within {once_wait:g} s")
                    return 1
            waitables: list[Any] = [lst]
            for c in conns.values():
                waitables += [c.proc.sentinel, c.pipe]
            ready = mpc.wait(waitables, timeout=0.5)
            for c in list(conns.values()):
                if c.pipe in ready and c.state == "handshake":
                    with contextlib.suppress(EOFError, OSError):
                        if c.pipe.recv_bytes() == _READY:
                            c.state = "ready"
                            queue.append(c.sid)
                if c.proc.sentinel in ready or not c.proc.is_alive():
                    c.proc.join()
                    _log(_status(c))
                    c.pipe.close()
                    del conns[c.sid]
                    if c.sid in queue:
                        queue.remove(c.sid)
                    if c.sid == the_one:
                        return c.proc.exitcode or 0
            busy = sum(c.state == "session" for c in conns.values())
            while queue and busy < max_sessions and not (once and the_one is not None):
                c = conns[queue.popleft()]
                with contextlib.suppress(OSError):
                    c.pipe.send_bytes(_GO)
                c.state = "session"
                busy += 1
                if once:
                    the_one = c.sid
            if lst in ready:
                try:
                    conn, addr = lst.accept()
                except (BlockingIOError, TimeoutError, InterruptedError):
                    continue
                pending = sum(c.state != "session" for c in conns.values())
                sid += 1
                if pending >= max_pending or (once and the_one is not None):
                    _log(f"session {sid} from {addr[0]}:{addr[1]} refused: server busy")
                    conn.close()
                    continue
                _log(f"session {sid} from {addr[0]}:{addr[1]}")
                parent_end, child_end = mp.Pipe()
                p = mp.Process(
                    target=_child,
                    args=(lst, conn, child_end, sid, handshake, session, slot_wait, os.getpid()),
                )
                try:
                    p.start()
                except OSError as e:  # out of processes or memory: this connection only
                    _log(f"session {sid} refused: cannot start its process ({e})")
                    parent_end.close()
                    continue
                finally:
                    conn.close()
                    child_end.close()
                conns[sid] = _Conn(sid, p, parent_end)
    except KeyboardInterrupt:
        lst.close()  # stop accepting; let running sessions finish, drop pending handshakes
        for c in conns.values():
            if c.state != "session":
                c.proc.terminate()
        for c in conns.values():
            c.proc.join()
            _log(_status(c))
        raise


def _status(c: _Conn) -> str:
    code = c.proc.exitcode
    if code == 0:
        return f"session {c.sid} done"
    if code == HANDSHAKE_FAILED:
        return f"session {c.sid} failed (refused at handshake)"
    return f"session {c.sid} failed (exit {code})"


__all__ = ["HANDSHAKE_FAILED", "serve_forked"]
