"""The ordered pass pipeline: float IR → secure fixed-point IR (DESIGN.md §4).

Each pass is a pure function Graph → Graph; ``ir.verify`` runs after each one and names
the pass when an invariant breaks. Any pass can be disabled by name; passes that a
secure program cannot do without (quantize, bitwidth) then leave a graph the verifier
or a later pass rejects with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..ir import Graph, verify
from .bitwidth import bitwidth
from .bn_forward import ChannelStats, bn_forward
from .canonicalize import canonicalize
from .errors import CompileError
from .fold_bn import fold_bn
from .liveness import liveness
from .lower import lower
from .output_function import output_function
from .quantize import quantize
from .swap_relu_maxpool import swap_relu_maxpool
from .truncation import truncation

# (lo, hi) per node, optionally with {"channel_hi", "sample_hi"} statistics
Observer = Callable[[Graph], dict[str, tuple]]


@dataclass
class CompileOptions:
    """Settings of one compilation (recorded in ``graph.meta["compile"]``)."""

    scale: int = 12
    bitlength: int | str = "auto"
    calibration_margin: float = 2.0
    # "checked": ReLU inputs checked in-protocol against server-private limits, ring sized
    # from those limits (a stated guarantee); "calibrated": observed × margin, no checks
    range_model: str = "checked"
    headroom_bits: int = 1
    disabled: set[str] = field(default_factory=set)
    # Runs the quantized graph on calibration inputs; returns observed (lo, hi) per node.
    observe: Observer | None = None
    # Runs the float graph on calibration inputs; (max |x|, mean x) per channel of the named
    # tensors (pass bn_forward).
    channel_stats: ChannelStats | None = None


def _calibrate(graph: Graph, observe: Observer | None) -> Graph:
    """Pass ``calibrate``: record observed value ranges as ``meta["observed"]``."""
    g = graph.copy()
    if observe is None or not all(n.type.is_fixed for n in g.nodes):
        return g
    for name, (lo, hi, *extra) in observe(g).items():
        if name in g:
            g[name].meta["observed"] = [float(lo), float(hi)]
            if extra and extra[0].get("channel_hi") is not None:
                g[name].meta["observed_channel_hi"] = np.asarray(extra[0]["channel_hi"]).tolist()
            if extra:
                g[name].meta["observed_sample_hi"] = [float(v) for v in extra[0]["sample_hi"]]
    return g


def passes(opts: CompileOptions) -> list[tuple[str, Callable[[Graph], Graph], str]]:
    """(name, function, one-line description) in execution order."""
    return [
        ("canonicalize", canonicalize, "fold constants, drop no-ops and dead code"),
        ("fold_bn", fold_bn, "fold BN into Conv/Gemm, else lower it to affine"),
        (
            "bn_forward",
            partial(bn_forward, channel_stats=opts.channel_stats, scale=opts.scale),
            "affine->relu->linear: |a| into the next weights, sign flip + shift",
        ),
        ("lower", lower, "clip, LeakyReLU, PReLU, max/min/abs, average pools -> ReLUs, sums"),
        ("output_function", output_function, "final sigmoid/softmax -> client side"),
        ("swap_relu_maxpool", swap_relu_maxpool, "relu->maxpool becomes maxpool->relu"),
        ("quantize", partial(quantize, scale=opts.scale), "fix<l,s>, integer weights"),
        ("truncation", truncation, "lazy truncation, msb0 after ReLU"),
        ("calibrate", partial(_calibrate, observe=opts.observe), "observed ranges"),
        (
            "bitwidth",
            partial(
                bitwidth,
                bitlength=opts.bitlength,
                margin=opts.calibration_margin,
                range_model=opts.range_model,
                headroom_bits=opts.headroom_bits,
            ),
            "ranges, bits per tensor, ring l",
        ),
        ("liveness", liveness, "last use of each tensor"),
    ]


def pass_names() -> list[str]:
    return [name for name, _, _ in passes(CompileOptions())]


def describe() -> str:
    """The printable pass list (``twofold compile --list-passes``)."""
    return "\n".join(
        f"{i:2d}. {name:<18} {doc}" for i, (name, _, doc) in enumerate(passes(CompileOptions()), 1)
    )


def run_pipeline(graph: Graph, opts: CompileOptions) -> Graph:
    unknown = set(opts.disabled) - set(pass_names())
    if unknown:
        raise CompileError(
            f"unknown pass {', '.join(sorted(unknown))}; passes: {', '.join(pass_names())}"
        )
    g = graph
    verify(g, "frontend")
    for name, fn, _ in passes(opts):
        if name in opts.disabled:
            continue
        g = fn(g)
        verify(g, f"pass {name}")
    fns = g.meta.get("output_function")
    if isinstance(fns, dict) and len(fns) == len(g.outputs):  # passes renamed the outputs
        g.meta["output_function"] = dict(zip(g.outputs, fns.values(), strict=True))
    g.meta["compile"] = {
        "scale": opts.scale,
        "bitlength": opts.bitlength,
        "calibration_margin": opts.calibration_margin,
        "range_model": opts.range_model,
        "headroom_bits": opts.headroom_bits,
        "disabled_passes": sorted(opts.disabled),
        "calibrated": opts.observe is not None,
    }
    # Who learns each output: the client, and nobody else (checked by the runtime before
    # any traffic, runtime.program.check_program).
    g.meta["reveal"] = {o: "client" for o in g.outputs}
    return g
