"""The two sides of an evaluation: plaintext (onnxruntime on the original ONNX) and secure
(the cleartext fixed-point simulation of the compiled bundle, or a real two-party run).

Each engine maps one preprocessed image to ``Inference``: the model's probability vector
(after the output function, e.g. sigmoid) and what it cost.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class EngineError(ValueError):
    """An engine cannot be set up (bad model, bad bundle, mode not available)."""


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
        self.output_names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, x: np.ndarray, output: str | None = None) -> Inference:
        name = output if output in self.output_names else self.output_names[0]
        t0 = time.perf_counter()
        (y,) = self.sess.run([name], {self.input_name: np.asarray(x, np.float32)})
        dt = time.perf_counter() - t0
        return Inference(np.asarray(y, np.float64).ravel(), dt)


class Simulate:
    """The compiled bundle in the cleartext fixed-point backend (bit-exact oracle of 2PC)."""

    mode = "simulate"

    def __init__(self, bundle: str | Path) -> None:
        from ..compiler.bundle import BundleError, read_bundle

        self.path = Path(bundle)
        try:
            self.graph = read_bundle(self.path)
        except BundleError as e:
            raise EngineError(str(e)) from None
        self.meta = self.graph.meta.get("input", {})
        self.labels = list(self.graph.meta.get("labels") or [])
        outs = list(self.graph.outputs)
        if len(outs) != 1:
            raise EngineError(f"{self.path}: the model has {len(outs)} outputs; eval needs one")
        self.output = outs[0]

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in ("ir.json", "weights.npz"):
            h.update(file_digest(self.path / name).encode())
        return h.hexdigest()

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
    """The single output of the shared ``{"outputs": {NAME: {"shape","values"}}}`` schema."""
    outs = doc["outputs"]
    if len(outs) != 1:
        raise EngineError(f"the model has {len(outs)} outputs; evaluation needs exactly one")
    (out,) = outs.values()
    return np.asarray(out["values"], np.float64).ravel()


def two_party(bundle: str | Path, connect: str | None, jobs: int) -> Any:
    """The client side of real two-party runs (``--mode 2pc``)."""
    if not connect:
        raise EngineError("--mode 2pc needs --connect HOST:PORT (a running `twofold run` server)")
    raise EngineError(
        "--mode 2pc is not available yet: the two-party client API has not landed in "
        "twofold.runtime; use --mode simulate (bit-exact to 2PC by construction)"
    )
