"""The two sides of an evaluation: plaintext (onnxruntime on the original ONNX) and secure
(the cleartext fixed-point simulation of the compiled bundle, or a real two-party run).

Each engine maps one preprocessed image to ``Inference``: the model's probability vector
(after the output function, e.g. sigmoid) and what it cost.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class EngineError(ValueError):
    """An engine cannot be set up (bad model, bad bundle, mode not available)."""


class SecureFailure(ArithmeticError):
    """The secure run of one image gave no trustworthy output (e.g. flagged ``valid: false``
    with ``overflow_at``): a result of the evaluation, reported, not a reason to stop."""


@dataclass
class Inference:
    """Probabilities (flattened model output) and per-image cost figures."""

    values: np.ndarray
    time_s: float
    cost: dict[str, Any] = field(default_factory=dict)


def file_digest(path: Path) -> str:
    """SHA-256 of a file (identity of a model/bundle in the results header)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Plaintext:
    """onnxruntime (CPU, one thread) on the original ONNX model, float32."""

    def __init__(self, model: str | Path) -> None:
        import onnxruntime as ort

        self.path = Path(model)
        if not self.path.is_file():
            raise EngineError(f"ONNX model {self.path} does not exist")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        try:
            self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"onnxruntime cannot load {self.path}: {e}") from None
        ins = self.sess.get_inputs()
        if len(ins) != 1:
            raise EngineError(f"{self.path} has {len(ins)} inputs; one image input is supported")
        self.input_name = ins[0].name
        self.input_shape = list(ins[0].shape)  # ints, or names/None for dynamic axes
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: np.ndarray, output: str | None = None) -> Inference:
        name = output if output in self.output_names else self.output_names[0]
        t0 = time.perf_counter()
        (y,) = self.sess.run([name], {self.input_name: np.asarray(x, np.float32)})
        dt = time.perf_counter() - t0
        return Inference(np.asarray(y, np.float64).ravel(), dt)


class _Program:
    """What eval needs from one part of a bundle: input meta, labels, the single output."""

    def __init__(self, bundle: str | Path, weights: bool, command: str) -> None:
        from ..compiler.bundle import BundleError, read_bundle
        from ..ir.bundle import read_manifest, resolve

        self.path = Path(bundle)
        try:
            self.graph = read_bundle(self.path, weights=weights, command=command)
            self.manifest = read_manifest(
                resolve(self.path, "server" if weights else "client", command)
            )
        except BundleError as e:
            raise EngineError(str(e)) from None
        self.meta = self.graph.meta.get("input", {})
        self.labels = list(self.graph.meta.get("labels") or [])
        outs = list(self.graph.outputs)
        if len(outs) != 1:
            raise EngineError(f"{self.path}: the model has {len(outs)} outputs; eval needs one")
        self.output = outs[0]
        self.input_name = self.meta.get("name") or self.graph.inputs()[0].attrs["name"]


class Simulate(_Program):
    """The compiled server bundle in the cleartext fixed-point backend (bit-exact oracle of 2PC)."""

    mode = "simulate"

    def __init__(self, bundle: str | Path) -> None:
        super().__init__(bundle, weights=True, command="eval --mode simulate")

    def digest(self) -> str:
        """The program and its weights (the manifest's digests, independent of file layout)."""
        m = self.manifest
        return hashlib.sha256(f"{m['program_hash']}:{m['weights_sha256']}".encode()).hexdigest()

    def __call__(self, x: np.ndarray, measure_memory: bool = True) -> Inference:
        from ..backends.cleartext import simulate

        if measure_memory:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            doc = simulate(self.graph, x)
            dt = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] if measure_memory else None
        finally:
            if measure_memory:
                tracemalloc.stop()
        return Inference(_probabilities(doc), dt, {"peak_mem_bytes": peak})


def _probabilities(doc: dict[str, Any]) -> np.ndarray:
    """The single output of the shared ``{"outputs": {NAME: {"shape","values"}}}`` schema;
    :class:`SecureFailure` for a flagged result (it carries no probabilities)."""
    if doc.get("valid") is False and "outputs" not in doc:
        at = doc.get("overflow_at") or "an unnamed node"
        raise SecureFailure(f"output flagged invalid: overflow at {at}")
    outs = doc["outputs"]
    if len(outs) != 1:
        raise EngineError(f"the model has {len(outs)} outputs; evaluation needs exactly one")
    (out,) = outs.values()
    if doc.get("valid") is False or out.get("valid") is False:
        at = out.get("overflow_at") or doc.get("overflow_at") or "an unnamed node"
        raise SecureFailure(f"output flagged invalid: overflow at {at}")
    return np.asarray(out["values"], np.float64).ravel()


