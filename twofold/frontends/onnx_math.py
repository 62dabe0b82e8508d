"""ONNX ops that divide by, or take roots of, computed values (issue 17 deliverable 4).

Each becomes IR ops with a secure form: ``reciprocal`` and ``rsqrt`` (ir/newton.py, SIRNN §5),
products of two shared tensors (``mul``), table lookups (``lut``, ir/lut.py), sums.

* ``Reciprocal(x)`` → reciprocal; ``Div(a, b)`` by a computed b → a · reciprocal(b);
  ``Sqrt(v)`` → v · rsqrt(v), and a Div by a Sqrt → a · rsqrt(v) (torch's LayerNorm below opset
  17: ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div);
* ``Pow(x, e)`` with a constant e ∈ {1, 2, 3, 0.5, −0.5, −1} (GELU's tanh form uses x³);
* ``Erf`` → ``lut erf`` (GELU = x·(1 + erf(x/√2))/2 as torch exports it);
* ``LayerNormalization`` (axis, ε) and ``InstanceNormalization`` (ε): mean = Σx·(1/n),
  d = x − mean, var = Σd²·(1/n) (at scale s + s/2: ``meta.fine``), y = d·rsqrt(var + ε,
  floor ε)·γ + β. The normalised d·r is
  tagged ``meta.clamp = ±(2√n + 1)``: |dᵢ| ≤ √(n·var) for any mean, so |dᵢ·r| ≤ √n·(1 + ε)
  up to the floors' few ulps (twice that covers var within 3 ulp of 0, where r is clamped);
  a square is tagged ≥ 0. Both are facts of the arithmetic, not of the weights, so the range
  analysis stays sound.

A divisor that may be negative is refused at compile time (``compiler/ranges.py``).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from .onnx import CONVERTERS, _Converter, _reg

#: Per conversion: IR value of a Sqrt → (its operand, that operand's rsqrt), so a Div by it
#: uses the rsqrt directly.
_SQRTS: weakref.WeakKeyDictionary[_Converter, dict[str, tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def _sqrt_of(c: _Converter) -> dict[str, tuple[str, str]]:
    return _SQRTS.setdefault(c, {})


def square(c: _Converter, x: str, fine: bool = False) -> str:
    """x·x, tagged ≥ 0; ``fine``: kept at scale s + s/2 (``meta.fine``, compiler/quantize.py)."""
    y = c.add("mul", [x, x])
    c.g[y].meta["clamp"] = [0.0, None]
    if fine:
        c.g[y].meta["fine"] = True
    return y


def reciprocal_of(c: _Converter, b: str) -> str:
    """1/b: rsqrt(v) when b = sqrt(v), else reciprocal(b)."""
    known = _sqrt_of(c).get(b)
    if known is not None:
        return known[1]
    return c.add("reciprocal", [b], {"floor": 0.0})


def divide(c: _Converter, a: str, b: str) -> str:
    return c.add("mul", [a, reciprocal_of(c, b)])


@_reg("Reciprocal")
def _reciprocal(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    return reciprocal_of(c, c.val(ins[0]))


@_reg("Sqrt")
def _sqrt(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    v = c.val(ins[0])
    r = c.add("rsqrt", [v], {"floor": 0.0})
    y = c.add("mul", [v, r])
    _sqrt_of(c)[y] = (v, r)
    return y


@_reg("Erf")
def _erf(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    return c.add("lut", [c.val(ins[0])], {"fn": "erf"})


@_reg("Pow")
def _pow(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    e = c.const(ins[1], "Pow's exponent").astype(np.float64).reshape(-1)
    if e.size != 1:
        raise c.fail("Pow with a tensor exponent is not supported (a scalar constant only)")
    x, p = c.val(ins[0]), float(e[0])
    if p == 1.0:
        return x
    if p == 2.0:
        return square(c, x)
    if p == 3.0:
        return c.add("mul", [square(c, x), x])
    if p == 0.5:
        return _sqrt(c, ins, a)
    if p == -0.5:
        return c.add("rsqrt", [x], {"floor": 0.0})
    if p == -1.0:
        return reciprocal_of(c, x)
    raise c.fail(f"Pow with exponent {p:g} is not supported (1, 2, 3, 0.5, -0.5, -1)")


_MUL_DIV = CONVERTERS["Div"]


@_reg("Div")
def _div(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    """By a constant as before (onnx.py); by a computed value: a · reciprocal(b)."""
    if ins[1] in c.consts:
        return _MUL_DIV(c, ins, a)
    return divide(c, c.val(ins[0]), c.val(ins[1]))


def normalize(c: _Converter, x: str, axes: list[int], eps: float) -> str:
    """(x − mean) · rsqrt(var + ε) over ``axes`` (kept as size-1 dims)."""
    shape = c.shape_of(x)
    n = math.prod(shape[i] for i in axes)
    keep = {"axes": axes, "keepdims": 1}
    mean = c.add("mul_const", [c.add("reduce_sum", [x], keep)], {"value": 1.0 / n})
    c.g[mean].meta["precise"] = True
    d = c.add("sub", [x, mean])
    # the variance at scale s + s/2: squares of small deviations truncated to s would lose
    # their digits (std 0.05 at s = 12 is 10 ulp of variance, 655 at s = 18)
    var = c.add("mul_const", [c.add("reduce_sum", [square(c, d, True)], keep)], {"value": 1.0 / n})
    c.g[var].meta.update(fine=True, precise=True)
    e = c.g.add_param(c.g.fresh_name("epsilon"), np.full([1] * len(shape), eps, np.float32))
    r = c.add("rsqrt", [c.add("add", [var, e])], {"floor": float(eps)})
    y = c.add("mul", [d, r])
    bound = 2.0 * math.sqrt(n) + 1.0
    c.g[y].meta["clamp"] = [-bound, bound]
    return y


def _affine(c: _Converter, y: str, name: str, shape: list[int], add: bool) -> str:
    v = np.asarray(c.const(name, "normalisation scale/bias"), np.float32).reshape(shape)
    w = c.g.add_param(c.g.fresh_name(c._scoped(name, "weight" if not add else "bias")), v)
    return c.add("add" if add else "mul", [y, w])


@_reg("LayerNormalization")
def _layer_norm(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    shape = c.shape(ins[0])
    rank = len(shape)
    axis = int(a.get("axis", -1)) % rank
    if int(a.get("stash_type", 1)) != 1:
        raise c.fail("LayerNormalization with stash_type other than float is not supported")
    y = normalize(c, c.val(ins[0]), list(range(axis, rank)), float(a.get("epsilon", 1e-5)))
    # γ and β as per-channel vectors of [rows, D] (the runtime multiplies by a weight along
    # axis 1); reshapes are free on shares
    d = math.prod(shape[axis:])
    y = c.add("reshape", [y], {"shape": [math.prod(shape[:axis]), d]})
    y = _affine(c, y, ins[1], [d], add=False)
    if len(ins) > 2 and ins[2]:
        y = _affine(c, y, ins[2], [d], add=True)
    return c.add("reshape", [y], {"shape": list(shape)})


@_reg("InstanceNormalization")
def _instance_norm(c: _Converter, ins: list[str], a: dict[str, Any]) -> str:
    shape = c.shape(ins[0])
    if len(shape) < 3:
        raise c.fail(f"InstanceNormalization needs a rank ≥ 3 input (got {list(shape)})")
    y = normalize(c, c.val(ins[0]), list(range(2, len(shape))), float(a.get("epsilon", 1e-5)))
    per_c = [1, shape[1]] + [1] * (len(shape) - 2)
    return _affine(c, _affine(c, y, ins[1], per_c, add=False), ins[2], per_c, add=True)
