"""Execution side of ``twofold eval``: which engine runs the images, against which endpoints.

``--engine local`` runs images in a thread pool of this process (``--jobs``); ``--engine
ray`` runs each image as a Ray task (see :mod:`.ray_engine`). Both are driven by one loop
(:func:`.dispatch.dispatch`) over one :class:`.endpoints.EndpointPool` (``--connect`` list,
``--per-endpoint K``), and both compute a record with the same function
(:func:`.runner.evaluate_image`), so their records are identical up to timings.

Concurrency: local, ``min(--jobs, endpoints × K)``; Ray, ``min(cluster CPUs, endpoints × K)``
(and ``--jobs`` when given). Simulate mode has no endpoints and is bounded by jobs/CPUs only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from . import projection
from .dispatch import attempt, dispatch
from .endpoints import EndpointError, EndpointPool, endpoint_pins, parse_endpoints
from .engines import EngineError, Plaintext, Sessions, Simulate, TwoParty
from .progress import Progress

ENGINES = ("local", "ray")
# How long one attempt keeps retrying a refused connection before it counts as a failure of
# that endpoint (the pool's backoff then takes over; a server still starting is retried).
CONNECT_TIMEOUT_S = 1.0


def connect_options(opts: dict[str, Any] | None) -> dict[str, Any]:
    """Only the options that are set (DESIGN decision 3), so older clients accept them."""
    return {k: v for k, v in (opts or {}).items() if v is not None and v is not False}


class SecureEngines:
    """The secure side of an image by endpoint: the simulation (no endpoint, simulate mode)
    or a 2PC client of that endpoint, built once (it parses the client bundle)."""

    def __init__(
        self, sim: Simulate | None, bundle: Path, opts: dict, pins: dict[str, str] | None = None
    ) -> None:
        self.sim, self.bundle, self.opts, self.pins = sim, bundle, opts, pins or {}
        self._by: dict[str, TwoParty] = {}
        self.sessions = Sessions()  # every 2PC session in flight, to end them on a stop

    def __call__(self, endpoint: str | None) -> Any:  # noqa: ANN401
        if endpoint is None:
            return self.sim
        if endpoint not in self._by:
            opts = self.opts
            if endpoint in self.pins:  # this server's own certificate (endpoint file)
                drop = ("tls_ca", "server_fingerprint", "insecure_plaintext")
                opts = {k: v for k, v in opts.items() if k not in drop}
                opts["server_fingerprint"] = self.pins[endpoint]
            self._by[endpoint] = TwoParty(
                self.bundle,
                endpoint,
                opts,
                connect_timeout=CONNECT_TIMEOUT_S,
                sessions=self.sessions,
            )
        return self._by[endpoint]


class Workers:
    """``n`` daemon threads running submitted calls: a minimal thread pool that a stopped run
    does not wait for.

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so a
    Ctrl-C'd ``twofold eval`` sat until every image in flight had finished (and a second
    Ctrl-C there printed a traceback). Abandoning a worker loses nothing: the driver is the
    only writer of ``results.jsonl``, and a 2PC session is ended by :class:`.engines.Sessions`
    (its connection shut down), not left to the peer's timeout.
    """

    def __init__(self, n: int) -> None:
        self._q: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"twofold-eval-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:  # noqa: ANN401
        f: Future = Future()
        self._q.put((f, fn, args))
        return f

    def _work(self) -> None:
        while (item := self._q.get()) is not None:
            f, fn, args = item
            if not f.set_running_or_notify_cancel():
                continue
            try:
                r = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the driver with the future
                f.set_exception(e)
            else:
                f.set_result(r)

    def close(self, wait: bool = True) -> None:
        """No more work; ``wait``: join the threads (they finish what they run first)."""
        for _ in self._threads:
            self._q.put(None)
        if wait:
            for t in self._threads:
                t.join()


class LocalEngine:
    """Images on a thread pool of this process (2PC sessions release the GIL on I/O)."""

    def __init__(self, plain: Plaintext, secure: SecureEngines, cap: int) -> None:
        from .runner import evaluate_image

        self._eval = evaluate_image
        self.plain, self.secure, self.cap = plain, secure, cap
        self._pool = Workers(cap)

    def describe(self) -> str:
        return f"{self.cap} job(s)"

    def submit(self, s: Any, endpoint: str | None) -> Future:  # noqa: ANN401
        measure = self.cap == 1  # tracemalloc is process-wide: only with one job
        sec = self.secure(endpoint)
        return self._pool.submit(attempt, self._eval, s, self.plain, sec, self.secure.sim, measure)

    def outcome(self, f: Future) -> tuple[str, Any]:
        return f.result()

    def stop(self) -> None:
        """End the 2PC sessions in flight (a simulation cannot be ended: it is abandoned)."""
        self.secure.sessions.stop()

    def close(self) -> None:
        self._pool.close(wait=not self.secure.sessions.stopped)  # stopped: abandon the rest


class Execution:
    """Engine + endpoint pool + progress for one ``run_eval``; validated at construction.

    ``sim`` is the fixed-point oracle (None: only the client bundle is at hand); ``secure`` is
    the secure side eval reads the program's input, output and labels from (``sim`` in
    simulate mode, else the 2PC client of the first endpoint).
    """

    def __init__(self, cfg: Any, plain: Plaintext, sim: Simulate | None) -> None:  # noqa: ANN401
        self.cfg, self.plain, self.sim = cfg, plain, sim
        if cfg.engine not in ENGINES:
            raise EngineError(f"unknown --engine {cfg.engine!r} (choose from local, ray)")
        if cfg.retries < 0:
            raise EngineError(f"--retries must be at least 0, got {cfg.retries}")
        self.opts = connect_options(cfg.connect_options)
        self.pool: EndpointPool | None = None
        self.pins: dict[str, str] = {}
        self.engines = SecureEngines(sim, Path(cfg.bundle), self.opts)
        self.secure = sim
        if cfg.mode == "2pc":
            if not cfg.connect:
                raise EngineError("--mode 2pc needs --connect HOST:PORT (a `twofold run server`)")
            try:
                eps = parse_endpoints(cfg.connect)
                self.pins = endpoint_pins(cfg.connect)
                self.pool = EndpointPool(eps, cfg.per_endpoint)
            except EndpointError as e:
                raise EngineError(str(e)) from None
            self.engines.pins = self.pins
            for ep in eps:  # checks each address and that the 2PC runtime is importable
                self.engines(ep)
            self.secure = self.engines(eps[0])
        self.engine: Any = None
        self.run_stats: dict[str, Any] | None = None

    def _cap(self, limit: int) -> int:
        return max(1, min(limit, self.pool.slots) if self.pool else limit)

    def start(self) -> str:
        """Start the engine (Ray: connect or start a local instance); describe it."""
        cfg = self.cfg
        if cfg.engine == "local":
            self.engine = LocalEngine(self.plain, self.engines, self._cap(cfg.jobs or 1))
        else:
            from .ray_engine import RayEngine

            self.engine = RayEngine(
                cfg.model,
                cfg.bundle,
                cfg.ray_address,
                cfg.jobs,
                (self.opts, self.pins),
                self.sim is not None,
            )
            limit = self.engine.cpus if cfg.jobs is None else min(cfg.jobs, self.engine.cpus)
            self.engine.cap = self._cap(limit)
        return self.engine.describe()

    @property
    def cap(self) -> int:
        return self.engine.cap if self.engine else self._cap(self.cfg.jobs or 1)

    def estimate(self, n_images: int) -> dict[str, Any] | None:
        return projection.estimate(self.secure.graph, n_images, self.cap, self.cfg.mode)

    def run(self, todo: list, log: Any, say: Any) -> None:  # noqa: ANN401
        """Every image of ``todo`` once; records appended to ``log`` as they arrive."""
        bar = Progress(len(todo))
        t0 = time.monotonic()

        def on_record(rec: dict[str, Any], ep: str | None) -> None:
            if ep is not None and "error" not in rec:
                rec["endpoint"] = ep
            log.append(rec)
            if "error" in rec:
                say(bar.step(f"skipped {rec['id']}: {rec['error']}"))
            elif "secure_error" in rec:  # a result (overflow, out of range), not a bad row
                say(bar.step(f"secure failure {rec['id']}: {rec['secure_error']}"))
            else:
                d = float(np.max(np.abs(np.subtract(rec["secure"], rec["plain"]))))
                where = f" @ {ep}" if ep else ""
                say(bar.step(f"{rec['id']}{where}: max |secure - plain| = {d:.2e}"))

        try:
            dispatch(
                todo,
                self.engine.submit,
                cap=self.engine.cap,
                pool=self.pool,
                retries=self.cfg.retries,
                on_record=on_record,
                say=say,
                outcome=self.engine.outcome,
                stop=self.engine.stop,
            )
        finally:
            self.run_stats = {
                "images": bar.done,
                "elapsed_s": time.monotonic() - t0,
                "sessions": self.engine.cap,
            }
            self.engine.close()

    def projection(self, records: list[dict[str, Any]], n_images: int) -> dict[str, Any]:
        """The report's projection section: the estimate and what was measured."""
        left = n_images - len(records)  # every record is a finished image, failed or not
        k = self.cfg.per_endpoint
        return {
            "estimate": self.estimate(n_images),
            "measured": projection.measured(records, k, n_images, left, self.run_stats),
        }
