"""The driver loop of ``twofold eval``: hand images to an engine, collect records, retry.

Engine-agnostic: an engine is a ``submit(sample, endpoint) -> Future`` whose result is an
:func:`attempt` outcome, so the thread pool (``--engine local``) and Ray tasks (``--engine
ray``) share one loop. The loop runs in one thread (the driver), which is the only writer of
``results.jsonl``: a record is appended the moment its future completes, so a killed driver
loses at most the images in flight, and ``--resume`` recomputes exactly those.

Retries: an outcome is ``ok`` (a record, possibly an error record for a bad image), ``transient``
(the connection failed; see :func:`.endpoints.is_transient`) or ``fatal`` (deterministic: the
same inputs would fail again). Only transient outcomes are retried, at most ``retries`` times
per image, on whichever endpoint the pool offers next (the failed one is backing off). A fatal
outcome, an image out of retries, or no endpoint answering stops the run: nothing more is
submitted, the sessions in flight finish and are recorded, then :class:`DispatchError`.

Ctrl-C (KeyboardInterrupt, anywhere in the loop) stops at once: nothing more is submitted,
the images that had finished are recorded, ``stop()`` ends the rest (2PC sessions: their
connections are shut down), and those are *interrupted*: named on the progress output, given
no record — not a secure failure, not a protocol fault, in no statistic — so ``--resume``
runs them. Their outcomes, whatever the ended session gave, are discarded. The loop waits at
most ``STOP_GRACE_S`` for their threads to let go of their connections (a second Ctrl-C
skips that), then re-raises KeyboardInterrupt.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from .datasets import Sample
from .endpoints import EndpointPool, NoEndpointError, is_transient

STOP_GRACE_S = 1.0  # after Ctrl-C: how long the ended sessions' threads get to close up
Outcome = tuple[str, Any]  # ("ok", record) | ("transient", message) | ("fatal", message)
Submit = Callable[[Sample, str | None], Future]


class DispatchError(RuntimeError):
    """The run stopped: a deterministic failure, an image out of retries, or no endpoint."""


def attempt(fn: Callable[..., dict[str, Any]], *args: Any) -> Outcome:  # noqa: ANN401
    """Run one image; classify a failure instead of raising (safe to return from a worker)."""
    try:
        return "ok", fn(*args)
    except Exception as e:  # noqa: BLE001 - every failure is classified and reported
        msg = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        return ("transient" if is_transient(e) else "fatal"), msg


def dispatch(
    todo: list[Sample],
    submit: Submit,
    *,
    cap: int,
    pool: EndpointPool | None,
    retries: int,
    on_record: Callable[[dict[str, Any], str | None], None],
    say: Callable[[str], None],
    outcome: Callable[[Future], Outcome] = lambda f: f.result(),
    stop: Callable[[], None] = lambda: None,
) -> None:
    """Run every sample of ``todo`` once (plus transient retries); see the module docstring."""
    pending: deque[Sample] = deque(todo)
    tries: Counter[str] = Counter()
    inflight: dict[Future, tuple[Sample, str | None, int]] = {}
    fatal = ""
    try:
        while inflight or (pending and not fatal):
            while not fatal and pending and len(inflight) < cap:
                ep, ticket = None, 0
                if pool is not None:
                    try:
                        got = pool.acquire()
                    except NoEndpointError as e:
                        fatal = str(e)
                        break
                    if got is None:
                        break
                    ep, ticket = got
                s = pending.popleft()
                tries[s.id] += 1
                inflight[submit(s, ep)] = (s, ep, ticket)
            if not inflight:
                if fatal or not pending:
                    break
                time.sleep(min(pool.wake_in() if pool else 0.1, 1.0) + 0.01)
                continue
            nap = min(pool.wake_in(), 5.0) if pool is not None and pool.down() else None
            done, _ = wait(list(inflight), timeout=nap, return_when=FIRST_COMPLETED)
            for f in done:
                s, ep, ticket = inflight.pop(f)
                kind, payload = outcome(f)
                if pool is not None and ep is not None:
                    pool.release(ep, ticket, kind != "transient", payload if kind != "ok" else "")
                if kind == "ok":
                    on_record(payload, ep)
                elif kind == "transient" and tries[s.id] <= retries:
                    say(f"retrying {s.id} (attempt {tries[s.id] + 1}): {payload}")
                    pending.appendleft(s)
                elif kind == "transient":
                    fatal = fatal or f"{s.id}: {tries[s.id]} attempts failed, the last: {payload}"
                else:
                    fatal = fatal or payload
    except KeyboardInterrupt:
        _interrupt(inflight, stop, on_record, outcome, say)
        raise
    if fatal:
        raise DispatchError(fatal)


def _interrupt(
    inflight: dict[Future, tuple[Sample, str | None, int]],
    stop: Callable[[], None],
    on_record: Callable[[dict[str, Any], str | None], None],
    outcome: Callable[[Future], Outcome],
    say: Callable[[str], None],
) -> None:
    """Ctrl-C: record what had finished, end the rest, name them (see the module docstring).

    Invariant: an image gets a record only from an outcome that was complete before
    ``stop()`` was called, so nothing an ended session gave is ever recorded."""
    finished = [f for f in inflight if f.done()]  # before stop(): their outcomes are real
    stop()
    lost = [f for f in inflight if f not in finished]
    try:
        for f in finished:
            kind, payload = outcome(f)
            if kind == "ok":
                on_record(payload, inflight[f][1])
        if lost:
            ids = [inflight[f][0].id for f in lost]
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            say(
                f"interrupted: ended the {len(ids)} image(s) in flight ({shown}); they are "
                "not recorded, --resume runs them"
            )
            wait(lost, timeout=STOP_GRACE_S)
    except KeyboardInterrupt:  # a second Ctrl-C: stop without the rest of this
        pass
