"""Cleartext fixed-point backend: the exact oracle for the 2PC runtime.

Executes the secure IR over Z_2^ℓ on uint64 residues with the semantics of
docs/ARCHITECTURE.md ("Fixed-point semantics"): exact integer products mod 2^ℓ
(float64-BLAS limbs, see ``exact_linalg``), ``trunc`` = arithmetic shift of the signed
value for every kind, ``relu``/``maxpool`` on signed values. A value outside the bits
the compiler assumed for it (``meta["bits"]``) raises ``FixedPointOverflow`` naming the
tensor, and says whether the ring itself may have wrapped (DESIGN.md §6: never silent
garbage).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ir import Graph, Node, lut, newton
from ..ir.ops import pool_out_dim, slice_index
from ..ir.output_function import apply_output_function, invalid_result
from ..ir.public import overflow_checked
from .exact_linalg import conv2d_exact, im2col, mask, matmul_exact, to_ring, to_signed
from .interpreter import Interpreter, InterpreterError


class FixedPointOverflow(ArithmeticError):
    """A tensor left the range the compiler sized the ring for."""


def _window_hw(node: Node, x_shape: tuple[int, ...], kernel: list[int]) -> tuple[int, int]:
    a = node.attrs
    _, _, h, w = x_shape
    dh, dw = a.get("dilations", [1, 1])
    ceil = bool(a.get("ceil_mode", 0))
    pt, pl, pb, pr = a["pads"]
    return (
        pool_out_dim(h, kernel[0], a["strides"][0], pt, pb, dh, ceil),
        pool_out_dim(w, kernel[1], a["strides"][1], pl, pr, dw, ceil),
    )


def _per_image(fn, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """``fn`` of each image of a batch [N, ...] (kernels that take one image), stacked."""
    if x.shape[0] == 1:
        return fn(x)
    return np.concatenate([fn(x[i : i + 1]) for i in range(x.shape[0])])


class Cleartext(Interpreter):
    """Interpreter of a secure IR graph. ``params`` hold signed integer parameter values."""

    def __init__(
        self,
        graph: Graph,
        params: dict[str, np.ndarray] | None = None,
        check: bool = True,
        record: bool = False,
    ) -> None:
        super().__init__(graph, params)
        self.check = check
        self.record = record
        self.observed: dict[str, tuple[float, float]] = {}
        # calibration statistics (``record``): per-channel maxima, and each input's maximum
        self.channel_hi: dict[str, np.ndarray] = {}
        self.sample_hi: dict[str, list[float]] = {}
        # the first checked ReLU whose input reached its limit (the 2PC verdict, in clear)
        self.overflow_at: str | None = None

    # ------------------------------------------------------------- driver
    def run(self, inputs: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run on float inputs (by input name, or one array); returns output residues."""
        if not isinstance(inputs, dict):
            ins = self.graph.inputs()
            if len(ins) != 1:
                raise InterpreterError(f"graph has {len(ins)} inputs; pass a dict by name")
            inputs = {ins[0].name: inputs}
        by_name = {n.attrs["name"]: n.name for n in self.graph.inputs()}
        return super().run({by_name.get(k, k): v for k, v in inputs.items()})

    def run_node(self, node: Node, args: list[Any]) -> np.ndarray:
        val = super().run_node(node, args)
        if node.op not in ("weight", "const"):
            self._observe(node, val)
        return val

    def _observe(self, node: Node, val: np.ndarray) -> None:
        if not (self.check or self.record) or val.size == 0:
            return
        s = to_signed(val, node.type.dtype.ell)
        lo, hi = int(s.min()), int(s.max())
        if self.record:
            sc = 2.0**node.type.dtype.scale
            olo, ohi = self.observed.get(node.name, (math.inf, -math.inf))
            self.observed[node.name] = (min(olo, lo / sc), max(ohi, hi / sc))
            self.sample_hi.setdefault(node.name, []).append(hi / sc)
            if s.ndim >= 2:
                ch = s.reshape(s.shape[0], s.shape[1], -1).max(axis=(0, 2)) / sc
                old = self.channel_hi.get(node.name)
                self.channel_hi[node.name] = ch if old is None else np.maximum(old, ch)
        bits = node.meta.get("bits")
        if self.check and bits is not None and self.overflow_at is None:
            limit = 1 << (bits - 1)
            if hi >= limit or lo < -limit:
                sc = 2.0**node.type.dtype.scale
                ell = node.type.dtype.ell
                rlo, rhi = node.meta.get("range", [float("nan")] * 2)
                hint = (
                    "the result is not reliable and is refused (--no-check only skips "
                    "this check: it prints the same unreliable values); recompile with "
                    "more --calibrate inputs or a larger --calibration-margin/--headroom-bits"
                )
                raise FixedPointOverflow(
                    f"fixed-point overflow at %{node.name} ({node.op}): values reach "
                    f"[{lo / sc:.6g}, {hi / sc:.6g}], outside the {bits} bits (range "
                    f"[{rlo:.4g}, {rhi:.4g}]) the compiler assumed in ring {ell}; "
                    f"{hint}"
                )

    # ------------------------------------------------------------- helpers
    def ell(self, node: Node) -> int:
        return node.type.dtype.ell

    def sig(self, node: Node, x: np.ndarray) -> np.ndarray:
        return to_signed(x, self.ell(node))

    def ring(self, node: Node, x: np.ndarray) -> np.ndarray:
        return to_ring(x, self.ell(node))

    def decode(self, name: str, value: np.ndarray) -> np.ndarray:
        """Real values of a tensor: signed residue / 2^scale."""
        t = self.graph[name].type.dtype
        return to_signed(value, t.ell).astype(np.float64) / 2.0**t.scale

    # ------------------------------------------------------------- sources
    def convert_input(self, node: Node, value: np.ndarray) -> np.ndarray:
        """The client's quantization: round(x·2^s) as a residue mod 2^ℓ."""
        x = np.asarray(super().convert_input(node, value), np.float64)
        if not np.all(np.isfinite(x)):
            raise InterpreterError(f"input {node.attrs['name']!r} has non-finite values")
        q = np.rint(x * 2.0**node.type.dtype.scale)
        if np.abs(q).max(initial=0) >= 2.0**63:
            raise FixedPointOverflow(f"input {node.attrs['name']!r} does not fit 64 bits")
        return self.ring(node, q.astype(np.int64))

    def op_weight(self, node: Node) -> np.ndarray:
        return self.ring(node, np.asarray(self.param(node.attrs["key"]), np.int64))

    op_const = op_weight

    # ------------------------------------------------------------- linear
    def op_conv2d(self, node: Node, x, w, b=None) -> np.ndarray:  # noqa: ANN001
        out_hw = tuple(node.type.shape[2:])
        sw, ell = self.sig(node, w), self.ell(node)
        y = _per_image(lambda xi: conv2d_exact(xi, sw, node.attrs, out_hw, ell), self.sig(node, x))
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
        return y & mask(self.ell(node))

    def op_gemm(self, node: Node, a, b, c=None) -> np.ndarray:  # noqa: ANN001
        y = matmul_exact(self.sig(node, a), self.sig(node, b), self.ell(node))
        if c is not None:
            y = y + c
        return y & mask(self.ell(node))

    def op_affine(self, node: Node, x, m, a) -> np.ndarray:  # noqa: ANN001
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * m.reshape(shape) + a.reshape(shape)) & mask(self.ell(node))

    def op_sign_affine(self, node: Node, x, sign, a) -> np.ndarray:  # noqa: ANN001
        """x·sign[c] + add[c] mod 2^ℓ (sign ±1: what the 2PC sign flip computes exactly)."""
        return self.op_affine(node, x, sign, a)

    def op_mul(self, node: Node, a, b) -> np.ndarray:  # noqa: ANN001
        return (a * b) & mask(self.ell(node))

    def op_mul_const(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        v = np.array(int(node.attrs["value"]), np.int64).view(np.uint64)
        return (x * v) & mask(self.ell(node))

    def op_add(self, node: Node, a, b) -> np.ndarray:  # noqa: ANN001
        return (a + b) & mask(self.ell(node))

    def op_sub(self, node: Node, a, b) -> np.ndarray:  # noqa: ANN001
        return (a - b) & mask(self.ell(node))

    # ------------------------------------------------------------- nonlinear
    def op_relu(self, node: Node, x, limit=None) -> np.ndarray:  # noqa: ANN001
        """relu(x); with a ``limit`` operand (server-private, per channel) also the overflow
        check of the 2PC program: x ≥ limit anywhere marks the result invalid."""
        sx = self.sig(node, x)
        if limit is not None and self.overflow_at is None:
            if np.any(sx >= self.sig(node, limit)):
                self.overflow_at = node.name
        return np.where(sx > 0, x, np.uint64(0))

    def op_lut(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        """The table lookup of ir/lut.py, as the 2PC protocol computes it."""
        fn, sc = node.attrs["fn"], node.type.dtype.scale
        return self.ring(node, lut.evaluate(self.sig(node, x), fn, float(node.attrs["alpha"]), sc))

    def op_reciprocal(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        """ir/newton.py's fixed-point reciprocal, as the 2PC protocol computes it."""
        return self._newton(node, x)

    def op_rsqrt(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return self._newton(node, x)

    def op_log(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return self._newton(node, x)

    def _newton(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        s_in = self.graph[node.inputs[0]].type.dtype.scale
        out = newton.evaluate(
            self.sig(node, x), node.op, self.ell(node), s_in, node.type.dtype.scale,
            float(node.attrs["floor"]),
        )  # fmt: skip
        return self.ring(node, out)

    def op_trunc(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        src = self.graph[node.inputs[0]].type.dtype.ell
        shifted = to_signed(x, src) >> np.int64(node.attrs["shift"])
        return self.ring(node, shifted)

    def op_maxpool(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        k = node.attrs["kernel"]
        out_hw = _window_hw(node, x.shape, k)
        lowest = np.iinfo(np.int64).min

        def one(xi: np.ndarray) -> np.ndarray:
            cols = im2col(
                xi, tuple(k), node.attrs["strides"], node.attrs["pads"],
                node.attrs.get("dilations", [1, 1]), out_hw, fill=lowest,
            )  # fmt: skip
            return cols.max(axis=(1, 2))[None]

        return self.ring(node, _per_image(one, self.sig(node, x)))

    def op_sumpool(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        k = node.attrs["kernel"]
        out_hw = _window_hw(node, x.shape, k)

        def one(xi: np.ndarray) -> np.ndarray:
            cols = im2col(
                xi, tuple(k), node.attrs["strides"], node.attrs["pads"],
                node.attrs.get("dilations", [1, 1]), out_hw, fill=0,
            )  # fmt: skip
            return cols.sum(axis=(1, 2))[None]

        return self.ring(node, _per_image(one, self.sig(node, x)))

    # ------------------------------------------------------------- data movement
    def op_concat(self, node: Node, *xs) -> np.ndarray:  # noqa: ANN001
        return np.concatenate(xs, axis=node.attrs["axis"])

    def op_flatten(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return x.reshape(node.type.shape)

    def op_reshape(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return x.reshape(node.type.shape)

    def op_transpose(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return np.ascontiguousarray(x.transpose(node.attrs["perm"]))

    def op_slice(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        return np.ascontiguousarray(x[slice_index(x.shape, node.attrs)])

    def op_reduce_sum(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        axes = tuple(a % x.ndim for a in node.attrs["axes"])
        return x.sum(axis=axes, keepdims=bool(node.attrs["keepdims"])) & mask(self.ell(node))

    def op_pad(self, node: Node, x) -> np.ndarray:  # noqa: ANN001
        r = x.ndim
        pads = node.attrs["pads"]
        if node.attrs.get("mode", "constant") != "constant":
            width = [(pads[i], pads[i + r]) for i in range(r)]
            return np.pad(x, width, mode=node.attrs["mode"])
        fill = int(round(float(node.attrs.get("value", 0.0)) * 2**node.type.dtype.scale))
        width = [(pads[i], pads[i + r]) for i in range(r)]
        return self.ring(node, np.pad(self.sig(node, x), width, constant_values=fill))


def simulate(
    graph: Graph, x: np.ndarray | dict[str, np.ndarray], check: bool = True
) -> dict[str, Any]:
    """Run and decode: ``{"outputs": ..., "logits": ...}`` in the shared out.json schema,
    with ``overflow_checked`` as ``run client`` writes it (the program's public flag: False
    when it cannot flag an overflow, see :func:`~twofold.ir.public.overflow_checked`)."""
    interp = Cleartext(graph, check=check)
    res = interp.run(x)
    checked = {"overflow_checked": bool(overflow_checked(graph))}
    if interp.overflow_at is not None:
        return invalid_result(interp.overflow_at) | checked
    fns = graph.meta.get("output_function", {})
    logits, outputs = {}, {}
    for name, val in res.items():
        real = interp.decode(name, val)
        logits[name] = {"shape": list(real.shape), "values": real.ravel().tolist()}
        prob = apply_output_function(fns.get(name, "identity"), real)
        outputs[name] = {"shape": list(prob.shape), "values": prob.ravel().tolist()}
    doc: dict[str, Any] = {"outputs": outputs, "logits": logits}
    if any(n.op == "relu" and len(n.inputs) == 2 for n in graph.nodes):
        doc["valid"] = True
    if graph.meta.get("labels"):
        doc["labels"] = list(graph.meta["labels"])
    return doc | checked


def observe_ranges(
    graph: Graph, inputs: list[np.ndarray | dict[str, np.ndarray]]
) -> dict[str, tuple[float, float, dict[str, Any]]]:
    """Observed real (lo, hi) per node over calibration inputs (for ``--calibrate``), with
    ``{"channel_hi": per-channel maxima, "sample_hi": each input's maximum}``."""
    interp = Cleartext(graph, check=False, record=True)
    for x in inputs:
        interp.run(x)
    return {
        k: (lo, hi, {"channel_hi": interp.channel_hi.get(k), "sample_hi": interp.sample_hi[k]})
        for k, (lo, hi) in interp.observed.items()
    }
