"""Admitting clients: four bounded stages, so that idle, trickling or probing connections cannot
starve real clients (DESIGN.md §5; issue 12, then the review of the server by its operator).

A connection goes through these stages, each with its own bound and deadline, all counted
from the moment it was accepted:

1. *silent* (no byte received yet): held by this process as a bare socket, no process of its
   own. At most :data:`SILENT_MAX` (fewer if the descriptor limit is low: :func:`silent_budget`);
   a newcomer beyond that closes the oldest silent one, as does running out of descriptors. A real
   client sends its TLS ClientHello right after connecting, so it leaves this stage in the
   time the server takes to look (usually at once: a new socket is peeked when accepted),
   while an attacker's idle sockets age out as newcomers arrive. One that sends nothing within
   the handshake deadline is closed.
2. *handshake* (TLS, token, program handshake, in a forked process under the deadline):
   at most ``max_pending`` connections, at most ``per_address`` from one address (one IPv4
   address, or one IPv6 /64); a newcomer from an address at its cap is closed at once. When
   the stage is full a newcomer ends the oldest connection of the address that holds the
   most places, if that evens the places out (the newcomer's address holds at least two
   fewer; or every address holds one and it holds none), and is closed otherwise (a swap
   that evens nothing out would let an attacker's reconnections end its own connections in
   turn, a fork each). A real client needs milliseconds to finish its handshake, so a client
   alone on its address is never the one ended while the other places are held from fewer
   than ``max_pending`` - 1 addresses. And before its process is forked, a connection takes a
   token from its address's bucket (:class:`ConnectRate`: ``burst`` at once, ``rate`` a
   second sustained, given back when its session completes); with none left it is closed.
3. *queued* (handshake done, waiting for a session slot): at most ``max_queued``, each at most
   ``queue_wait`` seconds; then, or if the queue is full, the client is told ``server busy``
   in the frame where it expects the session settings. Its process watches the socket and
   gives its place up as soon as the client hangs up.
4. *session*: at most ``max_sessions``, granted first come first served; a slot is freed when
   its process exits (whatever the exit).

With ``once`` the server ends after the first session that got a slot and returns its exit
status; connections that fail their handshake (a port probe, garbage, a wrong program) do not
count. A first SIGINT stops accepting and lets running sessions finish (within their session
deadline); a second one, or that deadline, ends them; both return 130.

The log (stdout): one line per connection that is turned away or fails, with its address and
why; turned-away lines that a flood repeats (server busy, silent connections, port probes) at
most once a second each, handshake refusals :data:`REFUSED_BURST` in :data:`REFUSED_PERIOD`
seconds, with the count of those left out.

Exit statuses of a connection's process: see ``_DONE`` ... ``_LEFT``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import multiprocessing
import multiprocessing.connection as mpc
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RuntimeProtocolError

HANDSHAKE_FAILED = 3
_DONE, _FAILED, _INTERNAL, _REFUSED, _BUSY, _LEFT = 0, 1, 2, HANDSHAKE_FAILED, 4, 5
_GO = b"go"
_READY = b"ready"
_BUSY_MSG = b"busy:"  # + why, parent -> child: tell the client and exit _BUSY
_WHY = b"why:"  # + why, child -> parent: the reason of the exit that follows
_WHY_MAX = 600  # bytes of a reason sent to the parent (the peer's values in it are capped)
#: Silent connections (accepted, not a byte yet) held at once; each costs one descriptor here.
SILENT_MAX = 64
REFUSED_BURST, REFUSED_PERIOD = 20, 10.0  # handshake refusals logged in full: 20 per 10 s
#: Handshake processes an address may start a second, sustained (``run server --rate-per-address``)
RATE_DEFAULT = 1.0
#: Addresses whose bucket :class:`ConnectRate` remembers; beyond, the least recently used goes.
RATE_TABLE_MAX = 16384
#: A larger ``--burst-per-address`` is no limit: :class:`ConnectRate` uses this one (a float,
#: which its token counts are, holds every whole number up to it exactly; 10^400 it cannot).
BURST_MAX = 2**53
BASE_FDS = 16  # descriptors the parent holds anyway (stdio, listener, wake-up pair, ...)
FORK_FDS = 4  # a connection's process being started: its pipe and multiprocessing's sentinel
_ACCEPT_BURST = 64  # connections accepted per turn of the loop, so the loop stays responsive
ACCEPT_PAUSE = 0.05  # s the listener rests after running out of file descriptors
SHED = 4  # silent connections closed to make room when the process runs out of descriptors
_KILL_GRACE = 5.0  # s past its deadline before a handshake process that overran is killed
_SLOT_GRACE = 30.0  # s past queue_wait before a queued process gives up without the parent
_SESSION_GRACE = 30.0  # s past its own deadline before a session's process is killed
_REAP_WAIT = 2.0  # s a terminated process gets before SIGKILL
STOPPED = 130  # exit status after SIGINT (128 + 2)


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _log(msg: str) -> None:
    print(f"twofold server: {msg}", flush=True)


class _Limited:
    """Log lines of one kind that a flood repeats: at most ``burst`` in a window of ``period``
    seconds; the lines left out are counted, and the count goes out with the next line or on
    :meth:`flush`. So a stranger's flood costs the log a bounded number of lines a second."""

    def __init__(self, what: str, period: float = 1.0, burst: int = 1) -> None:
        self.what, self.period, self.burst = what, period, burst
        self.start = -1e9  # the current window's start
        self.count = 0  # lines logged in it
        self.left_out = 0

    def log(self, line: str) -> None:
        now = time.monotonic()
        if now - self.start >= self.period:
            self.start, self.count = now, 0
        if self.count >= self.burst:
            self.left_out += 1
            return
        more = f" (and {self.left_out} more {self.what} not logged)" if self.left_out else ""
        _log(line + more)
        self.count, self.left_out = self.count + 1, 0

    def flush(self, final: bool = False) -> None:
        """The count of lines left out, once their window is over (or now, if ``final``)."""
        now = time.monotonic()
        if self.left_out and (final or now - self.start >= self.period):
            _log(f"{self.left_out} more {self.what} in the last {now - self.start:.0f} s")
            self.start, self.count, self.left_out = now, 0, 0


