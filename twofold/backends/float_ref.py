"""Float reference: numpy semantics of every float IR op (the meaning the compiler preserves).

Convolution is im2col + one BLAS matrix product per group (depthwise: k² shifted
multiply-adds), so DenseNet-121 at 224² runs in seconds. Checked against onnxruntime
(tests/test_float_ref.py). Window ops follow ONNX: pads [top, left, bottom, right],
``ceil_mode`` windows that start in the right padding are dropped, max padding never wins.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ir.lut import spec as lut_spec
from ..ir.ops import pool_out_dim, slice_index
from .interpreter import Interpreter


def _out_hw(node: Node, h: int, w: int, kernel: list[int]) -> tuple[int, int]:
    a = node.attrs
    pt, pl, pb, pr = a["pads"]
    dh, dw = a.get("dilations", [1, 1])
    ceil = bool(a.get("ceil_mode", 0))
    return (
        pool_out_dim(h, kernel[0], a["strides"][0], pt, pb, dh, ceil),
        pool_out_dim(w, kernel[1], a["strides"][1], pl, pr, dw, ceil),
    )


def _geometry(node: Node, h: int, w: int, kernel: list[int]) -> tuple[int, int, int, int]:
    """(oh, ow, extra bottom, extra right): ceil-mode windows may reach past the pads."""
    a = node.attrs
    oh, ow = _out_hw(node, h, w, kernel)
    pt, pl, pb, pr = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a.get("dilations", [1, 1])
    need_h = (oh - 1) * sh + dh * (kernel[0] - 1) + 1
    need_w = (ow - 1) * sw + dw * (kernel[1] - 1) + 1
    return oh, ow, max(0, need_h - (h + pt + pb)), max(0, need_w - (w + pl + pr))


def _padded(
    x: np.ndarray, node: Node, kernel: list[int], fill: float, overhang: float | None = None
) -> tuple[np.ndarray, int, int]:
    """``x`` [N,C,H,W] padded with ``fill`` by the node's pads, and with ``overhang``
    (default ``fill``) where ceil-mode windows reach past them."""
    _, _, h, w = x.shape
    oh, ow, eb, er = _geometry(node, h, w, kernel)
    pt, pl, pb, pr = node.attrs["pads"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    if eb or er:
        more = fill if overhang is None else overhang
        xp = np.pad(xp, ((0, 0), (0, 0), (0, eb), (0, er)), constant_values=more)
    return xp, oh, ow


def _taps(xp: np.ndarray, node: Node, kernel: list[int], oh: int, ow: int):  # noqa: ANN202
    """Yield ((i, j), view [N,C,oh,ow]) for each kernel position (strided, dilated)."""
    sh, sw = node.attrs["strides"]
    dh, dw = node.attrs.get("dilations", [1, 1])
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, c = i * dh, j * dw
            yield (i, j), xp[:, :, r : r + sh * (oh - 1) + 1 : sh, c : c + sw * (ow - 1) + 1 : sw]


class FloatReference(Interpreter):
    """Runs a float IR graph in numpy ``dtype`` (float32 by default, float64 for oracles)."""

    def __init__(
        self,
        graph: Graph,
        params: dict[str, np.ndarray] | None = None,
        dtype: type = np.float32,
        keep_all: bool = False,
    ) -> None:
        super().__init__(graph, params, keep_all)
        self.dtype = np.dtype(dtype)

    def convert_input(self, node: Node, value: np.ndarray) -> np.ndarray:
        return super().convert_input(node, value).astype(self.dtype, copy=False)

    def param(self, key: str) -> np.ndarray:
        return np.asarray(super().param(key), dtype=self.dtype)

    # ------------------------------------------------------------- linear
    def op_conv2d(self, node: Node, x, w, b=None):  # noqa: ANN001, ANN201
        kernel = list(w.shape[2:])
        xp, oh, ow = _padded(x, node, kernel, 0.0)
        n, c = x.shape[:2]
        g = node.attrs["group"]
        o = w.shape[0]
        if g == c and w.shape[1] == 1 and o == c:  # depthwise: k² multiply-adds
            y = np.zeros((n, o, oh, ow), self.dtype)
            for (i, j), v in _taps(xp, node, kernel, oh, ow):
                y += v * w[:, 0, i, j][None, :, None, None]
        else:
            cols = np.empty((n, c, kernel[0], kernel[1], oh, ow), self.dtype)
            for (i, j), v in _taps(xp, node, kernel, oh, ow):
                cols[:, :, i, j] = v
            cg, og = c // g, o // g
            cols = cols.reshape(n, g, cg * kernel[0] * kernel[1], oh * ow)
            wg = w.reshape(g, og, cg * kernel[0] * kernel[1])
            y = np.matmul(wg[None], cols).reshape(n, o, oh, ow)
        if b is not None:
            y = y + b[None, :, None, None]
        return y

    def op_gemm(self, node: Node, a, b, c=None):  # noqa: ANN001, ANN201
        y = a @ b
        return y if c is None else y + c

    def op_batchnorm(self, node: Node, x, gamma, beta, mean, var):  # noqa: ANN001, ANN201
        k = gamma / np.sqrt(var + self.dtype.type(node.attrs["epsilon"]))
        sh = (1, -1) + (1,) * (x.ndim - 2)
        return x * k.reshape(sh) + (beta - mean * k).reshape(sh)

    def op_affine(self, node: Node, x, mul, add):  # noqa: ANN001, ANN201
        sh = (1, -1) + (1,) * (x.ndim - 2)
        return x * mul.reshape(sh) + add.reshape(sh)

    def op_sign_affine(self, node: Node, x, sign, add):  # noqa: ANN001, ANN201
        return self.op_affine(node, x, sign, add)

    def op_add(self, node: Node, a, b):  # noqa: ANN001, ANN201
        return a + b

    def op_sub(self, node: Node, a, b):  # noqa: ANN001, ANN201
        return a - b

    def op_mul(self, node: Node, a, b):  # noqa: ANN001, ANN201
        return a * b

    def op_mul_const(self, node: Node, x):  # noqa: ANN001, ANN201
        v = node.attrs["value"] * 2.0 ** -node.attrs.get("scale", 0)
        return x * self.dtype.type(v)

    # ------------------------------------------------------------- non-linear
    def op_relu(self, node: Node, x):  # noqa: ANN001, ANN201
        return np.maximum(x, 0)

    def op_clip(self, node: Node, x):  # noqa: ANN001, ANN201
        lo, hi = node.attrs["min"], node.attrs["max"]
        return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(
            self.dtype, copy=False
        )

    def op_leaky_relu(self, node: Node, x):  # noqa: ANN001, ANN201
        return np.where(x >= 0, x, x * self.dtype.type(node.attrs["alpha"]))

    def op_sigmoid(self, node: Node, x):  # noqa: ANN001, ANN201
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(self.dtype)

    def op_softmax(self, node: Node, x):  # noqa: ANN001, ANN201
        ax = node.attrs["axis"]
        e = np.exp(x.astype(np.float64) - x.max(axis=ax, keepdims=True))
        return (e / e.sum(axis=ax, keepdims=True)).astype(self.dtype)

    def op_lut(self, node: Node, x):  # noqa: ANN001, ANN201
        """The function itself (the meaning the table approximates, ir/lut.py)."""
        f = lut_spec(node.attrs["fn"]).f
        return f(x.astype(np.float64), float(node.attrs["alpha"])).astype(self.dtype)

    def op_reciprocal(self, node: Node, x):  # noqa: ANN001, ANN201
        """1/max(x, floor): the meaning ir/newton.py approximates."""
        v = np.maximum(x.astype(np.float64), float(node.attrs["floor"]))
        return (1.0 / v).astype(self.dtype)

    def op_rsqrt(self, node: Node, x):  # noqa: ANN001, ANN201
        v = np.maximum(x.astype(np.float64), float(node.attrs["floor"]))
        return (1.0 / np.sqrt(v)).astype(self.dtype)

    def op_log(self, node: Node, x):  # noqa: ANN001, ANN201
        v = np.maximum(x.astype(np.float64), float(node.attrs["floor"]))
        return np.log(v).astype(self.dtype)

    def op_lrn(self, node: Node, x):  # noqa: ANN001, ANN201
        """ONNX LRN: x / (bias + alpha/size · Σ x² over a channel window)^beta."""
        a, c = node.attrs, x.shape[1]
        sq = np.pad(x.astype(np.float64) ** 2, [(0, 0), ((a["size"] - 1) // 2, a["size"] // 2)]
                    + [(0, 0)] * (x.ndim - 2))  # fmt: skip
        win = sum(sq[:, i : i + c] for i in range(a["size"]))
        return (x / (a["bias"] + a["alpha"] / a["size"] * win) ** a["beta"]).astype(self.dtype)

    def op_log_softmax(self, node: Node, x):  # noqa: ANN001, ANN201
        ax = node.attrs["axis"]
        z = x.astype(np.float64) - x.max(axis=ax, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=ax, keepdims=True))).astype(self.dtype)

    # ------------------------------------------------------------- pooling
    def op_maxpool(self, node: Node, x):  # noqa: ANN001, ANN201
        k = node.attrs["kernel"]
        xp, oh, ow = _padded(x, node, k, -np.inf)
        y = None
        for _, v in _taps(xp, node, k, oh, ow):
            y = v.copy() if y is None else np.maximum(y, v, out=y)
        return y

    def _window_sum(self, node: Node, x, fill: float = 0.0, overhang: float = 0.0):  # noqa: ANN001, ANN202
        k = node.attrs["kernel"]
        xp, oh, ow = _padded(x, node, k, fill, overhang)
        y = np.zeros(x.shape[:2] + (oh, ow), self.dtype)
        for _, v in _taps(xp, node, k, oh, ow):
            y += v
        return y

    def op_sumpool(self, node: Node, x):  # noqa: ANN001, ANN201
        return self._window_sum(node, x)

    def op_avgpool(self, node: Node, x):  # noqa: ANN001, ANN201
        """ONNX: the divisor counts the pads iff count_include_pad, never the ceil overhang."""
        ones = np.ones((1, 1) + x.shape[2:], self.dtype)
        fill = 1.0 if node.attrs.get("count_include_pad", 0) else 0.0
        return self._window_sum(node, x) / self._window_sum(node, ones, fill, 0.0)

    def op_global_avgpool(self, node: Node, x):  # noqa: ANN001, ANN201
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(self.dtype)

    # ------------------------------------------------------------- data movement
    def op_concat(self, node: Node, *xs):  # noqa: ANN001, ANN201
        return np.concatenate(xs, axis=node.attrs["axis"])

    def op_flatten(self, node: Node, x):  # noqa: ANN001, ANN201
        return x.reshape(node.type.shape)

    def op_reshape(self, node: Node, x):  # noqa: ANN001, ANN201
        return x.reshape(node.attrs["shape"])

    def op_transpose(self, node: Node, x):  # noqa: ANN001, ANN201
        return np.ascontiguousarray(x.transpose(node.attrs["perm"]))

    def op_pad(self, node: Node, x):  # noqa: ANN001, ANN201
        p, r = node.attrs["pads"], x.ndim
        width = [(p[i], p[i + r]) for i in range(r)]
        mode = node.attrs.get("mode", "constant")
        if mode != "constant":
            return np.pad(x, width, mode=mode)
        return np.pad(x, width, constant_values=node.attrs["value"])

    def op_slice(self, node: Node, x):  # noqa: ANN001, ANN201
        return np.ascontiguousarray(x[slice_index(x.shape, node.attrs)])

    def op_reduce_sum(self, node: Node, x):  # noqa: ANN001, ANN201
        axes = tuple(a % x.ndim for a in node.attrs["axes"])
        y = x.sum(axis=axes, keepdims=bool(node.attrs["keepdims"]), dtype=np.float64)
        return np.asarray(y, self.dtype)

    def op_max(self, node: Node, a, b):  # noqa: ANN001, ANN201
        return np.maximum(a, b)

    def op_min(self, node: Node, a, b):  # noqa: ANN001, ANN201
        return np.minimum(a, b)

    def op_abs(self, node: Node, x):  # noqa: ANN001, ANN201
        return np.abs(x)

    def op_prelu(self, node: Node, x, slope):  # noqa: ANN001, ANN201
        return np.where(x >= 0, x, x * slope)


def run_float(
    graph: Graph, inputs: dict[str, np.ndarray], dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` with the float reference; ``{output name: array}``."""
    return FloatReference(graph, dtype=dtype).run(inputs)


