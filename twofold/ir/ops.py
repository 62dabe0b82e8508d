"""The op vocabulary of the IR: arity, attributes, shape rule and fixed-point scale rule.

Every backend (float reference, cleartext fixed point, 2PC emitter) walks the
same ops; this table is the contract between them. Layout is NCHW; axis 0 is the batch
(N images run as one program).

Fixed-point rule (DESIGN.md §4): a product of scales s_a and s_b carries
s_a + s_b; sums, max and data movement need equal scales and keep them;
``trunc`` lowers the scale by ``shift``. All operands of an op share one ring
ℓ except where an op says otherwise (``trunc`` with ``out_ell``, ``extend``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .types import Fix

Shape = tuple[int, ...]
Attrs = dict[str, Any]


class ShapeError(ValueError):
    """An op's operands do not fit together."""


@dataclass(frozen=True)
class OpSpec:
    name: str
    min_inputs: int
    max_inputs: int
    infer: Callable[[Sequence[Shape], Attrs], Shape]
    defaults: Attrs = field(default_factory=dict)
    float_only: bool = False
    fixed_only: bool = False
    # Scale of the output from the operands' fixed-point types, or None when the
    # op does not fix it (the verifier then only checks the ring).
    scale: Callable[[Sequence[Fix], Attrs], int] | None = None
    doc: str = ""


OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    OPS[spec.name] = spec
    return spec


def spec(op: str) -> OpSpec:
    try:
        return OPS[op]
    except KeyError:
        raise KeyError(f"unknown IR op {op!r}; known: {', '.join(sorted(OPS))}") from None


# ---------------------------------------------------------------- shape rules