def address_key(host: str) -> str:
    """What ``per_address`` counts by: the IPv4 address, or the /64 of an IPv6 one (a single
    host gets a /64 or more, so counting its addresses one by one would bound nothing)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def silent_budget(places: int) -> int:
    """How many silent connections the parent may hold: :data:`SILENT_MAX`, or fewer when the
    process's descriptor limit leaves no room for them beside the ``places`` connection
    processes (each costs the parent its pipe and its sentinel) and a fork in progress
    (:data:`FORK_FDS`). The soft limit is first raised towards the hard one if it is short.
    Invariant: silent connections alone can never take the descriptors a speaking client's
    process needs (a flood of them ended the server with "Too many open files")."""
    need = BASE_FDS + SILENT_MAX + 2 * places + FORK_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return SILENT_MAX
    return max(1, min(SILENT_MAX, soft - BASE_FDS - 2 * places - FORK_FDS))


def eviction_victim(places: list[tuple[str, float]], key: str) -> int | None:
    """Which of the full handshake stage's ``places`` (address key, accept time) a newcomer
    from ``key`` ends: the oldest of the address holding the most, if that evens the places
    out (``key`` holds at least two fewer; or every address holds one and ``key`` none);
    None, the newcomer is turned away, otherwise.

    Invariant: a connection alone on its address is ended only when every address in the
    stage holds one place, i.e. when the others come from ``len(places) - 1`` addresses. And
    unless every address holds one, a swap leaves the newcomer's address with fewer places
    than the victim's had, so an attacker's reconnections cannot end its own other
    connections in turn (a fork each).
    """
    counts = Counter(k for k, _ in places)
    top, mine = max(counts.values()), counts.get(key, 0)
    if not (mine + 2 <= top or (mine == 0 and top == 1)):
        return None
    return min((i for i, (k, _) in enumerate(places) if counts[k] == top),
               key=lambda i: places[i][1])  # fmt: skip


class ConnectRate:
    """A token bucket per address key (:func:`address_key`) on the connections that get a
    handshake process: ``burst`` at once, refilled at ``rate`` a second.

    Threat: a connection that speaks costs a fork and a TLS handshake (a few ms of CPU)
    before the server can tell it is garbage, and the cap on an address's handshake places
    bounds how many run at once, not how many a second: one stranger that keeps its places
    full, each connection sending a byte and hanging up, made the server fork as fast as
    their handshakes failed (246 a second on loopback, 1.7 cores of CPU;
    ``benchmarks/admission_flood.py``).

    Invariant: over any ``t`` seconds, one address gets at most ``burst + rate * t``
    handshake processes for connections that do not end in a completed session, plus one for
    each of its sessions that completes within those ``t`` seconds (a session started before
    them gives back a token the refill may have replaced meanwhile). A
    connection whose session completes gives its token back (:meth:`give_back`), so a client
    whose sessions succeed (a hospital, ``twofold eval`` with any number of images) is held
    back only when more than ``burst`` of its connections are out at once, and a vendor can
    keep the sustained rate low. An address's completed sessions are bounded by the session
    slots, so giving tokens back lets nobody fork faster than the server runs sessions.

    Memory: at most ``table_max`` addresses. An address absent from the table has a full
    bucket, so only an address with tokens left is added (at a fork), and when the table is
    full the least recently used one is forgotten. That gives it back at most ``burst``
    tokens, and only if it was used within the last ``burst / rate`` seconds, i.e. if the
    server forked for more than ``table_max`` new addresses in that time (16,384 in 20 s by
    default: 800 a second, more than it forks).
    """

    def __init__(self, rate: float, burst: int, table_max: int = RATE_TABLE_MAX) -> None:
        """``burst`` above :data:`BURST_MAX` is taken as that (no limit in practice): the option
        is an unbounded whole number, and one beyond a float's range made the first
        connection's ``float(burst)`` raise, ending the server."""
        self.rate, self.burst, self.table_max = rate, min(burst, BURST_MAX), table_max
        self.table: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, when

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self.table.get(key, (self.burst, now))
        return min(float(self.burst), tokens + (now - when) * self.rate)

    def take(self, key: str, now: float) -> bool:
        """One token of ``key`` at monotonic time ``now``: True (taken), or False (none left:
        the connection is to be closed)."""
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            return False
        self.table[key] = (tokens - 1.0, now)
        self.table.move_to_end(key)
        while len(self.table) > self.table_max:
            self.table.popitem(last=False)
        return True

    def give_back(self, key: str, now: float) -> None:
        """Return the token of a connection of ``key`` whose session completed."""
        if key in self.table:
            tokens = self._tokens(key, now) + 1.0
            if tokens >= self.burst:  # a full bucket is no entry
                del self.table[key]
            else:
                self.table[key] = (tokens, now)

    def __len__(self) -> int:
        return len(self.table)


