"""``twofold eval --engine ray``: every image is one Ray task (preprocess, one 2PC client session
against the vendor, the plaintext and simulation oracles), returning its record to the driver.

What travels, and where it lives:

* The driver reads the ONNX model and every file of the bundle directory it was given (what
  ``--engine local`` reads; 2PC sessions use only the client part) and puts them into the Ray
  object store **once**, as bytes. A worker that lacks them (first task of a process) fetches
  them, writes them under ``$TMPDIR/twofold-ray-<digest>/`` (mode 0700, written to a temporary
  name and renamed, so concurrent workers of one machine never see a half-written copy), and
  keeps the loaded engines for the next task. No shared filesystem is needed; only twofold
  (``pip install twofold[ray]``, the same version) must be installed on every Ray node.
* Each task carries its image file's bytes (read by the driver), written to a per-task
  temporary file with the original name, so decoders see the same suffix; error messages name
  the original path.
* The task never raises: it returns an outcome of :func:`.dispatch.attempt` (``ok`` record,
  ``transient`` or ``fatal`` message). Ray's own task retries are off (``max_retries=0``): the
  driver retries transient failures on another endpoint; a lost worker or node (Ray system
  error) counts as transient.

Without ``--ray-address`` the driver starts a local Ray instance (``num_cpus`` = ``--jobs`` or
the machine's CPUs, no dashboard) and shuts it down at the end; with it, it joins that cluster
(``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the others).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from .engines import EngineError

RAY_MISSING = "--engine ray needs Ray: pip install 'twofold[ray]' (or pip install ray)"
_ENGINES: dict[str, tuple[Any, Any]] = {}  # per worker process: run key -> engines


def _files(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _digest(spec: dict[str, dict[str, bytes]]) -> str:
    h = hashlib.sha256()
    for part in sorted(spec):
        for name, data in sorted(spec[part].items()):
            h.update(f"{part}/{name}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def _materialize(key: str, spec: dict[str, dict[str, bytes]]) -> Path:
    """The shipped files under a per-digest directory of this machine (atomic, idempotent)."""
    root = Path(tempfile.gettempdir()) / f"twofold-ray-{key[:24]}"
    if root.is_dir():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=f".twofold-ray-{key[:8]}-", dir=root.parent))
    for part, files in spec.items():
        for name, data in files.items():
            p = tmp / part / name
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    try:
        os.rename(tmp, root)
    except OSError:  # another worker of this machine won the race: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _engines(key: str, box: list, oracle: bool, conn: tuple[dict, dict]) -> tuple[Any, Any]:
    """(Plaintext, SecureEngines) of the shipped model and bundle, built once per process and
    run settings (``conn``: connection options and per-endpoint pins)."""
    run = hashlib.sha256(
        repr((key, oracle, sorted(conn[0].items()), sorted(conn[1].items()))).encode()
    ).hexdigest()
    if run not in _ENGINES:
        import ray

        from .engines import Plaintext, Simulate
        from .execute import SecureEngines

        root = _materialize(key, ray.get(box[0]))
        model = next((root / "model").iterdir())
        sim = Simulate(root / "bundle") if oracle else None
        _ENGINES[run] = (Plaintext(model), SecureEngines(sim, root / "bundle", *conn))
    return _ENGINES[run]


def evaluate_task(
    key: str,
    box: list,
    sample: Any,  # noqa: ANN401
    data: bytes | None,
    endpoint: str | None,
    conn: tuple[dict, dict],
    oracle: bool,
) -> tuple[str, Any]:
    """The Ray task body: one image → outcome (runs on a worker, maybe another machine)."""
    from .dispatch import attempt
    from .runner import evaluate_image

    try:
        plain, engines = _engines(key, box, oracle, conn)
        secure, sim = engines(endpoint), engines.sim
    except Exception as e:  # noqa: BLE001 - a worker that cannot load the bundle is fatal
        return "fatal", f"Ray worker cannot load the shipped model/bundle: {type(e).__name__}: {e}"
    if data is None:  # the driver could not read it: let the decoder report the same error
        return attempt(evaluate_image, sample, plain, secure, sim, True)
    with tempfile.TemporaryDirectory(prefix="img-", dir=engines.bundle.parent) as td:
        local = Path(td) / Path(sample.path).name
        local.write_bytes(data)
        kind, out = attempt(evaluate_image, replace(sample, path=local), plain, secure, sim, True)
    orig = str(sample.path)
    if kind != "ok":
        return kind, out.replace(str(local), orig)
    if "error" in out:
        out["error"] = out["error"].replace(str(local), orig)
    return kind, out


def _token_auth_if_available() -> None:
    """Joining a cluster: use Ray's token authentication when a token is at hand.

    ``ray start --head`` (Ray >= 2.5x) enables token auth and saves the token to
    ``~/.ray/auth_token``, but a driver joining with ``ray.init(address=...)`` sends it only
    when ``RAY_AUTH_MODE=token``. Set it (never unset or weaken it) when a token is available.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    have = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if have or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


class RayEngine:
    """Submit images as Ray tasks; ``outcome`` maps Ray's failures onto transient/fatal."""

    def __init__(
        self,
        model: Path,
        bundle: Path,
        address: str | None,
        jobs: int | None,
        conn: tuple[dict, dict],
        oracle: bool,
    ) -> None:
        if address:
            _token_auth_if_available()  # before Ray reads its configuration at import
        try:
            import ray
        except ImportError:
            raise EngineError(RAY_MISSING) from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(
                        address="local",
                        num_cpus=jobs or os.cpu_count() or 1,
                        include_dashboard=False,
                        **kw,
                    )
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"at {address}" if address else "(local instance)"
                raise EngineError(f"cannot start or join Ray {where}: {e}") from None
            self.started = True
        self.address = address or "local"
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.cap = self.cpus
        spec = {"model": _files(Path(model)), "bundle": _files(Path(bundle))}
        self.key = _digest(spec)
        self.box = [ray.put(spec)]  # in a list: workers fetch it only on a cache miss
        self.conn, self.oracle = conn, oracle
        self.task = ray.remote(num_cpus=1, max_retries=0)(evaluate_task)
        self._refs: dict[Future, Any] = {}  # the tasks in flight, for stop()

    def describe(self) -> str:
        return f"Ray {self.address}: {self.cpus} CPU(s), {self.cap} task(s) at once"

    def submit(self, s: Any, endpoint: str | None) -> Future:  # noqa: ANN401
        try:
            data: bytes | None = Path(s.path).read_bytes()
        except OSError:
            data = None
        ref = self.task.remote(self.key, self.box, s, data, endpoint, self.conn, self.oracle)
        f = ref.future()
        self._refs[f] = ref
        f.add_done_callback(lambda done: self._refs.pop(done, None))
        return f

    def stop(self) -> None:
        """End the tasks in flight (their workers are killed, so are their 2PC sessions)."""
        for ref in list(self._refs.values()):
            with contextlib.suppress(Exception):  # already finished, or Ray going away
                self.ray.cancel(ref, force=True)

    def outcome(self, f: Future) -> tuple[str, Any]:
        err = self.ray.exceptions
        try:
            return f.result()
        except err.RayTaskError as e:  # the task body raised: a bug, not the endpoint
            last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            return "fatal", f"Ray task failed: {last}"
        except err.RayError as e:  # a worker or node was lost: try again elsewhere
            return "transient", f"Ray: {type(e).__name__}: {e}"

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