def _same(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    return tuple(shapes[0])


def _source(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    return tuple(attrs["shape"])


def pool_out_dim(size: int, k: int, s: int, pad_lo: int, pad_hi: int, d: int, ceil: bool) -> int:
    """Output length of a pooling/convolution window along one axis (ONNX semantics)."""
    eff = d * (k - 1) + 1
    num = size + pad_lo + pad_hi - eff
    if num < 0:
        raise ShapeError(f"window {k} (dilation {d}) larger than padded input {size}")
    out = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + pad_lo:
        out -= 1  # the last window would start in the right padding only
    return out


def _window(shapes: Sequence[Shape], attrs: Attrs, channels: int) -> Shape:
    n, _, h, w = _rank(shapes[0], 4, "input")
    kh, kw = attrs["kernel"]
    sh, sw = attrs["strides"]
    pt, pl, pb, pr = attrs["pads"]
    dh, dw = attrs.get("dilations", [1, 1])
    ceil = bool(attrs.get("ceil_mode", 0))
    return (
        n,
        channels,
        pool_out_dim(h, kh, sh, pt, pb, dh, ceil),
        pool_out_dim(w, kw, sw, pl, pr, dw, ceil),
    )


def _rank(shape: Shape, r: int, what: str) -> Shape:
    if len(shape) != r:
        raise ShapeError(f"{what} must have rank {r}, got shape {list(shape)}")
    return shape


def _conv(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x, w = shapes[0], _rank(shapes[1], 4, "weight")
    _rank(x, 4, "input")
    g = attrs["group"]
    if x[1] != w[1] * g:
        raise ShapeError(f"input has {x[1]} channels, weight expects {w[1]}×group {g}")
    if w[0] % g:
        raise ShapeError(f"{w[0]} output channels not divisible by group {g}")
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        raise ShapeError(f"bias shape {list(shapes[2])} does not match {w[0]} output channels")
    a = dict(attrs, kernel=[w[2], w[3]])
    return _window(shapes, a, w[0])


def _pool(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    return _window(shapes, attrs, _rank(shapes[0], 4, "input")[1])


def _global_pool(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    n, c, _, _ = _rank(shapes[0], 4, "input")
    return (n, c, 1, 1)


def _gemm(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    a, b = _rank(shapes[0], 2, "A"), _rank(shapes[1], 2, "B")
    if a[1] != b[0]:
        raise ShapeError(f"A is {list(a)} and B is {list(b)}: inner dimensions differ")
    out = (a[0], b[1])
    if len(shapes) == 3:
        broadcast((out, tuple(shapes[2])), {})
    return out


def broadcast(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    """Numpy/ONNX multidirectional broadcasting."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _channel_vec(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x = shapes[0]
    if len(x) < 2:
        raise ShapeError(f"per-channel op needs rank >= 2, got {list(x)}")
    for s in shapes[1:]:
        if tuple(s) != (x[1],):
            raise ShapeError(f"per-channel parameter shape {list(s)} != [{x[1]}]")
    return tuple(x)


def _concat(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    axis = attrs["axis"] % len(shapes[0])
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(s, first, strict=True)) if i != axis
        ):
            raise ShapeError(f"cannot concatenate {[list(s) for s in shapes]} on axis {axis}")
    return tuple(sum(s[axis] for s in shapes) if i == axis else d for i, d in enumerate(first))


def _flatten(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x = shapes[0]
    axis = attrs["axis"] % (len(x) + 1) if x else 0
    return (math.prod(x[:axis]), math.prod(x[axis:]))


def _reshape(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x, target = shapes[0], tuple(attrs["shape"])
    if math.prod(target) != math.prod(x):
        raise ShapeError(f"cannot reshape {list(x)} ({math.prod(x)} elements) to {list(target)}")
    return target


def _transpose(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x, perm = shapes[0], attrs["perm"]
    if sorted(perm) != list(range(len(x))):
        raise ShapeError(f"perm {perm} is not a permutation of rank {len(x)}")
    return tuple(x[p] for p in perm)


def _pad(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x, pads = shapes[0], attrs["pads"]
    r = len(x)
    if len(pads) != 2 * r:
        raise ShapeError(f"pads {pads} need {2 * r} entries for rank {r}")
    return tuple(d + pads[i] + pads[i + r] for i, d in enumerate(x))


def slice_index(shape: Shape, attrs: Attrs) -> tuple[slice, ...]:
    """The numpy index of ``slice`` {starts, ends, axes, steps} (ONNX Slice semantics)."""
    idx = [slice(None)] * len(shape)
    axes = attrs.get("axes") or list(range(len(attrs["starts"])))
    steps = attrs.get("steps") or [1] * len(axes)
    for st, en, ax, sp in zip(attrs["starts"], attrs["ends"], axes, steps, strict=True):
        if sp == 0:
            raise ShapeError("slice step 0")
        idx[ax % len(shape)] = slice(int(st), int(en), int(sp))
    return tuple(idx)


def _slice(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x = shapes[0]
    out = tuple(len(range(*sl.indices(d))) for sl, d in zip(slice_index(x, attrs), x, strict=True))
    if 0 in out:
        raise ShapeError(f"slice of {list(x)} by {attrs} is empty")
    return out


def _reduce(shapes: Sequence[Shape], attrs: Attrs) -> Shape:
    x = shapes[0]
    axes = {a % len(x) for a in attrs["axes"]}
    if attrs.get("keepdims", 1):
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


# ---------------------------------------------------------------- scale rules


def _scale_same(types: Sequence[Fix], attrs: Attrs) -> int:
    scales = {t.scale for t in types}
    if len(scales) != 1:
        raise ShapeError(f"operands have different scales {sorted(scales)}")
    return types[0].scale


def _scale_first(types: Sequence[Fix], attrs: Attrs) -> int:
    return types[0].scale


def _scale_out(types: Sequence[Fix], attrs: Attrs) -> int:
    return int(attrs["out_scale"])


def _scale_product(types: Sequence[Fix], attrs: Attrs) -> int:
    s = types[0].scale + types[1].scale
    for t in types[2:]:
        if t.scale != s:
            raise ShapeError(f"addend has scale {t.scale}, product has {s}")
    return s


def _scale_trunc(types: Sequence[Fix], attrs: Attrs) -> int:
    if attrs["shift"] > types[0].scale:
        raise ShapeError(f"truncation by {attrs['shift']} below scale {types[0].scale}")
    return types[0].scale - attrs["shift"]


def _scale_mul_const(types: Sequence[Fix], attrs: Attrs) -> int:
    return types[0].scale + attrs["scale"]


_WIN = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "ceil_mode": 0}

for _spec in [
    OpSpec("input", 0, 0, _source, doc="graph input supplied by the client {name, shape}"),
    OpSpec("weight", 0, 0, _source, doc="server-private tensor params[key] {key, shape}"),
    OpSpec("const", 0, 0, _source, doc="public tensor params[key] {key, shape}"),
    OpSpec(
        "conv2d",
        2,
        3,
        _conv,
        dict(_WIN, group=1),
        scale=_scale_product,
        doc="y = conv(x, w) + b, NCHW, pads [top, left, bottom, right]",
    ),
    OpSpec("gemm", 2, 3, _gemm, scale=_scale_product, doc="y = a @ b + c (2-D)"),
    OpSpec(
        "batchnorm",
        5,
        5,
        _channel_vec,
        {"epsilon": 1e-5},
        float_only=True,
        doc="(x, gamma, beta, mean, var): inference batch norm over axis 1",
    ),
    OpSpec(
        "affine",
        3,
        3,
        _channel_vec,
        scale=_scale_product,
        doc="y = x * mul[c] + add[c] over channel axis 1",
    ),
    OpSpec(
        "sign_affine",
        3,
        3,
        _channel_vec,
        scale=_scale_product,
        doc="y = x * sign[c] + add[c] over channel axis 1, sign in {-1, +1} at scale 0",
    ),
    OpSpec("add", 2, 2, broadcast, scale=_scale_same, doc="elementwise sum, broadcasting"),
    OpSpec("sub", 2, 2, broadcast, scale=_scale_same, doc="elementwise difference"),
    OpSpec("mul", 2, 2, broadcast, scale=_scale_product, doc="elementwise product"),
    OpSpec(
        "mul_const",
        1,
        1,
        _same,
        {"value": 1, "scale": 0},
        scale=_scale_mul_const,
        doc="x * value; value a public number (an integer at the given scale when fixed)",
    ),
    OpSpec(
        "relu",
        1,
        2,
        _same,
        scale=_scale_first,
        doc="max(x, 0); (x, limit) {grain}: also the overflow check x < limit "
        "(server-private, a multiple of 2^grain)",
    ),
    OpSpec(
        "clip",
        1,
        1,
        _same,
        {"min": None, "max": None},
        scale=_scale_first,
        doc="min(max(x, min), max); ReLU6 is clip(0, 6)",
    ),
    OpSpec("leaky_relu", 1, 1, _same, {"alpha": 0.01}, float_only=True),
    OpSpec("maxpool", 1, 1, _pool, dict(_WIN, kernel=[1, 1]), scale=_scale_first),
    OpSpec("avgpool", 1, 1, _pool, dict(_WIN, kernel=[1, 1], count_include_pad=0), float_only=True),
    OpSpec(
        "sumpool",
        1,
        1,
        _pool,
        dict(_WIN, kernel=[1, 1]),
        scale=_scale_first,
        doc="sum over each window (zero padding); avgpool = sumpool * 1/k then trunc",
    ),
    OpSpec("global_avgpool", 1, 1, _global_pool, float_only=True),
    OpSpec("concat", 1, 1 << 16, _concat, {"axis": 1}, scale=_scale_same),
    OpSpec("flatten", 1, 1, _flatten, {"axis": 1}, scale=_scale_first),
    OpSpec("reshape", 1, 1, _reshape, scale=_scale_first, doc="{shape}: fully specified"),
    OpSpec("transpose", 1, 1, _transpose, scale=_scale_first),
    OpSpec(
        "pad",
        1,
        1,
        _pad,
        {"value": 0.0},
        scale=_scale_first,
        doc="padding, ONNX pads [x1_begin, ..., x1_end, ...]; optional mode reflect|edge",
    ),
    OpSpec(
        "slice",
        1,
        1,
        _slice,
        {"axes": None, "steps": None},
        scale=_scale_first,
        doc="x[starts:ends:steps] on axes (ONNX Slice with constant bounds)",
    ),
    OpSpec(
        "reduce_sum",
        1,
        1,
        _reduce,
        {"keepdims": 1},
        scale=_scale_first,
        doc="sum over {axes} (local on shares)",
    ),
    OpSpec("max", 2, 2, broadcast, float_only=True, doc="elementwise max (lowered to ReLU)"),
    OpSpec("min", 2, 2, broadcast, float_only=True, doc="elementwise min (lowered to ReLU)"),
    OpSpec("abs", 1, 1, _same, float_only=True, doc="|x| = 2 relu(x) - x (lowered)"),
    OpSpec(
        "prelu",
        2,
        2,
        _same,
        float_only=True,
        doc="relu(x) + slope (x - relu(x)), slope a weight (lowered)",
    ),
    OpSpec("sigmoid", 1, 1, _same, float_only=True),
    *(
        OpSpec(name, 1, 1, _same, {"floor": 0.0, "out_scale": 0}, scale=_scale_out, doc=doc)
        for name, doc in (
            ("reciprocal", "1/max(x, floor) at out_scale (ir/newton.py: MSB, table, Newton)"),
            ("rsqrt", "1/sqrt(max(x, floor)) at out_scale (ir/newton.py)"),
            ("log", "ln max(x, floor) at out_scale (ir/newton.py: MSB exponent + ln w table)"),
        )
    ),
    OpSpec(
        "lrn",
        1,
        1,
        _same,
        {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0},
        float_only=True,
        doc="ONNX LRN over channels (float IR only: no secure form)",
    ),
    OpSpec(
        "lut",
        1,
        1,
        _same,
        {"fn": "tanh", "alpha": 1.0},
        scale=_scale_first,
        doc="f(x) by table lookup (ir/lut.py): tanh, sigmoid, exp, elu_neg, softplus_g",
    ),
    OpSpec("softmax", 1, 1, _same, {"axis": -1}, float_only=True),
    OpSpec("log_softmax", 1, 1, _same, {"axis": -1}, float_only=True),
    OpSpec(
        "trunc",
        1,
        1,
        _same,
        {"shift": 0, "kind": "faithful"},
        fixed_only=True,
        scale=_scale_trunc,
        doc="arithmetic shift right of the signed value; kind faithful|msb0|reduce",
    ),
]:
    register(_spec)