class _ChannelStats(FloatReference):
    """Float reference that records, per channel (axis 1) of chosen tensors, max |value| and
    the mean value over all inputs run."""

    def __init__(self, graph: Graph, names: set[str]) -> None:
        super().__init__(graph, dtype=np.float32)  # statistics, not an oracle: float32 is ample
        self.names = names
        self.absmax: dict[str, np.ndarray] = {}
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def run_node(self, node: Node, args: list) -> np.ndarray:  # type: ignore[override]
        val = super().run_node(node, args)
        if node.name in self.names and np.ndim(val) >= 2:
            v = np.asarray(val, np.float64)
            axes = tuple(a for a in range(v.ndim) if a != 1)
            m = np.abs(v).max(axis=axes) if v.size else np.zeros(v.shape[1])
            old = self.absmax.get(node.name)
            self.absmax[node.name] = m if old is None else np.maximum(old, m)
            self.sums[node.name] = self.sums.get(node.name, 0.0) + v.sum(axis=axes)
            self.counts[node.name] = self.counts.get(node.name, 0) + v.size // v.shape[1]
        return val


def channel_stats(
    graph: Graph, inputs: list[np.ndarray], names: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(max |x|, mean x) per channel (axis 1) of the float tensors ``names`` over calibration
    inputs (each one array for the graph's single input; run in float32, summed in float64):
    what ``bn_forward`` bounds its shifts by and corrects its rounded weights with."""
    rec = _ChannelStats(graph, set(names))
    (inp,) = graph.inputs()
    for x in inputs:
        rec.run({inp.name: x})
    return {k: (rec.absmax[k], rec.sums[k] / max(1, rec.counts[k])) for k in rec.absmax}
