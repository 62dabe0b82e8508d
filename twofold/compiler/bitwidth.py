"""Pass ``bitwidth``: per-tensor ranges and bits, and the ring ℓ.

Each node gets ``meta["range"] = [lo, hi]`` (real units) and ``meta["bits"]``: the
two's-complement bits its integer values need. Ranges come from interval analysis over
the weights and the declared input range (``graph.meta["input"]["range"]``); where
calibration recorded ``meta["observed"]``, products and sum pools are cut to the observed
range widened by the calibration margin, and the other ops propagate those bounds.
``auto`` picks the smallest ℓ ≤ 64 with one spare bit over every tensor; an explicit ℓ
that cannot hold a tensor is refused naming it (DESIGN.md §4, pass 6). Invariant
established: every fixed-point type has the chosen ℓ, and every tensor's bits ≤ ℓ.
"""

from __future__ import annotations

from ..ir import Fix, Graph, lut, newton
from .errors import CompileError
from .headroom import add_relu_checks, clamp_limits, limit_interval
from .ranges import bits_needed, interval_ranges

MAX_ELL = 64


RANGE_MODELS = ("checked", "calibrated")
NEWTON = newton.KINDS


def annotate_ranges(g: Graph, margin: float | None) -> None:
    """Set meta range/bits on every node: intervals, tightened by widened observations
    (``margin``) or, with ``margin=None``, sound from the declared range and ReLU limits."""
    inp = g.meta.get("input", {})
    rng = inp.get("range")
    if rng is None:
        raise CompileError("no input range declared (graph.meta['input']['range'])")
    iv = interval_ranges(g, (rng[0], rng[1]), margin)
    if margin is None:
        clamp_limits(g, iv)
        iv = interval_ranges(g, (rng[0], rng[1]), None)  # the same, but for the limits
    for node in g.nodes:
        lo, hi = float(iv[node.name][0].min()), float(iv[node.name][1].max())
        node.meta["range"] = [lo, hi]
        node.meta["bits"] = bits_needed(lo, hi, node.type.dtype.scale)


def _spare(g: Graph, name: str) -> int:
    """1 if ``name`` feeds a MaxPool (a − b of two values) or the check of a checked ReLU
    (x − limit): both must not wrap, so the value needs one bit more than its range."""
    for u in g.users(name):
        node = g[u]
        if node.op == "maxpool" or (
            node.op == "relu" and len(node.inputs) == 2 and node.inputs[0] == name
        ):
            return 1
    return 0


def bitwidth(
    graph: Graph,
    bitlength: int | str = "auto",
    margin: float = 2.0,
    range_model: str = "checked",
    headroom_bits: int = 1,
) -> Graph:
    """``checked`` (default, compiler/headroom.py): calibrated ReLUs get server-private
    limits checked in-protocol and all ranges are sound given those checks; ``calibrated``:
    products cut to observed × margin, no checks (no guarantee beyond the calibration set)."""
    if range_model not in RANGE_MODELS:
        raise CompileError(f"unknown range model {range_model!r}; known: {', '.join(RANGE_MODELS)}")
    g = graph.copy()
    if not all(n.type.is_fixed for n in g.nodes):
        return g  # quantize disabled: nothing to size
    checked = range_model == "checked" and add_relu_checks(g, margin, headroom_bits) > 0
    observed = any("observed" in n.meta for n in g.nodes)
    annotate_ranges(g, None if checked else margin)
    if checked:  # sound ranges: a spare bit only where a protocol subtracts two values
        for n in g.nodes:  # x − limit: the limit (rounded up to its grain) ≤ 2^(bits−1) too
            lim = limit_interval(g, n.name) if n.op == "relu" else None
            if lim is not None:
                src = g[n.inputs[0]]
                ulp = 2.0**-src.type.dtype.scale
                need = bits_needed(0.0, float(lim.max()) - ulp, src.type.dtype.scale)
                src.meta["bits"] = max(src.meta["bits"], need)
        for n in g.nodes:
            n.meta["bits"] += _spare(g, n.name)
    for n in g.nodes:  # a table's slope times the low bits must fit the ring (ir/lut.py)
        if n.op == "lut":
            need = lut.product_bits(n.attrs["fn"], float(n.attrs["alpha"]), n.type.dtype.scale)
            n.meta["bits"] = max(n.meta["bits"], need)
    for n in g.nodes:  # ir/newton.py normalises into [2^(ℓ−4), 2^(ℓ−2)): x < 2^(ℓ−3)
        if any(g[u].op in NEWTON for u in g.users(n.name)):
            n.meta["bits"] = max(n.meta["bits"], 2) + 2
    widest = max(g.nodes, key=lambda n: n.meta["bits"])
    need = widest.meta["bits"]
    if bitlength == "auto":
        ell = need if checked else need + 1
        if ell > MAX_ELL:
            raise CompileError(
                f"tensor %{widest.name} ({widest.op}) needs {need} bits, more than the "
                f"{MAX_ELL - 1} a 64-bit ring holds with a spare bit; lower --scale or "
                "tighten ranges with --calibrate"
            )
    else:
        ell = int(bitlength)
        if not 2 <= ell <= MAX_ELL:
            raise CompileError(f"--bitlength {ell} out of range 2..{MAX_ELL}")
        if need > ell:
            n = widest
            lo, hi = n.meta["range"]
            raise CompileError(
                f"bitlength {ell} too small: tensor %{n.name} ({n.op}, range "
                f"[{lo:.4g}, {hi:.4g}] at scale {n.type.dtype.scale}) needs {need} bits"
                f" ({sum(m.meta['bits'] > ell for m in g.nodes)} tensors exceed {ell})"
            )
    for n in g.nodes:
        if n.op in NEWTON:
            try:
                s_in = g[n.inputs[0]].type.dtype.scale
                newton.plan(n.op, ell, s_in, n.type.dtype.scale, float(n.attrs["floor"]))
            except ValueError as e:
                raise CompileError(f"%{n.name}: {e}") from None
    for n in g.nodes:
        n.type = n.type.with_(dtype=Fix(ell, n.type.dtype.scale))
        for k in ("observed", "observed_channel_hi", "observed_sample_hi"):
            n.meta.pop(k, None)  # raw calibration statistics stay out of the public IR
    g.meta["ell"] = ell
    g.meta["bits_needed"] = need
    g.meta["widest_tensor"] = widest.name
    g.meta["range_model"] = "checked" if checked else "calibrated"
    # calibrated ranges with nothing to check (e.g. a network without ReLU): no overflow flag
    g.meta["unchecked"] = range_model == "checked" and observed and not checked
    # public (the client reads it): can every overflow be seen? Yes with in-protocol checks, and
    # without calibration (interval ranges are sound); no when ranges were cut to calibration
    g.meta["overflow_checked"] = checked or not observed
    return g
