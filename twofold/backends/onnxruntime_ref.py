"""onnxruntime as the independent float oracle the float reference is checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_onnxruntime(path: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ONNX model ``path`` on CPU; returns ``{output name: array}``.

    Graph optimisations are off so onnxruntime computes the model as written.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    missing = [i.name for i in sess.get_inputs() if i.name not in inputs]
    if missing:
        raise ValueError(f"{Path(path).name}: no value for input(s) {missing}")
    feed = {i.name: np.asarray(inputs[i.name], dtype=np.float32) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed), strict=True))
