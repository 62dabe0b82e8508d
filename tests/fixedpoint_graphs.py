"""Hand-built float IR graphs and a float64 evaluator of the float IR for compiler tests."""

from __future__ import annotations

import numpy as np

from twofold.ir import Graph


def _bn(g: Graph, x: str, c: int, rng, name: str) -> str:
    ps = [
        g.add_param(f"{name}.{k}", v.astype(np.float32))
        for k, v in [
            ("gamma", rng.uniform(0.5, 1.5, c)),
            ("beta", rng.normal(0, 0.1, c)),
            ("mean", rng.normal(0, 0.1, c)),
            ("var", rng.uniform(0.5, 1.5, c)),
        ]
    ]
    return g.add("batchnorm", [x, *ps], name=name)


def small_cnn(seed: int = 0, size: int = 16) -> Graph:
    """conv-BN(folded)-ReLU-maxpool, pre-activation BN(affine), ReLU6, avg pools, FC, sigmoid."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 3, size, size]}, name="x")
    w = g.add_param("c1.w", rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32))
    b = g.add_param("c1.b", rng.normal(0, 0.1, 8).astype(np.float32))
    y = g.add("conv2d", [x, w, b], {"strides": [1, 1], "pads": [1, 1, 1, 1]}, name="c1")
    y = _bn(g, y, 8, rng, "bn1")
    r = g.add("relu", [y], name="r1")
    p = g.add("maxpool", [r], {"kernel": [2, 2], "strides": [2, 2]}, name="pool1")
    q = _bn(g, p, 8, rng, "bn2")
    q = g.add("clip", [q], {"min": 0.0, "max": 6.0}, name="relu6")
    w2 = g.add_param("c2.w", rng.normal(0, 0.2, (8, 1, 3, 3)).astype(np.float32))
    d = g.add("conv2d", [q, w2], {"strides": [1, 1], "pads": [1, 1, 1, 1], "group": 8}, name="dw")
    s = g.add("add", [d, q], name="res")
    a = g.add("avgpool", [s], {"kernel": [2, 2], "strides": [2, 2]}, name="avg")
    ga = g.add("global_avgpool", [a], name="gap")
    f = g.add("flatten", [ga], name="flat")
    fw = g.add_param("fc.w", rng.normal(0, 0.5, (8, 5)).astype(np.float32))
    fb = g.add_param("fc.b", rng.normal(0, 0.1, 5).astype(np.float32))
    o = g.add("gemm", [f, fw, fb], name="fc")
    g.outputs = [g.add("sigmoid", [o], name="prob")]
    return g


def activations(seed: int = 0, size: int = 8) -> Graph:
    """LeakyReLU, clip with non-zero bounds, avgpool excluding padding, scalar multiply."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 2, size, size]}, name="x")
    w = g.add_param("c.w", rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32))
    y = g.add("conv2d", [x, w], {"strides": [1, 1], "pads": [1, 1, 1, 1]}, name="c")
    y = g.add("leaky_relu", [y], {"alpha": 0.1}, name="leaky")
    y = g.add("clip", [y], {"min": -0.5, "max": 1.5}, name="clip")
    half = g.add_param("half", np.array(0.75, np.float32), public=True)
    y = g.add("mul", [y, half], name="scaled")
    y = g.add("avgpool", [y], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                               "count_include_pad": 0}, name="avg")  # fmt: skip
    g.outputs = [g.add("flatten", [y], name="flat")]
    return g