class Sessions:
    """The 2PC sessions of this process in flight, so that a stop (Ctrl-C) ends them at once.

    Invariant: after :meth:`stop`, every session that was open is cancelled (its connection
    shut down: its thread gets an error within moments and the server sees the client go) and
    a session opened later is cancelled before it connects.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Any] = set()
        self.stopped = False

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        """A :class:`~twofold.runtime.net.Cancel` for one session, registered while it runs."""
        from ..runtime.net import Cancel

        c = Cancel()
        with self._lock:
            if self.stopped:
                c.cancel()
            self._live.add(c)
        try:
            yield c
        finally:
            with self._lock:
                self._live.discard(c)

    def stop(self) -> None:
        """Cancel every session in flight, and every later one."""
        with self._lock:
            self.stopped = True
            for c in self._live:
                c.cancel()


CONNECT_OPTIONS = frozenset(
    {"tls_ca", "server_fingerprint", "token", "insecure_plaintext", "timeout"}
)


class TwoParty(_Program):
    """The client side of a real two-party run per image against ``twofold run server``.

    Needs only the client bundle. Secure by the runtime's protocols (DESIGN.md §5); cost is
    what the client measured (time, bytes both ways, rounds, peak RSS) plus the server's own
    summary.
    """

    mode = "2pc"

    def __init__(
        self,
        bundle: str | Path,
        connect: str | None,
        connect_options: dict[str, Any] | None = None,
        connect_timeout: float = 10.0,
        sessions: Sessions | None = None,
    ) -> None:
        """``connect_options``: the keyword arguments of ``run_client`` that are set, among
        ``tls_ca``, ``server_fingerprint``, ``token``, ``insecure_plaintext``, ``timeout``;
        ``connect_timeout``: how long a refused connection is retried (eval's endpoint pool
        keeps it short and backs off instead); ``sessions``: where its sessions in flight are
        registered, so that :meth:`Sessions.stop` ends them (shared by the engines of a run)."""
        super().__init__(bundle, weights=False, command="eval --mode 2pc")
        if not connect:
            raise EngineError("--mode 2pc needs --connect HOST:PORT (a `twofold run server`)")
        try:
            from ..runtime.runner import run_client
        except ImportError as e:
            raise EngineError(f"--mode 2pc is not available: {e}") from None
        host, sep, port = connect.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise EngineError(f"--connect must be HOST:PORT, got {connect!r}")
        self.host, self.port = host.strip("[]"), int(port)
        self.bundle = str(bundle)
        opts = dict(connect_options or {})
        unknown = set(opts) - CONNECT_OPTIONS
        if unknown:
            raise EngineError(f"unknown connection option(s) {sorted(unknown)}")
        if not any(opts.get(k) for k in ("insecure_plaintext", "tls_ca", "server_fingerprint")):
            raise EngineError(
                "--mode 2pc needs the server authenticated: pass --server-fingerprint sha256:... "
                "(printed by `twofold run server`) or --tls-ca CA.pem, or --insecure-plaintext"
            )
        self.connect_options = opts
        self.connect_timeout = connect_timeout
        self._run_client = run_client
        self.sessions = sessions or Sessions()

    def digest(self) -> str:
        """The public program (the client holds no weights)."""
        return str(self.manifest["program_hash"])

    def __call__(self, x: np.ndarray, input_name: str) -> Inference:
        import io

        from ..runtime.errors import RuntimeProtocolError

        t0 = time.perf_counter()
        try:
            with self.sessions.open() as cancel:
                doc = self._run_client(
                    self.bundle,
                    self.host,
                    self.port,
                    {input_name: x},
                    **self.connect_options,
                    connect_timeout=self.connect_timeout,
                    progress=False,
                    out=io.StringIO(),
                    cancel=cancel,
                )
        except (RuntimeProtocolError, OSError) as e:
            raise EngineError(f"two-party run with {self.host}:{self.port} failed: {e}") from None
        dt = time.perf_counter() - t0
        c = doc.get("cost", {})
        srv = c.get("server", {})
        cost = {
            "comm_bytes": c.get("bytes_sent", 0) + c.get("bytes_recv", 0),
            "rounds": c.get("rounds"),
            "peak_mem_bytes": c.get("peak_rss_mb", 0) * 2**20 or None,
            "server_time_s": srv.get("s"),
            "server_peak_mem_bytes": srv.get("peak_rss_mb", 0) * 2**20 or None,
        }
        return Inference(_probabilities(doc), dt, cost)