def burst_default(max_sessions: int, max_queued: int, per_address: int) -> int:
    """``run server --burst-per-address`` unless given: twice the connections one address can
    have in the server's stages at once (20 with the other options' defaults), so a client
    that fills them (``twofold eval --per-endpoint`` up to ``--max-sessions``) has as many
    again for connections that fail or are still being reaped."""
    return 2 * (max_sessions + max_queued + per_address)


@dataclass
class _Silent:
    sid: int
    sock: socket.socket
    addr: str
    key: str
    accepted: float


@dataclass
class _Conn:
    sid: int
    addr: str
    key: str
    accepted: float
    proc: Any  # multiprocessing.Process
    pipe: mpc.Connection
    #: "handshake" -> "queued" (waits for a slot) -> "session"; or "turned away" (told the
    #: server is busy, exiting) or "evicted" (killed to make room; it counts nowhere)
    state: str = "handshake"
    since: float = field(default_factory=time.monotonic)  # entered its current state
    why: str = ""
    quiet: bool = False  # its end is not logged (evicted: logged then; or the server stops)


def _die_with_parent(parent: int) -> None:
    """A killed server takes its sessions with it (Linux prctl PR_SET_PDEATHSIG; best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:
        os._exit(1)


def _end(pipe: mpc.Connection, code: int, why: str) -> None:
    """Exit the connection's process with ``code``, ``why`` sent first for the parent's log."""
    with contextlib.suppress(OSError):
        pipe.send_bytes(_WHY + why.encode(errors="replace")[:_WHY_MAX])
    sys.exit(code)


def _peek(sock: socket.socket) -> bool | None:
    """Without reading: True, the peer sent bytes; False, it closed (or reset) the connection;
    None, nothing yet."""
    try:
        b = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return False
    return bool(b)


def _child(
    conn: socket.socket,
    pipe: mpc.Connection,
    inherited: list[Any],
    sid: int,
    deadline: float,
    handshake: Callable[[socket.socket, str, float], Any],
    session: Callable[[Any, str], None],
    refuse: Callable[[Any, str], None],
    slot_wait: float,
    parent: int,
) -> None:
    """One connection's process: handshake, wait for a slot (watching the socket: a client
    that hangs up gives its place up at once), run the session; reasons go to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent)
    for obj in inherited:  # the listener, other connections' sockets and pipes: not ours
        with contextlib.suppress(OSError):
            obj.close()
    label = f"server[session {sid}]"
    try:
        state = handshake(conn, label, deadline)
    except (RuntimeProtocolError, OSError, ValueError) as e:
        _end(pipe, _REFUSED, str(e))
    except Exception as e:  # noqa: BLE001 - a bug met by a stranger's bytes: one line, this one
        _end(pipe, _INTERNAL, f"internal error at handshake: {type(e).__name__}: {e}")
    try:
        pipe.send_bytes(_READY)
        until = time.monotonic() + slot_wait + _SLOT_GRACE  # the parent decides before that
        watch: list[Any] = [pipe, conn]
        while True:
            ready = mpc.wait(watch, max(until - time.monotonic(), 0.0))
            if conn in ready:  # readable: the client hung up, or sent its first bytes early
                if _peek(conn) is False:  # bytes wait for the session, which reads them
                    _end(pipe, _LEFT, "the client hung up while waiting for a session slot")
                watch = [pipe]  # bytes wait for the session; a hang-up shows there too
                ready = [r for r in ready if r is not conn]
                if not ready:
                    continue
            if pipe in ready:
                msg = pipe.recv_bytes()
                if msg == _GO:
                    break
                why = msg.removeprefix(_BUSY_MSG).decode()
            elif not ready:
                why = "server busy: no session slot became free; try again later"
            else:
                continue
            refuse(state, why)
            _end(pipe, _BUSY, why)
        session(state, label)
    except (RuntimeProtocolError, OSError, ValueError, EOFError) as e:
        _end(pipe, _FAILED, str(e))
    except BaseException as e:  # noqa: BLE001 - a bug must still end only this session
        if isinstance(e, SystemExit):
            raise
        _end(pipe, _INTERNAL, f"internal error: {type(e).__name__}: {e}")
    sys.exit(_DONE)


