"""Hand-built float IR graphs and a float64 evaluator of the float IR for compiler tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

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


def _t(a) -> torch.Tensor:  # noqa: ANN001
    return torch.as_tensor(np.asarray(a, np.float64))


def float_eval(g: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float64 semantics of the float IR ops used by the graphs above."""
    env: dict[str, torch.Tensor] = {}
    for n in g.nodes:
        a = n.attrs
        ins = [env[i] for i in n.inputs]
        if n.op == "input":
            v = _t(x)
        elif n.op in ("weight", "const"):
            v = _t(g.params[a["key"]])
        elif n.op == "conv2d":
            pt, pl, pb, pr = a["pads"]
            xi = F.pad(ins[0], (pl, pr, pt, pb))
            v = F.conv2d(xi, ins[1], ins[2] if len(ins) == 3 else None, a["strides"], 0,
                         a["dilations"], a["group"])  # fmt: skip
        elif n.op == "batchnorm":
            xx, gm, bt, mu, var = ins
            sh = (1, -1, 1, 1)
            v = (xx - mu.reshape(sh)) / torch.sqrt(var.reshape(sh) + a["epsilon"])
            v = v * gm.reshape(sh) + bt.reshape(sh)
        elif n.op == "relu":
            v = torch.relu(ins[0])
        elif n.op == "clip":
            v = torch.clamp(ins[0], a["min"], a["max"])
        elif n.op == "maxpool":
            pt, pl, pb, pr = a["pads"]
            xi = F.pad(ins[0], (pl, pr, pt, pb), value=-np.inf)
            v = F.max_pool2d(xi, a["kernel"], a["strides"])
        elif n.op == "concat":
            v = torch.cat(ins, dim=a["axis"])
        elif n.op == "avgpool":
            pt, pl, _, _ = a["pads"]
            v = F.avg_pool2d(ins[0], a["kernel"], a["strides"], (pt, pl),
                             count_include_pad=bool(a["count_include_pad"]))  # fmt: skip
        elif n.op == "leaky_relu":
            v = F.leaky_relu(ins[0], a["alpha"])
        elif n.op == "global_avgpool":
            v = ins[0].mean(dim=(2, 3), keepdim=True)
        elif n.op == "flatten":
            v = ins[0].reshape(ins[0].shape[0], -1)
        elif n.op == "gemm":
            v = ins[0] @ ins[1] + (ins[2] if len(ins) == 3 else 0)
        elif n.op == "add":
            v = ins[0] + ins[1]
        elif n.op == "mul":
            v = ins[0] * ins[1]
        elif n.op == "sigmoid":
            v = torch.sigmoid(ins[0])
        else:
            raise NotImplementedError(n.op)
        env[n.name] = v
    return {o: env[o].numpy() for o in g.outputs}


def densenet121_ir(size: int = 224, classes: int = 14, seed: int = 0) -> Graph:
    """DenseNet-121 (blocks 6-12-24-16, growth 32) as a float IR with random weights.

    Used while no ONNX model is at hand: the structure (and so the ReLU count and the
    121 BNs) is the torchvision/CheXNet one; weights are He-scaled random numbers.
    """
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 3, size, size]}, name="x")

    def conv(x: str, cin: int, cout: int, k: int, stride: int, pad: int, name: str) -> str:
        w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        wn = g.add_param(name + ".weight", w)
        return g.add("conv2d", [x, wn], {"strides": [stride] * 2, "pads": [pad] * 4}, name=name)

    def bn_relu(x: str, c: int, name: str) -> str:
        return g.add("relu", [_bn(g, x, c, rng, name)], name=name + "_relu")

    y = conv(x, 3, 64, 7, 2, 3, "conv0")
    y = bn_relu(y, 64, "norm0")
    y = g.add("maxpool", [y], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    c = 64
    for bi, layers in enumerate((6, 12, 24, 16), 1):
        feats = [y]
        for li in range(1, layers + 1):
            p = f"b{bi}l{li}"
            cat = feats[0] if len(feats) == 1 else g.add("concat", feats, {"axis": 1})
            h = bn_relu(cat, c + 32 * (li - 1), p + ".norm1")
            h = conv(h, c + 32 * (li - 1), 128, 1, 1, 0, p + ".conv1")
            h = bn_relu(h, 128, p + ".norm2")
            feats.append(conv(h, 128, 32, 3, 1, 1, p + ".conv2"))
        y = g.add("concat", feats, {"axis": 1})
        c += 32 * layers
        if bi < 4:
            h = bn_relu(y, c, f"t{bi}.norm")
            h = conv(h, c, c // 2, 1, 1, 0, f"t{bi}.conv")
            c //= 2
            y = g.add("avgpool", [h], {"kernel": [2, 2], "strides": [2, 2]}, name=f"t{bi}.pool")
    y = bn_relu(y, c, "norm5")
    y = g.add("global_avgpool", [y])
    y = g.add("flatten", [y])
    fw = g.add_param("classifier.w", rng.normal(0, 1 / np.sqrt(c), (c, classes)).astype(np.float32))
    fb = g.add_param("classifier.b", np.zeros(classes, np.float32))
    y = g.add("gemm", [y, fw, fb], name="classifier")
    g.outputs = [g.add("sigmoid", [y], name="prob")]
    return g
