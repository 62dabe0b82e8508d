"""Interval analysis: a sound real-valued range for every tensor of the quantized IR.

Ranges are per channel (axis 1) where the op keeps channels, else per tensor; weights
give exact bounds of linear layers (Σ w⁺·hi + w⁻·lo + b), ReLU clamps at 0, truncation
widens by one unit in the last place. Calibration (observed ranges on real inputs,
widened by a margin) tightens them (DESIGN.md §4, pass 6).
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, lut, newton
from .errors import CompileError

Interval = tuple[np.ndarray, np.ndarray]  # (lo, hi) per channel, or shape (1,)


def _chan(n_ch: int, iv: Interval) -> Interval:
    lo, hi = iv
    if lo.size == n_ch:
        return lo, hi
    return np.full(n_ch, lo.min()), np.full(n_ch, hi.max())


def _scalar(iv: Interval) -> Interval:
    return np.array([iv[0].min()]), np.array([iv[1].max()])


def _param(g: Graph, name: str) -> np.ndarray:
    node = g[name]
    return np.asarray(g.params[node.attrs["key"]], np.float64) / 2.0**node.type.dtype.scale


def _linear(w_pos: np.ndarray, w_neg: np.ndarray, iv: Interval, bias: np.ndarray) -> Interval:
    lo, hi = iv
    return w_pos @ lo + w_neg @ hi + bias, w_pos @ hi + w_neg @ lo + bias


def _conv(g: Graph, node, iv: Interval) -> Interval:  # noqa: ANN001
    w = _param(g, node.inputs[1])
    cout, cg = w.shape[:2]
    grp = node.attrs["group"]
    wp, wn = np.maximum(w, 0).sum(axis=(2, 3)), np.minimum(w, 0).sum(axis=(2, 3))
    b = _param(g, node.inputs[2]) if len(node.inputs) == 3 else np.zeros(cout)
    lo, hi = _chan(cg * grp, iv)
    if any(node.attrs["pads"]):  # padded zeros join the input values
        lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
    out_lo, out_hi = np.empty(cout), np.empty(cout)
    per = cout // grp
    for k in range(grp):
        sl, cs = slice(k * per, (k + 1) * per), slice(k * cg, (k + 1) * cg)
        out_lo[sl], out_hi[sl] = _linear(wp[sl], wn[sl], (lo[cs], hi[cs]), b[sl])
    return out_lo, out_hi


def _gemm(g: Graph, node, ivs: list[Interval]) -> Interval:  # noqa: ANN001
    a, b = node.inputs[:2]
    if g[b].op in ("weight", "const"):
        w = _param(g, b)
        k, n = w.shape
        lo, hi = _chan(k, ivs[0])
        wp, wn = np.maximum(w, 0).T, np.minimum(w, 0).T
        bias = np.zeros(n)
        if len(node.inputs) == 3:
            bias = np.broadcast_to(_param(g, node.inputs[2]), (1, n)).reshape(n)
        return _linear(wp, wn, (lo, hi), bias)
    w = _param(g, a)  # weight on the left: rows of the result
    m, k = w.shape
    lo, hi = _scalar(ivs[1])
    wp, wn = np.maximum(w, 0).sum(1), np.minimum(w, 0).sum(1)
    out_lo, out_hi = wp * lo + wn * hi, wp * hi + wn * lo
    if len(node.inputs) == 3:
        c = _param(g, node.inputs[2])
        out_lo, out_hi = out_lo + c.min(), out_hi + c.max()
    return _scalar((out_lo, out_hi))


def _elementwise(op: str, a: Interval, b: Interval) -> Interval:
    if a[0].size != b[0].size:
        a, b = _scalar(a), _scalar(b)
    if op == "add":
        return a[0] + b[0], a[1] + b[1]
    if op == "sub":
        return a[0] - b[1], a[1] - b[0]
    cands = np.stack([a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]])
    return cands.min(0), cands.max(0)


def _param_interval(g: Graph, name: str, n_ch: int | None) -> Interval:
    v = _param(g, name)
    node = g[name]
    if n_ch is not None and v.ndim >= 1 and v.size > 1:
        shape = node.type.shape
        # channel axis of a broadcast parameter is the one of size n_ch aligned from the right
        if len(shape) >= 1 and n_ch in shape:
            axis = len(shape) - 1 - list(reversed(shape)).index(n_ch)
            moved = np.moveaxis(v, axis, 0).reshape(n_ch, -1)
            return moved.min(1), moved.max(1)
    return np.array([v.min() if v.size else 0.0]), np.array([v.max() if v.size else 0.0])


def _channels(shape: tuple[int, ...]) -> int | None:
    return shape[1] if len(shape) >= 2 else None


# Ops whose interval bound grows fastest (sums of many products): where calibration helps.
TIGHTEN = {"conv2d", "gemm", "affine", "mul", "mul_const", "sumpool", "reduce_sum"}


def widen(lo: float, hi: float, margin: float) -> tuple[float, float]:
    """An observed range scaled away from 0 by ``margin`` (0 stays a bound)."""
    return (lo * margin if lo < 0 else 0.0), (hi * margin if hi > 0 else 0.0)


def interval_ranges(
    g: Graph, input_range: tuple[float, float], margin: float | None = None
) -> dict[str, Interval]:
    """(lo, hi) per node, from the weights and the declared input range.

    Sound without calibration. With ``margin``, the bound of a product or sum pool that
    recorded ``meta["observed"]`` is cut to the observed range widened by ``margin``,
    and every other op propagates those calibrated bounds by its exact rule, so a
    tensor that happened to be constant on the calibration inputs (e.g. relu(x − 6))
    still gets the range its operands allow.
    """
    r: dict[str, Interval] = {}
    for node in g.nodes:
        op, ins = node.op, node.inputs
        ch = _channels(node.type.shape)
        ulp = 2.0**-node.type.dtype.scale
        if op == "input":  # the quantized declared range: what the client's check admits
            sc = 2.0**node.type.dtype.scale
            iv = (np.array([np.floor(float(input_range[0]) * sc) / sc]),
                  np.array([np.ceil(float(input_range[1]) * sc) / sc]))  # fmt: skip
        elif op in ("weight", "const"):
            iv = _param_interval(g, node.name, ch)
        elif op == "conv2d":
            iv = _conv(g, node, r[ins[0]])
        elif op == "gemm":
            iv = _gemm(g, node, [r[i] for i in ins])
        elif op in ("affine", "sign_affine"):
            m, a = _param(g, ins[1]), _param(g, ins[2])
            lo, hi = _chan(m.size, r[ins[0]])
            c = np.stack([lo * m, hi * m])
            iv = c.min(0) + a, c.max(0) + a
        elif op in ("add", "sub", "mul"):
            a, b = r[ins[0]], r[ins[1]]
            if ch is not None:
                a = _chan(ch, a) if a[0].size in (1, ch) else _scalar(a)
                b = _chan(ch, b) if b[0].size in (1, ch) else _scalar(b)
            iv = _elementwise(op, a, b)
        elif op == "mul_const":
            v = node.attrs["value"] * 2.0 ** -node.attrs["scale"]
            lo, hi = r[ins[0]]
            iv = np.minimum(lo * v, hi * v), np.maximum(lo * v, hi * v)
        elif op == "relu":
            lo, hi = r[ins[0]]
            iv = np.maximum(lo, 0), np.maximum(hi, 0)
            if len(ins) == 2:  # checked: a valid run has x < limit (compiler/headroom.py)
                lim = _param(g, ins[1]).reshape(-1) - ulp
                if lim.size > 1:
                    lo, hi = _chan(lim.size, iv)
                    iv = np.minimum(lo, lim), np.minimum(hi, lim)
                else:
                    iv = np.minimum(iv[0], lim), np.minimum(iv[1], lim)
        elif op == "maxpool":
            iv = r[ins[0]]
        elif op == "sumpool":
            k = node.attrs["kernel"][0] * node.attrs["kernel"][1]
            lo, hi = r[ins[0]]
            iv = np.where(lo < 0, lo * k, 0.0), np.where(hi > 0, hi * k, 0.0)
        elif op == "trunc":
            lo, hi = r[ins[0]]
            iv = np.where(lo < 0, lo - ulp, np.maximum(lo - ulp, 0.0)), hi
        elif op == "concat":
            parts = [r[i] for i in ins]
            if node.attrs["axis"] % len(node.type.shape) == 1 and all(
                p[0].size == g[i].type.shape[1] for p, i in zip(parts, ins, strict=True)
            ):
                iv = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            else:
                iv = (np.array([min(p[0].min() for p in parts)]),
                      np.array([max(p[1].max() for p in parts)]))  # fmt: skip
        elif op == "lut":
            iv = _lut_range(node, r[ins[0]])
        elif op in newton.KINDS:
            iv = _newton_range(g, node, r[ins[0]])
        elif op == "reduce_sum":
            shape = g[ins[0]].type.shape
            k = int(np.prod([shape[a % len(shape)] for a in node.attrs["axes"]]))
            keeps_ch = ch is not None and 1 not in {a % len(shape) for a in node.attrs["axes"]}
            lo, hi = r[ins[0]] if keeps_ch and node.attrs["keepdims"] else _scalar(r[ins[0]])
            iv = np.where(lo < 0, lo * k, 0.0), np.where(hi > 0, hi * k, 0.0)
        elif op == "pad" and node.attrs.get("mode", "constant") != "constant":
            iv = r[ins[0]]
        elif op == "pad":
            v = float(node.attrs.get("value", 0.0))
            lo, hi = r[ins[0]]
            iv = np.minimum(lo, v), np.maximum(hi, v)
            if lo.size != (ch or 0):
                iv = _scalar(iv)
        elif op == "flatten" and g[ins[0]].type.rank == 4 and node.attrs["axis"] == 1:
            lo, hi = r[ins[0]]
            hw = g[ins[0]].type.shape[2] * g[ins[0]].type.shape[3]
            iv = (np.repeat(lo, hw), np.repeat(hi, hw)) if lo.size > 1 else (lo, hi)
        elif op in ("flatten", "reshape", "transpose", "slice"):
            iv = _scalar(r[ins[0]])
        else:
            raise CompileError(f"%{node.name}: no range rule for op {op}")
        lo, hi = np.asarray(iv[0], np.float64), np.asarray(iv[1], np.float64)
        if margin is not None and op in TIGHTEN and "observed" in node.meta:
            wlo, whi = widen(*node.meta["observed"], margin)
            lo, hi = np.maximum(lo, wlo), np.minimum(hi, whi)
            lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if "clamp" in node.meta:  # a lowered clip: the result is known to lie in [a, b]
            a, b = node.meta["clamp"]
            lo = np.maximum(lo, -np.inf if a is None else a)
            hi = np.minimum(hi, np.inf if b is None else b)
        r[node.name] = (lo, hi)
    return r


def _lut_range(node, iv: Interval) -> Interval:  # noqa: ANN001
    """The pieces the input reaches bound the output; an input beyond the domain of a function
    that does not saturate there (exp above its top) would be clamped silently, so it is
    refused."""
    fn, sc = node.attrs["fn"], node.type.dtype.scale
    m = lut.spec(fn)
    if m.tail is None and float(iv[1].max()) >= m.hi:
        raise CompileError(
            f"%{node.name}: {fn} input reaches {float(iv[1].max()):.4g}, beyond its table's "
            f"domain [{m.lo}, {m.hi}) (calibrate, or keep the input below {m.hi})"
        )
    a, b = lut.table(fn, float(node.attrs["alpha"]), sc)
    # piece i takes values a_i + round(b_i·r / 2^sh), r < 2^sh: between a_i and a_i + b_i;
    # only the pieces the input's interval reaches (exp after a softmax's max subtraction)
    q = np.array([np.floor(float(iv[0].min()) * 2.0**sc), np.ceil(float(iv[1].max()) * 2.0**sc)])
    (i0, i1), _ = lut.index(np.clip(q, -(2.0**62), 2.0**62).astype(np.int64), fn, sc)
    t = np.concatenate([a[i0 : i1 + 1], a[i0 : i1 + 1] + b[i0 : i1 + 1]]) / 2.0**sc
    return np.array([t.min()]), np.array([t.max()])


def _newton_range(g: Graph, node, iv: Interval) -> Interval:  # noqa: ANN001
    """1/x and 1/√x of max(x, floor) are decreasing: [g(hi)·(1 − ε) − 2 ulp, g(lo')·(1 + ε) +
    2 ulp] with lo' = max(lo, floor), ε = 2^-8 ≥ ir/newton.py's bound at every ring it accepts;
    ln is increasing. A divisor or root that may be negative is refused (no sign handling: 1/x
    would be silently wrong)."""
    sc = node.type.dtype.scale
    s_in = g[node.inputs[0]].type.dtype.scale
    lo, hi = float(iv[0].min()), float(iv[1].max())
    if lo < 0 and float(node.attrs["floor"]) <= 0:
        raise CompileError(
            f"%{node.name}: {node.op} of a value that may be negative (range [{lo:.4g}, "
            f"{hi:.4g}]); only positive divisors and roots are supported"
        )
    f = newton.floor_int(float(node.attrs["floor"]), s_in) / 2.0**s_in
    lo, hi = max(lo, f), max(hi, f)
    if node.op == "log":  # increasing; ir/newton.py's bound 2^-(M+1) + 1 ulp
        e = 2.0 ** -(newton.M + 1) + 2 * 2.0**-sc
        return np.array([math.log(lo) - e]), np.array([math.log(hi) + e])
    g = newton.function(node.op, np.array([hi, lo]))
    ulp, eps = 2.0**-sc, 2.0**-8
    return np.array([max(0.0, g[0] * (1 - eps) - 2 * ulp)]), np.array([g[1] * (1 + eps) + 2 * ulp])


def bits_needed(lo: float, hi: float, scale: int) -> int:
    """Smallest b with every value of [lo, hi]·2^scale in b-bit two's complement."""
    top = int(np.ceil(max(hi, 0.0) * 2.0**scale))
    bot = int(np.floor(min(lo, 0.0) * 2.0**scale))
    return max(top.bit_length(), (-bot - 1).bit_length() if bot < 0 else 0) + 1
