"""Executor: the API a generated ``program.py`` calls, one method per IR op (DESIGN.md §5).

Both parties run the same program. A run-time tensor is this party's additive share mod 2^ℓ
(uint64); a weight is :class:`Private` (its value on the server, ``None`` on the client); a
public constant is :class:`Public`. Local ops on shares (add/sub/concat/reshape/pad/sumpool,
products by public values) need no messages; a public or server-only addend is added by the
server alone. ReLU, MaxPool, truncation go to the SCI-style protocols (CrypTFlow2 §3-§5),
products with server weights to the linear protocols. Every call is timed and its traffic
counted in a channel section named after the IR value, and in one per layer kind.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir import lut
from . import protocols as P
from .errors import RuntimeProtocolError
from .protocols import overflow
from .protocols.lut import lut as lut_protocol
from .protocols.mul import mul as mul_protocol
from .protocols.newton import newton_fn
from .protocols.overflow import any_of, exceeds
from .protocols.relu_check import checked_relu, mergeable
from .ring import from_signed, mask, to_signed
from .sharing import reveal, reveal_bits, share

#: Layer kind of each op, for the per-kind cost breakdown.
KIND = {
    "conv2d": "linear",
    "gemm": "linear",
    "affine": "linear",
    "sign_affine": "linear",
    "mul": "linear",
    "relu": "relu",
    "check": "check",
    "relu_trunc": "relu",
    "lut": "math",
    "reciprocal": "math",
    "rsqrt": "math",
    "log": "math",
    "trunc": "truncation",
    "maxpool": "pooling",
    "sumpool": "pooling",
    "input": "io",
    "output": "io",
}


class ExecutionError(RuntimeProtocolError):
    """The program cannot run on what it was given (names the IR value at fault)."""


@dataclass(frozen=True)
class Private:
    """A server-private tensor: signed integer values on the server, ``None`` on the client."""

    value: np.ndarray | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Public:
    """A public tensor of signed integers (fixed point), known to both parties."""

    value: np.ndarray


@dataclass(frozen=True)
class _FusedRelu:
    """What :meth:`Executor.relu` returns for a ReLU in the fusion plan: its input, handed to
    the truncation that reads it (runtime/fusion.py)."""

    name: str
    x: np.ndarray
    limit: Any = None  # checked: the server's limit (the client's: None) ...
    grain: int | None = None  # ... and its public grain; None: unchecked


@dataclass
class LayerCost:
    """What one IR op cost this party."""

    name: str
    op: str
    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_recv: int = 0
    rounds: int = 0


@dataclass
class CostLog:
    """Per-layer costs in program order, plus the peak resident set of this process."""

    layers: list[LayerCost] = field(default_factory=list)

    def by_kind(self) -> dict[str, LayerCost]:
        out: dict[str, LayerCost] = {}
        for lc in self.layers:
            k = KIND.get(lc.op, "local")
            acc = out.setdefault(k, LayerCost(k, k))
            acc.seconds += lc.seconds
            acc.bytes_sent += lc.bytes_sent
            acc.bytes_recv += lc.bytes_recv
            acc.rounds += lc.rounds
        return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _window_sum(x: np.ndarray, kernel, strides, pads, dilations, out_hw) -> np.ndarray:  # noqa: ANN001
    """Sum of each pooling window of x (N, C, H, W) mod 2^64, zero padding (local on shares)."""
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    oh, ow = out_hw
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + kh * dh), (pl, pr + kw * dw)))
    out = np.zeros(x.shape[:2] + (oh, ow), np.uint64)
    for i in range(kh):
        for j in range(kw):
            out += xp[:, :, i * dh : i * dh + sh * oh : sh, j * dw : j * dw + sw * ow : sw]
    return out


def _pool_hw(h: int, w: int, kernel, strides, pads, dilations, ceil_mode) -> tuple[int, int]:  # noqa: ANN001
    def one(size: int, k: int, s: int, lo: int, hi: int, d: int) -> int:
        num = size + lo + hi - (d * (k - 1) + 1)
        out = (math.ceil(num / s) if ceil_mode else num // s) + 1
        if ceil_mode and (out - 1) * s >= size + lo:
            out -= 1
        return out

    return (
        one(h, kernel[0], strides[0], pads[0], pads[2], dilations[0]),
        one(w, kernel[1], strides[1], pads[1], pads[3], dilations[1]),
    )


class Executor:
    """Runs a generated program for one party (``party.role`` is "server" or "client").

    ``weights``: the server's signed-integer parameters by key (a dict or an open npz), read
    lazily; ``inputs``: the client's float inputs by input name. ``linear``: "he", "ot" or
    "auto" (passed to the linear protocols). ``progress(done, total, name, op)`` is called
    after every op. ``fuse``: names of the ReLUs run together with the truncation that reads
    them (:func:`~twofold.runtime.fusion.relu_trunc_plan` of the program's IR; both parties
    must pass the same plan). ``chunk``: elements per pass of the non-linear protocols (both
    parties the same; None keeps the party's, by default ``protocols._util.CHUNK``).
    """

    def __init__(
        self,
        party: Any,
        ell: int,
        *,
        weights: Any = None,
        inputs: dict[str, np.ndarray] | None = None,
        linear: str = "auto",
        steps: int = 0,
        progress: Callable[[int, int, str, str], None] | None = None,
        linear_cache: Any = None,
        fuse: frozenset[str] = frozenset(),
        chunk: int | None = None,
    ) -> None:
        self.party = party
        self.fuse = frozenset(fuse)
        if chunk is not None:
            party.chunk = int(chunk)
        self.ell = int(ell)
        self.is_server = party.role == "server"
        self.weights = weights
        self.inputs = inputs or {}
        self.linear = linear
        self.steps = steps
        self.done = 0
        self.progress = progress
        self.cost = CostLog()
        self.linear_cache = linear_cache
        self._linear_mod: Any = None
        self.checks: list[tuple[str, np.ndarray]] = []  # (checked ReLU, shares of x ≥ limit)

    # ------------------------------------------------------------- accounting
    def _run(self, name: str, op: str, fn: Callable[[], Any]) -> Any:
        chan = self.party.chan
        s0, r0, n0 = chan.bytes_sent, chan.bytes_recv, chan.rounds
        t0 = time.perf_counter()
        with chan.section(KIND.get(op, "local")):
            out = fn()
        lc = LayerCost(
            name,
            op,
            time.perf_counter() - t0,
            chan.bytes_sent - s0,
            chan.bytes_recv - r0,
            chan.rounds - n0,
        )
        self.cost.layers.append(lc)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.steps, name, op)
        return out

    def _m(self) -> np.uint64:
        return mask(self.ell)

    def _shares(self, name: str, *xs: Any) -> None:
        for x in xs:
            if isinstance(x, _FusedRelu):
                raise ExecutionError(
                    f"%{name}: reads %{x.name}, a ReLU fused with its truncation (bad fusion plan)"
                )
            if not isinstance(x, np.ndarray) or x.dtype != np.uint64:
                raise ExecutionError(
                    f"%{name}: operand is not a shared tensor ({type(x).__name__})"
                )

    # ------------------------------------------------------------- sources and sinks
    def input(self, name: str, key: str, shape: tuple[int, ...], scale: int) -> np.ndarray:
        """The client quantizes its input at ``scale`` (round to nearest) and shares it: it
        sends a uniform share r to the server and keeps x - r."""

        def go() -> np.ndarray:
            chan = self.party.chan
            if not self.is_server:
                if key not in self.inputs:
                    raise ExecutionError(f"%{name}: no input {key!r} was given to the client")
                x = np.asarray(self.inputs[key], np.float64)
                if tuple(x.shape) != tuple(shape):
                    raise ExecutionError(
                        f"input {key!r} has shape {list(x.shape)}, the program expects "
                        f"{list(shape)}"
                    )
                if not np.all(np.isfinite(x)):
                    raise ExecutionError(f"input {key!r} has non-finite values")
                q = np.rint(x * 2.0**scale)
                if np.abs(q).max(initial=0) >= 2.0**63:
                    raise ExecutionError(f"input {key!r} does not fit 64 bits at scale {scale}")
                s0, s1 = share(from_signed(q.astype(np.int64), self.ell), self.ell, self.party.prg)
                chan.send(s0)
                return s1
            return chan.recv_array(np.uint64, tuple(shape)) & self._m()

        return self._run(name, "input", go)

    def weight(self, name: str, key: str, shape: tuple[int, ...]) -> Private:
        """A server weight by key (signed integers); the client gets a placeholder."""
        if not self.is_server:
            return Private(None, tuple(shape))
        try:
            v = np.asarray(self.weights[key], np.int64)
        except KeyError:
            raise ExecutionError(f"%{name}: weights file lacks {key!r}") from None
        if tuple(v.shape) != tuple(shape):
            raise ExecutionError(f"%{name}: weight {key!r} has shape {list(v.shape)}, not {shape}")
        return Private(v, tuple(shape))

    def const(self, name: str, values: list[int], shape: tuple[int, ...]) -> Public:
        """A public constant (embedded in the program)."""
        return Public(np.asarray(values, np.int64).reshape(shape))

    def output(self, name: str, x: np.ndarray) -> np.ndarray | None:
        """Reveal the shared output to the client: signed integers there, None on the server."""
        self._shares(name, x)

        def go() -> np.ndarray | None:
            v = reveal(self.party, x, self.ell, to="client")
            return None if v is None else to_signed(v, self.ell)

        return self._run(name, "output", go)

    # ------------------------------------------------------------- helpers for mixed operands
    def _ring(self, v: np.ndarray) -> np.ndarray:
        return from_signed(v, self.ell)

    def _addend(self, v: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """My additive share of a public or server-private value (all of it on the server)."""
        if isinstance(v, np.ndarray):
            return v
        if isinstance(v, Public | Private) and self.is_server:
            return self._ring(v.value)
        shp = v.value.shape if isinstance(v, Public) else v.shape
        return np.zeros(shp, np.uint64)

    def _combine(self, name: str, op: str, a: Any, b: Any, sign: int) -> Any:
        if not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
            return self._known(name, op, a, b, lambda p, q: p + sign * q)

        def go() -> np.ndarray:
            x, y = self._addend(a), self._addend(b)
            return ((x + y) if sign > 0 else (x - y)) & self._m()

        return self._run(name, op, go)

    def _known(self, name: str, op: str, a: Any, b: Any, f: Callable) -> Any:  # noqa: ANN401
        """An op whose operands are all public or server-private: computed by whoever knows."""
        if isinstance(a, Public) and isinstance(b, Public):
            return Public(f(a.value, b.value))
        if not self.is_server:
            return Private(None, np.broadcast_shapes(_shape(a), _shape(b)))
        return Private(f(a.value, b.value), np.broadcast_shapes(_shape(a), _shape(b)))

    # ------------------------------------------------------------- local ops
    def add(self, name: str, a: Any, b: Any) -> Any:
        return self._combine(name, "add", a, b, +1)

    def sub(self, name: str, a: Any, b: Any) -> Any:
        return self._combine(name, "sub", a, b, -1)

    def mul_const(self, name: str, x: Any, value: int, scale: int) -> Any:
        if isinstance(x, Public | Private):
            return self._unary_known(x, lambda v: v * int(value))
        self._shares(name, x)
        c = np.array(int(value), np.int64).view(np.uint64)
        return self._run(name, "mul_const", lambda: (x * c) & self._m())

    def concat(self, name: str, *xs: Any, axis: int) -> np.ndarray:
        return self._run(
            name,
            "concat",
            lambda: np.concatenate([self._addend(x) for x in xs], axis=axis),
        )

    def _move(self, name: str, op: str, x: Any, f: Callable[[np.ndarray], np.ndarray]) -> Any:
        if isinstance(x, Public | Private):
            return self._unary_known(x, f)
        self._shares(name, x)
        return self._run(name, op, lambda: np.ascontiguousarray(f(x)))

    def _unary_known(self, x: Public | Private, f: Callable[[np.ndarray], np.ndarray]) -> Any:
        if isinstance(x, Public):
            return Public(f(x.value))
        if x.value is None:
            return Private(None, f(np.zeros(x.shape, np.int8)).shape)
        v = f(x.value)
        return Private(v, v.shape)

    def flatten(self, name: str, x: Any, axis: int) -> Any:
        def f(v: np.ndarray) -> np.ndarray:
            a = axis % (v.ndim + 1) if v.ndim else 0
            return v.reshape(math.prod(v.shape[:a]), math.prod(v.shape[a:]))

        return self._move(name, "flatten", x, f)

    def reshape(self, name: str, x: Any, shape: tuple[int, ...]) -> Any:
        return self._move(name, "reshape", x, lambda v: v.reshape(shape))

    def transpose(self, name: str, x: Any, perm: tuple[int, ...]) -> Any:
        return self._move(name, "transpose", x, lambda v: v.transpose(perm))

    def pad(
        self,
        name: str,
        x: Any,
        pads: tuple[int, ...],
        value: float = 0.0,
        scale: int = 0,
        mode: str = "constant",
    ) -> Any:
        """Padding. Constant: the pad value, rounded at the tensor's ``scale``, is the server's
        share of the border (the client pads its share with zeros). Reflect/edge copy
        elements, so each party pads its own share the same way."""
        r = len(_shape(x))
        width = [(pads[i], pads[i + r]) for i in range(r)]
        if mode != "constant":
            return self._move(name, "pad", x, lambda v: np.pad(v, width, mode=mode))
        fill = int(round(float(value) * 2**scale))
        if isinstance(x, Public | Private):
            return self._unary_known(x, lambda v: np.pad(v, width, constant_values=fill))
        self._shares(name, x)
        c = int(self._ring(np.int64(fill))) if self.is_server else 0
        return self._run(name, "pad", lambda: np.pad(x, width, constant_values=np.uint64(c)))

    def slice(
        self,
        name: str,
        x: Any,
        starts: tuple[int, ...],
        ends: tuple[int, ...],
        axes: tuple[int, ...] | None = None,
        steps: tuple[int, ...] | None = None,
    ) -> Any:
        """x[starts:ends:steps] on ``axes``: data movement, each party slices its share."""
        r = len(_shape(x))
        idx = [slice(None)] * r
        for st, en, ax, sp in zip(
            starts, ends, axes or range(len(starts)), steps or [1] * len(starts), strict=True
        ):
            idx[ax % r] = slice(st, en, sp)
        return self._move(name, "slice", x, lambda v: v[tuple(idx)])

    def reduce_sum(self, name: str, x: np.ndarray, axes: tuple[int, ...], keepdims: int = 1) -> Any:
        """Sum over ``axes``: local, since a sum of shares is a share of the sum."""
        self._shares(name, x)
        ax = tuple(a % x.ndim for a in axes)
        return self._run(
            name, "reduce_sum", lambda: x.sum(axis=ax, keepdims=bool(keepdims)) & self._m()
        )

    def mul(self, name: str, a: Any, b: Any) -> Any:
        """Elementwise product: by a public tensor locally, by a server weight via the linear
        protocol (an affine map with the weight as the multiplier), of two shared tensors by
        correlated OT."""
        if not isinstance(a, np.ndarray):
            a, b = b, a
        if not isinstance(a, np.ndarray):
            return self._known(name, "mul", a, b, lambda p, q: p * q)
        self._shares(name, a)
        if isinstance(b, np.ndarray):  # both shared: the COT product (protocols/mul.py)
            return self._run(name, "mul", lambda: mul_protocol(self.party, a, b, self.ell))
        if isinstance(b, Public):
            c = self._ring(b.value)
            return self._run(name, "mul", lambda: (a * c) & self._m())
        return self._run(name, "mul", lambda: self._lin().mul(self, name, a, b))

    def sumpool(
        self,
        name: str,
        x: np.ndarray,
        kernel: tuple[int, int],
        strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
        dilations: tuple[int, int] = (1, 1),
        ceil_mode: int = 0,
    ) -> np.ndarray:
        """Window sums of shares: local, since a sum of shares is a share of the sum."""
        self._shares(name, x)

        def go() -> np.ndarray:
            hw = _pool_hw(x.shape[2], x.shape[3], kernel, strides, pads, dilations, ceil_mode)
            return _window_sum(x, kernel, strides, pads, dilations, hw) & self._m()

        return self._run(name, "sumpool", go)

    # ------------------------------------------------------------- protocols
    def relu(
        self, name: str, x: np.ndarray, limit: Private | None = None, grain: int = 0
    ) -> np.ndarray | _FusedRelu:
        """ReLU; one in the fusion plan costs nothing here and runs with its truncation. With a
        server-private ``limit`` (a multiple of 2^``grain``) also the shares of 1{x ≥ limit}
        per element (overflow detection), kept for ``verdict``: computed with the ReLU's own
        millionaire (``protocols/relu_check.py``), else apart (``protocols/overflow.py``)."""
        self._shares(name, x)
        if limit is None:
            if name in self.fuse:
                return self._run(name, "relu", lambda: _FusedRelu(name, x))
            return self._run(name, "relu", lambda: P.relu(self.party, x, self.ell))
        lim = limit.value if self.is_server else None
        slot = len(self.checks)
        self.checks.append((name, np.zeros(0, np.uint8)))  # program order, filled in below
        if name in self.fuse:
            return self._run(name, "relu", lambda: _FusedRelu(name, x, lim, int(grain)))
        if overflow.MERGED and mergeable(self.ell, int(grain)):
            y, flags = self._run(
                name, "relu", lambda: checked_relu(self.party, x, self.ell, lim, int(grain))
            )
            self.checks[slot] = (name, flags)
            return y
        self._check_apart(slot, x, lim)
        return self._run(name, "relu", lambda: P.relu(self.party, x, self.ell))

    def _check_apart(self, slot: int, x: np.ndarray, lim: Any) -> None:  # noqa: ANN401
        """The standalone check of the ReLU in ``self.checks[slot]`` (protocols/overflow.py)."""
        name = self.checks[slot][0]
        flags = self._run(f"{name}.check", "check", lambda: exceeds(self.party, x, lim, self.ell))
        self.checks[slot] = (name, flags)

    def verdict(self) -> dict[str, Any] | None:
        """After the program: the OR of each checked ReLU's flags, opened to the client only.
        Client: ``{"valid": bool, "overflow_at": first flagged ReLU or None}``; server: None
        (it learns nothing); no checked ReLU: None on both sides, no traffic."""
        if not self.checks:
            return None

        def go() -> np.ndarray | None:
            bits = any_of(self.party, [f for _, f in self.checks])
            return reveal_bits(self.party, bits, to="client")

        opened = self._run("verdict", "check", go)
        if opened is None:
            return None
        bad = [name for (name, _), b in zip(self.checks, opened, strict=True) if b]
        return {"valid": not bad, "overflow_at": bad[0] if bad else None}

    def lut(
        self, name: str, x: np.ndarray, fn: str, alpha: float = 1.0, scale: int = 0
    ) -> np.ndarray:
        """A public function by table lookup (SIRNN-style; ir/lut.py, protocols/lut.py)."""
        self._shares(name, x)
        tables = lut.table(fn, float(alpha), int(scale))
        lo, hi = lut.bounds(fn, int(scale))
        sh = lut.shift(fn, int(scale))
        return self._run(
            name, "lut", lambda: lut_protocol(self.party, x, self.ell, tables, lo, hi, sh)
        )

    def reciprocal(
        self, name: str, x: np.ndarray, floor: float, in_scale: int, scale: int
    ) -> np.ndarray:
        """1/max(x, floor), x at ``in_scale``, the result at ``scale`` (SIRNN §5;
        ir/newton.py, protocols/newton.py)."""
        return self._newton(name, "reciprocal", x, floor, in_scale, scale)

    def rsqrt(
        self, name: str, x: np.ndarray, floor: float, in_scale: int, scale: int
    ) -> np.ndarray:
        """1/sqrt(max(x, floor)), scales as :meth:`reciprocal` (ir/newton.py)."""
        return self._newton(name, "rsqrt", x, floor, in_scale, scale)

    def log(self, name: str, x: np.ndarray, floor: float, in_scale: int, scale: int) -> np.ndarray:
        """ln max(x, floor), scales as :meth:`reciprocal` (ir/newton.py)."""
        return self._newton(name, "log", x, floor, in_scale, scale)

    def _newton(
        self, name: str, kind: str, x: np.ndarray, floor: float, s_in: int, s_out: int
    ) -> np.ndarray:
        self._shares(name, x)
        return self._run(
            name,
            kind,
            lambda: newton_fn(self.party, x, self.ell, kind, int(s_in), int(s_out), float(floor)),
        )

    def trunc(
        self,
        name: str,
        x: np.ndarray | _FusedRelu,
        shift: int,
        kind: str = "faithful",
        ell: int | None = None,
    ) -> np.ndarray:
        out_ell = None if ell is None or ell == self.ell else ell
        if isinstance(x, _FusedRelu):
            if kind != "msb0" or out_ell is not None or not P.relu_trunc_fusable(self.ell, shift):
                raise ExecutionError(
                    f"%{name}: cannot fuse %{x.name} with trunc kind={kind} shift={shift} "
                    "(bad fusion plan)"
                )
            if x.grain is None:
                return self._run(
                    name, "relu_trunc", lambda: P.relu_trunc(self.party, x.x, self.ell, shift)
                )
            slot = next(i for i, (n, _) in enumerate(self.checks) if n == x.name)
            if overflow.MERGED and mergeable(self.ell, x.grain, shift):
                y, flags = self._run(
                    name,
                    "relu_trunc",
                    lambda: checked_relu(self.party, x.x, self.ell, x.limit, x.grain, shift),
                )
                self.checks[slot] = (x.name, flags)
                return y
            self._check_apart(slot, x.x, x.limit)
            return self._run(
                name, "relu_trunc", lambda: P.relu_trunc(self.party, x.x, self.ell, shift)
            )
        self._shares(name, x)
        return self._run(
            name, "trunc", lambda: P.trunc(self.party, x, self.ell, shift, kind, out_ell)
        )

    def maxpool(
        self,
        name: str,
        x: np.ndarray,
        kernel: tuple[int, int],
        strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
        dilations: tuple[int, int] = (1, 1),
        ceil_mode: int = 0,
    ) -> np.ndarray:
        self._shares(name, x)
        return self._run(
            name,
            "maxpool",
            lambda: P.maxpool(
                self.party,
                x,
                self.ell,
                kernel,
                strides,
                pads,
                dilations=dilations,
                ceil_mode=bool(ceil_mode),
            ),  # fmt: skip
        )

    def conv2d(
        self,
        name: str,
        x: np.ndarray,
        w: Private,
        b: Any = None,
        *,
        strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
        dilations: tuple[int, int] = (1, 1),
        group: int = 1,
        ceil_mode: int = 0,
    ) -> np.ndarray:
        """Convolution of shares with a server weight (and bias) via the linear protocol."""
        self._shares(name, x)
        attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": group}
        return self._run(name, "conv2d", lambda: self._lin().conv2d(self, name, x, w, b, attrs))

    def gemm(self, name: str, a: Any, b: Any, c: Any = None) -> np.ndarray:
        """a @ b (+ c) with one operand shared and the other a server weight."""
        return self._run(name, "gemm", lambda: self._lin().gemm(self, name, a, b, c))

    def affine(self, name: str, x: np.ndarray, m: Any, a: Any) -> np.ndarray:
        """x * m[c] + a[c] over channel axis 1 (BatchNorm that could not be folded)."""
        self._shares(name, x)
        return self._run(name, "affine", lambda: self._lin().affine(self, name, x, m, a))

    def sign_affine(self, name: str, x: np.ndarray, sign: Any, a: Any) -> np.ndarray:
        """x * sign[c] + a[c] over channel axis 1, sign ±1 server-private (a BatchNorm folded
        forward into the next linear layer): one correlated OT per channel."""
        self._shares(name, x)
        return self._run(
            name, "sign_affine", lambda: self._lin().sign_affine(self, name, x, sign, a)
        )

    def _lin(self) -> Any:  # noqa: ANN401
        if self._linear_mod is None:
            from .linear_ops import LinearOps

            self._linear_mod = LinearOps(self.party, self.ell, self.linear, self.linear_cache)
        return self._linear_mod


def _shape(v: Any) -> tuple[int, ...]:  # noqa: ANN401
    if isinstance(v, Public):
        return v.value.shape
    if isinstance(v, Private):
        return v.shape
    return np.shape(v)


__all__ = ["CostLog", "ExecutionError", "Executor", "LayerCost", "Private", "Public", "peak_rss_mb"]