class _Admission:
    """The parent's state: the stages of the module docstring and the SIGINT handling."""

    def __init__(
        self,
        lst: socket.socket,
        handshake: Callable[[socket.socket, str, float], Any],
        session: Callable[[Any, str], None],
        refuse: Callable[[Any, str], None],
        *,
        once: bool,
        max_sessions: int,
        max_pending: int,
        per_address: int,
        max_queued: int,
        queue_wait: float,
        handshake_timeout: float,
        session_deadline: float,
        once_wait: float | None,
        rate: float = 0.0,
        burst: int = 1,
    ) -> None:
        self.lst: socket.socket | None = lst
        self.handshake, self.session, self.refuse = handshake, session, refuse
        self.once, self.once_wait = once, once_wait
        self.max_sessions, self.max_pending = max_sessions, max_pending
        self.per_address, self.max_queued, self.queue_wait = per_address, max_queued, queue_wait
        self.hs_timeout, self.session_s = handshake_timeout, session_deadline
        self.rate = ConnectRate(rate, burst) if rate > 0 else None  # 0: no limit
        self.mp = multiprocessing.get_context("fork")
        self.silent: dict[int, _Silent] = {}  # insertion order: oldest first
        self.conns: dict[int, _Conn] = {}
        self.queue: list[int] = []
        self.sid = 0
        self.the_one: int | None = None
        self.started = time.monotonic()
        # one limit for every turn-away; the summary names both reasons a flood can have
        self.busy = _Limited("connections turned away (server busy or over --rate-per-address)")
        self.quiet = _Limited("silent connections and port probes closed")
        # a peer that speaks and is refused costs a fork, not a log line each: a burst is
        # logged in full (a misconfigured client's reasons), a flood by its count
        self.refused = _Limited("connections refused at handshake", REFUSED_PERIOD, REFUSED_BURST)
        self.sigints = 0
        self.stop_until: float | None = None  # set by the first SIGINT
        self.stop_began = 0.0
        self.accept_paused_until = 0.0  # out of descriptors: the listener rests till then
        self.silent_max = silent_budget(max_pending + max_queued + max_sessions)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    # -- the loop ------------------------------------------------------------------------
    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve until stopped; ``on_ready`` is called once SIGINT is this loop's to handle,
        so that a Ctrl-C right after the server says it is ready is a stop, not an
        interrupted start."""
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        try:
            if on_ready is not None:
                on_ready()
            while True:
                code = self._turn()
                if code is not None:
                    return code
        finally:
            if main and old is not None:
                signal.signal(signal.SIGINT, old)
            self._end_all(list(self.conns.values()))
            for s in self.silent.values():
                s.sock.close()
            self.wake_r.close()
            self.wake_w.close()

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.sigints += 1
        with contextlib.suppress(OSError):
            self.wake_w.send(b"!")

    def _turn(self) -> int | None:
        """One turn: wait for something (at most 0.5 s), then act on it; an exit status when
        the server is done."""
        waitables: list[Any] = [self.wake_r, *(s.sock for s in self.silent.values())]
        if self.lst is not None and time.monotonic() >= self.accept_paused_until:
            waitables.append(self.lst)
        for c in self.conns.values():
            waitables += [c.proc.sentinel, c.pipe]
        ready = set(mpc.wait(waitables, timeout=0.5))
        if self.wake_r in ready:
            with contextlib.suppress(OSError):
                self.wake_r.recv(4096)
        if self.sigints and self.stop_until is None:
            self._stop()
        for c in list(self.conns.values()):
            if c.pipe in ready:
                self._read_pipe(c)
            if c.proc.sentinel in ready or not c.proc.is_alive():
                code = self._reap(c)
                if code is not None:
                    return code
        if self.stop_until is not None:
            return self._stopping()
        now = time.monotonic()
        self._expire(now)
        if self.once and self.the_one is None and self.once_wait is not None:
            if now - self.started > self.once_wait:
                _log(f"no client completed a handshake within {self.once_wait:g} s")
                return 1
        self._grant()
        for s in [s for s in self.silent.values() if s.sock in ready]:
            del self.silent[s.sid]
            self._spoke(s)
        if self.lst is not None and self.lst in ready:
            self._accept()
        self.busy.flush()
        self.quiet.flush()
        self.refused.flush()
        return None

    # -- stage 1: accepted, silent -------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                sock, addr = self.lst.accept()  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError, TimeoutError):
                return
            except OSError as e:  # out of descriptors: those waiting stay in the backlog
                self.busy.log(f"cannot accept a connection ({e})")
                self._out_of_descriptors()
                return
            self.sid += 1
            s = _Silent(self.sid, sock, f"{addr[0]}:{addr[1]}", address_key(addr[0]),
                        time.monotonic())  # fmt: skip
            if self.once and self.the_one is not None:
                self.busy.log(f"connection {s.sid} from {s.addr} turned away: server busy")
                sock.close()
                continue
            self._spoke(s)

    def _out_of_descriptors(self) -> bool:
        """The process is out of descriptors: free some by closing the oldest silent
        connections (each holds one and has said nothing; :data:`SHED` of them, room for a
        connection and its process's pipe), and rest the listener for :data:`ACCEPT_PAUSE` so
        the loop waits instead of spinning on a listener that stays readable while nothing can
        be accepted. True if a descriptor was freed."""
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
        return self._close_oldest_silent(SHED, "and the server is out of file descriptors") > 0

    def _keep_silent(self, s: _Silent) -> None:
        """Hold ``s`` until it speaks; beyond ``silent_max`` (:func:`silent_budget`) the oldest
        silent one goes."""
        self.silent[s.sid] = s
        extra = len(self.silent) - self.silent_max
        if extra > 0:
            self._close_oldest_silent(extra, f"with {self.silent_max} newer ones waiting")

    def _close_oldest_silent(self, n: int, why: str) -> int:
        """Close the ``n`` oldest silent connections, logging each with its age and ``why``;
        how many were closed."""
        now = time.monotonic()
        old = sorted(self.silent.values(), key=lambda x: x.accepted)[:n]
        for s in old:
            del self.silent[s.sid]
            self.quiet.log(
                f"connection {s.sid} from {s.addr} closed: still silent after "
                f"{now - s.accepted:.1f} s, {why}"
            )
            s.sock.close()
        return len(old)

    def _spoke(self, s: _Silent) -> None:
        """``s`` was accepted or became readable: start its handshake if it sent something,
        else hold it (nothing yet) or close it (a probe; or no room for its address)."""
        first = _peek(s.sock)
        if first is None:  # nothing yet: a real client's hello is on its way
            self._keep_silent(s)
            return
        if not first:
            self.quiet.log(f"connection {s.sid} from {s.addr} closed without a word (a probe?)")
            s.sock.close()
            return
        if self.once and self.the_one is not None:
            self.busy.log(f"connection {s.sid} from {s.addr} turned away: server busy")
            s.sock.close()
            return
        hs = [c for c in self.conns.values() if c.state == "handshake"]
        mine = sum(c.key == s.key for c in hs)
        if mine >= self.per_address:
            self.busy.log(
                f"connection {s.sid} from {s.addr} turned away: {mine} connections from "
                f"{s.key} are in their handshake already (--max-pending-per-address)"
            )
            s.sock.close()
            return
        victim = None
        if len(hs) >= self.max_pending:
            i = eviction_victim([(c.key, c.accepted) for c in hs], s.key)
            if i is None:
                self.busy.log(
                    f"connection {s.sid} from {s.addr} turned away: {self.max_pending} "
                    f"connections are in their handshake (--max-pending), {mine} from {s.key}"
                )
                s.sock.close()
                return
            victim = hs[i]
        if not self._charge(s):
            return
        if victim is not None:
            self.busy.log(
                f"connection {victim.sid} from {victim.addr} ended after "
                f"{time.monotonic() - victim.accepted:.1f} s in its handshake to make room "
                f"(--max-pending {self.max_pending}, "
                f"{sum(c.key == victim.key for c in hs)} of them from {victim.key})"
            )
            victim.state, victim.quiet = "evicted", True
            victim.proc.kill()
        self._fork(s)

    def _charge(self, s: _Silent) -> bool:
        """Take a token of ``s``'s address (:class:`ConnectRate`), or close ``s`` if none is
        left. Closed, not told "server busy": that reply goes inside TLS, after the token and
        program handshake, so it would cost the fork and the handshake the limit is there to
        save; a client reads the close as "busy, or not a twofold server; try again later"."""
        if self.rate is None:
            return True
        if self.rate.take(s.key, time.monotonic()):
            return True
        self.busy.log(
            f"connection {s.sid} from {s.addr} turned away: connections from {s.key} come "
            f"faster than {self.rate.rate:g} a second after a burst of {self.rate.burst} "
            "(--rate-per-address, --burst-per-address)"
        )
        s.sock.close()
        return False

    def _fork(self, s: _Silent) -> None:
        try:
            try:
                parent_end, child_end = self.mp.Pipe()
            except OSError:  # out of descriptors: silent connections make room, once
                if not self._out_of_descriptors():
                    raise
                parent_end, child_end = self.mp.Pipe()
        except OSError as e:  # still none: this connection only
            self.busy.log(f"connection {s.sid} from {s.addr} turned away: no pipe ({e})")
            s.sock.close()
            return
        inherited: list[Any] = [self.wake_r, self.wake_w, parent_end]
        inherited += [x.sock for x in self.silent.values()]
        inherited += [c.pipe for c in self.conns.values()]
        if self.lst is not None:
            inherited.append(self.lst)
        p = self.mp.Process(
            target=_child,
            args=(s.sock, child_end, inherited, s.sid, s.accepted + self.hs_timeout,
                  self.handshake, self.session, self.refuse, self.queue_wait, os.getpid()),
        )  # fmt: skip
        try:
            p.start()
        except OSError as e:  # out of processes or memory: this connection only
            self.busy.log(f"connection {s.sid} from {s.addr} turned away: no process ({e})")
            parent_end.close()
            return
        finally:
            s.sock.close()
            child_end.close()
        self.conns[s.sid] = _Conn(s.sid, s.addr, s.key, s.accepted, p, parent_end)

    # -- stages 2-4 ----------------------------------------------------------------------
    def _read_pipe(self, c: _Conn) -> None:
        with contextlib.suppress(EOFError, OSError):
            while c.pipe.poll():
                msg = c.pipe.recv_bytes(_WHY_MAX + 64)
                if msg == _READY and c.state == "handshake":
                    c.state, c.since = "queued", time.monotonic()
                    self._enqueue(c)
                elif msg.startswith(_WHY):
                    c.why = msg.removeprefix(_WHY).decode(errors="replace")

    def _enqueue(self, c: _Conn) -> None:
        busy = sum(x.state == "session" for x in self.conns.values())
        if self.once and self.the_one is not None:
            self._turn_away(c, "server busy: it serves one client (--once); try again later")
        # sessions granted plus clients queued: several handshakes that end in one turn are
        # queued before _grant runs, so the queue alone would let them all in past the limit
        elif busy + len(self.queue) >= self.max_sessions + self.max_queued:
            self._turn_away(
                c,
                f"server busy: {_n(self.max_sessions, 'session slot')} taken, "
                f"{_n(len(self.queue), 'client')} waiting already; try again later",
            )
        else:
            self.queue.append(c.sid)

    def _turn_away(self, c: _Conn, why: str) -> None:
        with contextlib.suppress(OSError):
            c.pipe.send_bytes(_BUSY_MSG + why.encode())
        c.state, c.since = "turned away", time.monotonic()

    def _grant(self) -> None:
        busy = sum(c.state == "session" for c in self.conns.values())
        while (
            self.queue and busy < self.max_sessions and not (self.once and self.the_one is not None)
        ):
            c = self.conns[self.queue.pop(0)]
            with contextlib.suppress(OSError):
                c.pipe.send_bytes(_GO)
            c.state, c.since = "session", time.monotonic()
            busy += 1
            _log(f"session {c.sid} from {c.addr} started")
            if self.once:
                self.the_one = c.sid
        if self.once and self.the_one is not None:
            for sid in self.queue:
                self._turn_away(
                    self.conns[sid], "server busy: it serves one client (--once); try again later"
                )
            self.queue.clear()

    def _expire(self, now: float) -> None:
        for s in [s for s in self.silent.values() if now - s.accepted > self.hs_timeout]:
            del self.silent[s.sid]
            self.quiet.log(
                f"connection {s.sid} from {s.addr} closed: sent nothing within "
                f"{self.hs_timeout:g} s (--handshake-timeout)"
            )
            s.sock.close()
        for c in self.conns.values():  # every stage has a deadline; a process past it is killed
            overran = (
                (c.state == "handshake" and now - c.accepted > self.hs_timeout + _KILL_GRACE)
                or (c.state == "turned away" and now - c.since > _KILL_GRACE)
                or (c.state == "session" and now - c.since > self.session_s + _SESSION_GRACE)
            )
            if overran and c.proc.is_alive():
                c.why = c.why or f"its process overran the {c.state} stage's deadline; killed"
                c.proc.kill()
            elif c.state == "queued" and now - c.since > self.queue_wait:
                self.queue.remove(c.sid)
                self._turn_away(
                    c,
                    f"server busy: no session slot became free within {self.queue_wait:g} s "
                    "(--queue-wait); try again later",
                )

    def _reap(self, c: _Conn) -> int | None:
        """``c``'s process ended: log it once, free its place; an exit status if that ends
        the server (``once``)."""
        c.proc.join(_REAP_WAIT)
        self._read_pipe(c)
        c.pipe.close()
        del self.conns[c.sid]
        if c.sid in self.queue:
            self.queue.remove(c.sid)
        code = c.proc.exitcode
        if self.rate is not None and c.state == "session" and code == _DONE:
            self.rate.give_back(c.key, time.monotonic())  # every process took a token
        if not c.quiet:
            self._log_end(c, code)
        if c.sid == self.the_one:
            if code == _LEFT:  # hung up before its session began: not the one after all
                self.the_one = None
                return None
            return code or 0
        return None

    def _log_end(self, c: _Conn, code: int | None) -> None:
        took = f"{time.monotonic() - c.since:.1f} s"
        why = c.why or (f"killed by signal {-code}" if code and code < 0 else f"exit {code}")
        if c.state == "session" and code == _DONE:
            _log(f"session {c.sid} done ({c.addr}, {took})")
        elif c.state == "session" and code != _LEFT:
            _log(f"session {c.sid} failed ({c.addr}, {took}): {why}")
        elif code == _BUSY:
            self.busy.log(f"connection {c.sid} from {c.addr} turned away: {why}")
        elif code == _LEFT:
            _log(f"connection {c.sid} from {c.addr}: {why}")
        elif code == _REFUSED:
            self.refused.log(f"connection {c.sid} from {c.addr} refused at handshake: {why}")
        else:
            self.refused.log(f"connection {c.sid} from {c.addr} failed at handshake: {why}")

    # -- stopping (SIGINT) ---------------------------------------------------------------
    def _stop(self) -> None:
        """First SIGINT: no new connections, none waiting; running sessions may finish."""
        if self.lst is not None:
            self.lst.close()
            self.lst = None
        for s in self.silent.values():
            s.sock.close()
        self.silent.clear()
        for sid in self.queue:
            self._turn_away(self.conns[sid], "server stopping; try again later")
        self.queue.clear()
        for c in self.conns.values():
            if c.state == "handshake":
                c.quiet = True
                c.proc.kill()
        sessions = [c for c in self.conns.values() if c.state == "session"]
        now = self.stop_began = time.monotonic()
        left = max((c.since + self.session_s - now for c in sessions), default=0.0)
        self.stop_until = now + max(left, 0.0)
        if sessions:
            n = len(sessions)
            _log(
                f"stopping: no new connections; waiting up to {left:.0f} s for "
                f"{_n(n, 'session')} to end (Ctrl-C again to end {'them' if n > 1 else 'it'} now)"
            )

    def _stopping(self) -> int | None:
        sessions = [c for c in self.conns.values() if c.state == "session"]
        now = time.monotonic()
        if sessions and self.sigints < 2 and now < (self.stop_until or 0.0):
            return None
        if not sessions and len(self.conns) and now < self.stop_began + _REAP_WAIT:
            return None  # turned away or killed a moment ago: let them finish that
        for c in sessions:
            c.quiet = True
        self._end_all(list(self.conns.values()))
        for lim in (self.busy, self.quiet, self.refused):  # what a flood left out, counted
            lim.flush(final=True)
        _log(f"stopped; {_n(len(sessions), 'session')} cut short" if sessions else "stopped")
        return STOPPED

    def _end_all(self, conns: list[_Conn]) -> None:
        """Terminate the processes of ``conns`` and reap them, within a bounded time."""
        for c in conns:
            if c.proc.is_alive():
                c.proc.terminate()
        until = time.monotonic() + _REAP_WAIT
        for c in conns:
            c.proc.join(max(until - time.monotonic(), 0.0))
            if c.proc.is_alive():
                c.proc.kill()
                c.proc.join(1.0)
            with contextlib.suppress(OSError):
                c.pipe.close()
            self.conns.pop(c.sid, None)


def serve_forked(
    lst: socket.socket,
    handshake: Callable[[socket.socket, str, float], Any],
    session: Callable[[Any, str], None],
    refuse: Callable[[Any, str], None],
    *,
    once: bool = False,
    max_sessions: int = 2,
    max_pending: int = 16,
    per_address: int | None = None,
    max_queued: int = 4,
    queue_wait: float = 60.0,
    handshake_timeout: float = 10.0,
    session_deadline: float = 600.0,
    once_wait: float | None = None,
    rate: float = RATE_DEFAULT,
    burst: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Accept on ``lst`` (non-blocking) until stopped (or, with ``once``, until one session
    ends); returns the exit status (130 after SIGINT).

    ``handshake(conn, label, deadline)`` runs in the connection's process and must end by the
    monotonic ``deadline`` (its accept time plus ``handshake_timeout``); it returns the state
    that ``session(state, label)`` continues from once a slot is granted, or that
    ``refuse(state, why)`` uses to tell the client it gets none. ``per_address``: default a
    quarter of ``max_pending`` (at least 1). ``session_deadline``: the seconds a session may
    run (its process enforces them; past them by 30 s it is killed, and after the first
    SIGINT the server waits for sessions at most that long). ``once_wait``: with ``once``,
    give up (status 1) if no client got a slot in that time. ``rate``, ``burst``: the
    :class:`ConnectRate` of an address's handshake processes (``rate`` 0: no limit; ``burst``
    default :func:`burst_default`). ``on_ready``: called once the server handles SIGINT
    itself (where it announces that it is serving).
    """
    per_address = per_address if per_address is not None else max(1, max_pending // 4)
    if burst is None:
        burst = burst_default(max_sessions, max_queued, per_address)
    return _Admission(
        lst, handshake, session, refuse, once=once, max_sessions=max_sessions,
        max_pending=max_pending, per_address=per_address, max_queued=max_queued,
        queue_wait=queue_wait, handshake_timeout=handshake_timeout,
        session_deadline=session_deadline, once_wait=once_wait, rate=rate, burst=burst,
    ).run(on_ready)  # fmt: skip


__all__ = [
    "HANDSHAKE_FAILED",
    "RATE_DEFAULT",
    "SILENT_MAX",
    "STOPPED",
    "ConnectRate",
    "address_key",
    "burst_default",
    "eviction_victim",
    "serve_forked",
]
