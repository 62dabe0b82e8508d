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
Ctrl-C does the same (then KeyboardInterrupt): the images in flight are not thrown away after
their sessions ran; a second Ctrl-C stops without them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from .datasets import Sample
from .endpoints import EndpointPool, NoEndpointError, is_transient

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
) -> None:
    """Run every sample of ``todo`` once (plus transient retries); see the module docstring."""
    pending: deque[Sample] = deque(todo)
    tries: Counter[str] = Counter()
    inflight: dict[Future, tuple[Sample, str | None, int]] = {}
    fatal = ""
    interrupted = False  # Ctrl-C once: start nothing new, keep what is being computed
    while inflight or (pending and not fatal and not interrupted):
        while not fatal and not interrupted and pending and len(inflight) < cap:
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
            if fatal or not pending or interrupted:
                break
            time.sleep(min(pool.wake_in() if pool else 0.1, 1.0) + 0.01)
            continue
        nap = min(pool.wake_in(), 5.0) if pool is not None and pool.down() else None
        try:
            done, _ = wait(list(inflight), timeout=nap, return_when=FIRST_COMPLETED)
        except KeyboardInterrupt:  # a second one stops at once (the images in flight are lost)
            if interrupted:
                raise
            interrupted = True
            say(
                f"interrupted: finishing the {len(inflight)} image(s) in flight so their "
                "results are kept, then stopping (--resume continues the run)"
            )
            continue
        for f in done:
            s, ep, ticket = inflight.pop(f)
            kind, payload = outcome(f)
            if pool is not None and ep is not None:
                pool.release(ep, ticket, kind != "transient", payload if kind != "ok" else "")
            if kind == "ok":
                on_record(payload, ep)
            elif kind == "transient" and tries[s.id] <= retries and not interrupted:
                say(f"retrying {s.id} (attempt {tries[s.id] + 1}): {payload}")
                pending.appendleft(s)
            elif kind == "transient" and not interrupted:
                fatal = fatal or f"{s.id}: {tries[s.id]} attempts failed, the last: {payload}"
            elif kind != "transient":
                fatal = fatal or payload
    if interrupted:  # the images in flight are recorded: now stop as asked
        raise KeyboardInterrupt
    if fatal:
        raise DispatchError(fatal)
