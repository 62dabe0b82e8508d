"""Pass ``quantize``: float tensors become ``fix<ℓ,s>``; parameters become integers.

Invariant established (DESIGN.md §4, pass 4): every value is fixed point. Inputs and the
secret operand of every product carry scale s (the client quantizes its input at s);
server weights are rounded at s; a bias or affine shift is rounded at the scale of the
product it is added to (2s); a public constant added to a tensor at its scale. A
``sign_affine`` keeps its input's scale: its signs are integers (scale 0), its shift is at
the input's scale, and it needs no truncation. Each
product is followed at once by a ``trunc`` back to s (eager placement, made lazy by the
``truncation`` pass). Integer parameter values (int64, signed) replace the floats in
``graph.params``. ℓ is a placeholder (64) until the ``bitwidth`` pass picks the ring.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Fix, Graph, TensorType, Visibility
from ..ir.lut import shift as lut_shift
from .errors import CompileError

PLACEHOLDER_ELL = 64
_PRODUCTS = {"conv2d", "gemm", "affine", "mul"}
_SAME_SCALE = {
    "relu", "maxpool", "sumpool", "flatten", "reshape", "transpose", "pad", "slice", "reduce_sum",
}  # fmt: skip
_ALIGN = {"add", "sub", "concat"}


def const_scale(value: float, s: int, precise: bool = False) -> tuple[int, int]:
    """(integer, scale) for a public multiplier: 2^-k → (1, k), integers → (v, 0), else at s;
    ``precise`` (``meta.precise``: the means of LayerNorm/InstanceNorm) with s significant
    bits: 1/768 at s = 12 is 2731/2^21, not 5/2^12, which is 6% off."""
    if value == int(value) and abs(value) < 2**31:
        return int(value), 0
    m, e = math.frexp(value)
    if m == 0.5 and e <= 0:
        return 1, 1 - e
    k = s + max(0, -e) if precise else s
    return int(round(value * 2**k)), k


class _Quantizer:
    def __init__(self, graph: Graph, s: int) -> None:
        self.g, self.s = graph, s
        self.scale: dict[str, int] = {}
        self.qparams: dict[tuple[str, int], str] = {}

    def fix(self, scale: int) -> Fix:
        return Fix(PLACEHOLDER_ELL, scale)

    def param(self, name: str, scale: int) -> str:
        """The parameter node ``name`` rounded at ``scale`` (one node per scale)."""
        if (name, scale) in self.qparams:
            return self.qparams[(name, scale)]
        node = self.g[name]
        key = node.attrs["key"]
        real = np.asarray(self.g.params[key], np.float64)
        q = np.rint(real * 2.0**scale)
        if q.size and np.abs(q).max() >= 2.0**62:
            raise CompileError(f"parameter {key!r} does not fit 62 bits at scale {scale}")
        new_key = (
            self.g.fresh_name(f"{key}@{scale}") if any(k[0] == name for k in self.qparams) else key
        )
        self.g.params[new_key] = q.astype(np.int64)
        vis = Visibility.PUBLIC if node.op == "const" else Visibility.SERVER
        ty = TensorType(node.type.shape, self.fix(scale), vis)
        if new_key == key:
            node.type = ty
            self.qparams[(name, scale)] = name
            return name
        n = self.g.add(
            node.op, attrs={"key": new_key, "shape": list(real.shape)}, type=ty, name=new_key
        )
        self.qparams[(name, scale)] = n
        return n

    def is_param(self, name: str) -> bool:
        return self.g[name].op in ("weight", "const")

    def rescale(self, name: str) -> str:
        """Eager truncation of a product back to scale s."""
        node = self.g[name]
        # meta.fine: kept at s + s/2 (a variance's squares and mean, ahead of its rsqrt)
        shift = self.scale[name] - (self.s + self.s // 2 if node.meta.get("fine") else self.s)
        if shift <= 0:
            return name
        ty = node.type.with_(dtype=self.fix(self.scale[name] - shift))
        t = self.g.add(
            "trunc", [name], {"shift": shift, "kind": "faithful"}, type=ty, name=name + "_t"
        )
        self.g.replace_uses(name, t)
        self.g.set_inputs(t, [name])
        self.scale[t] = self.scale[name] - shift
        return t

    def run(self) -> Graph:
        g, s = self.g, self.s
        for o in g.outputs:
            if self.is_param(o):
                raise CompileError(
                    f"output %{o} does not depend on the input (a constant of the model); "
                    "a secure program reveals only computed outputs"
                )
        for node in g.nodes:
            if node.op in ("weight", "const"):
                continue
            ins = node.inputs
            if ins and all(self.is_param(i) for i in ins):  # canonicalize folds the linear ones
                raise CompileError(
                    f"%{node.name}: {node.op} of model constants only "
                    f"({', '.join('%' + i for i in ins)}) is not computed in the secure program; "
                    "evaluate it when exporting the model (fold it into the weights)"
                )
            if node.op == "input":
                out = s
            elif node.op in _PRODUCTS:
                secret = [i for i in ins[:2] if not self.is_param(i)]
                if any(not self.is_param(i) for i in ins[2:]):
                    raise CompileError(f"%{node.name}: {node.op}'s addend must be a parameter")
                if len(secret) == 2 and node.op == "mul":  # both shared: a COT product
                    out = self.scale[ins[0]] + self.scale[ins[1]]
                    self.scale[node.name] = out
                    node.type = node.type.with_(dtype=self.fix(out))
                    self.rescale(node.name)
                    continue
                if len(secret) != 1:
                    raise CompileError(
                        f"%{node.name}: {node.op} of two run-time tensors is not supported; "
                        "one operand must be a weight or constant"
                    )
                new = [i if not self.is_param(i) else self.param(i, s) for i in ins[:2]]
                out = 2 * s
                new += [self.param(i, out) for i in ins[2:]]
                g.set_inputs(node.name, new)
            elif node.op == "sign_affine":  # sign ±1 at scale 0: no product scale, no trunc
                if not all(self.is_param(i) for i in ins[1:]) or self.is_param(ins[0]):
                    raise CompileError(f"%{node.name}: sign_affine needs (tensor, sign, add)")
                out = self.scale[ins[0]]
                g.set_inputs(node.name, [ins[0], self.param(ins[1], 0), self.param(ins[2], out)])
            elif node.op == "mul_const":
                precise = bool(node.meta.get("precise", False))
                value, k = const_scale(float(node.attrs["value"]), s, precise)
                node.attrs = {"value": value, "scale": k}
                out = self.scale[ins[0]] + k
            elif node.op in _ALIGN:
                secrets = [self.scale[i] for i in ins if not self.is_param(i)]
                out = max(secrets) if secrets else s
                g.set_inputs(
                    node.name, [self.param(i, out) if self.is_param(i) else i for i in ins]
                )
            elif node.op in _SAME_SCALE:
                out = self.scale[ins[0]]
            elif node.op in ("reciprocal", "rsqrt", "log"):  # any input scale, result at s
                node.attrs["out_scale"] = out = s
            elif node.op == "lut":
                out = self.scale[ins[0]]
                try:
                    lut_shift(node.attrs["fn"], out)
                except ValueError as e:
                    raise CompileError(f"%{node.name}: {e}; raise --scale") from None
            elif node.op == "lrn":
                raise CompileError(
                    f"%{node.name}: LRN has no secure form (it divides by a power of a secret "
                    "sum; reciprocal/power protocols are not built)"
                )
            else:
                raise CompileError(
                    f"%{node.name}: op {node.op} has no fixed-point form "
                    "(an earlier pass was disabled or the op is unsupported)"
                )
            self.scale[node.name] = out
            node.type = node.type.with_(dtype=self.fix(out))
            if node.op in _PRODUCTS or node.op == "mul_const":
                self.rescale(node.name)
        g.remove_dead()
        g.toposort()
        g.meta["scale"] = s
        return g


def quantize(graph: Graph, scale: int = 12) -> Graph:
    if not 1 <= scale <= 30:
        raise CompileError(f"scale {scale} out of range 1..30")
    return _Quantizer(graph.copy(), scale).run()
