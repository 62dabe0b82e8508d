"""The 2PC program is the public IR itself: both parties walk it; nobody runs vendor code.

:class:`Program` walks ``graph.nodes`` in program order and calls, for each node, the
:class:`~twofold.runtime.executor.Executor` method named like its op with the arguments
:func:`call_args` builds (the emitter of ``program.py`` renders the same calls as source, so
the emitted file and this walker cannot drift). Tensors are dropped after their last reader.
At the end each declared output is revealed with ``rt.output`` — to the client only.

Before any traffic :func:`check_program` checks what the walk may do (DESIGN.md §1): every op
is one the runtime executes as a secure protocol or as local work on shares, the graph is a
single-ring fixed-point program, and it reveals exactly the declared outputs, only to the
client: ``meta["reveal"]`` names the recipient of each output and an output must be a final
value, not an intermediate one other ops read, nor an input or a parameter. The check does
not decide *which* function the vendor computes (the hospital trusts the architecture it was
given); it guarantees that the image never leaves the client except as shares.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import Graph, IRVerifyError, Node, program_hash, verify
from ..ir.public import overflow_checked
from .errors import RuntimeProtocolError

#: Ops the runtime executes; each is a method of twofold.runtime.executor.Executor.
SUPPORTED = (
    "input weight const conv2d gemm affine sign_affine add sub mul mul_const relu maxpool "
    "sumpool concat flatten reshape transpose pad slice reduce_sum lut reciprocal rsqrt log trunc"
).split()
PARAMS = ("weight", "const")


class ProgramError(RuntimeProtocolError, ValueError):
    """The IR is not a program the runtime will run (names the node at fault)."""


@dataclass(frozen=True)
class Ref:
    """An operand: the run-time value of IR node ``name``."""

    name: str


def _tuple(value: Any) -> Any:  # noqa: ANN401
    """JSON lists as tuples (the form the Executor methods take)."""
    if isinstance(value, list | tuple):
        return tuple(_tuple(v) for v in value)
    return value


def call_args(graph: Graph, node: Node, ell: int) -> tuple[list[Any], dict[str, Any]]:
    """Positional arguments (after the node name) and keywords of the Executor call for
    ``node``; an operand is a :class:`Ref`. Shared by this walker and the emitter."""
    t = node.type
    shape = tuple(t.shape)
    kw: dict[str, Any] = {}
    if node.op == "input":
        args: list[Any] = [node.attrs["name"], shape]
        kw["scale"] = t.dtype.scale
    elif node.op == "weight":
        args = [node.attrs["key"], shape]
    elif node.op == "const":
        key = node.attrs["key"]
        if key not in graph.params:
            raise ProgramError(f"%{node.name}: public constant {key!r} has no value")
        args = [tuple(np.asarray(graph.params[key]).astype(np.int64).ravel().tolist()), shape]
    else:
        args = [Ref(i) for i in node.inputs]
        kw = {k: _tuple(v) for k, v in node.attrs.items()}
        if node.op in ("pad", "lut", "reciprocal", "rsqrt", "log"):
            kw["scale"] = t.dtype.scale
        if node.op in ("reciprocal", "rsqrt", "log"):
            kw["in_scale"] = graph[node.inputs[0]].type.dtype.scale
            del kw["out_scale"]
    if t.dtype.ell != ell:
        kw["ell"] = t.dtype.ell
    return args, kw


def last_uses(graph: Graph) -> dict[str, list[str]]:
    """For each node, the values whose last reader it is (outputs are never freed)."""
    last: dict[str, str] = {}
    for node in graph.nodes:
        for i in node.inputs:
            last[i] = node.name
    frees: dict[str, list[str]] = {n.name: [] for n in graph.nodes}
    for value, reader in last.items():
        if value not in graph.outputs:
            frees[reader].append(value)
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    for v in frees.values():
        v.sort(key=order.__getitem__)
    return frees


def check_ops(graph: Graph) -> int:
    """The single ring ℓ of the graph; ProgramError naming the node if it is not a secure IR,
    or saying so if ``meta.ell`` is not the ring of its tensors."""
    ells = set()
    for node in graph.nodes:
        if node.op not in SUPPORTED:
            raise ProgramError(
                f"%{node.name}: op {node.op!r} has no 2PC form; supported: {', '.join(SUPPORTED)}"
            )
        if not node.type.is_fixed:
            raise ProgramError(f"%{node.name}: type {node.type} is not fixed point (not compiled?)")
        ells.add(node.type.dtype.ell)
    ring = max(ells, default=32)  # the program's ring: only a truncation may narrow it
    ell = graph.meta.get("ell", ring)
    if ell != ring or not isinstance(ell, int):
        raise ProgramError(
            f"meta.ell is {ell!r}, but the program's tensors are on the ring of {ring} bits "
            f"(their types say fix<{ring},s>): the IR is inconsistent"
        )
    return ell


def reveals(graph: Graph) -> dict[str, str]:
    """Declared recipient of each revealed value (``meta["reveal"]``; every output to the client
    when the IR declares nothing)."""
    rev = graph.meta.get("reveal")
    if rev is None:
        return {o: "client" for o in graph.outputs}
    if not isinstance(rev, dict):
        raise ProgramError(f"meta.reveal must map value names to 'client', got {rev!r}")
    return rev


def check_program(graph: Graph) -> int:
    """Refuse, before any traffic, a malformed program (``ir.verify``: operands defined before
    use, shapes, rings and scales re-derived) or one that could reveal anything but its
    declared outputs to the client (see the module doc); returns ℓ."""
    ell = check_ops(graph)
    bare = graph.copy()
    bare.params = {}  # the client has no weight values; verify the structure alone
    try:
        verify(bare, "loading the bundle")
    except IRVerifyError as e:
        raise ProgramError(str(e)) from None
    if not graph.outputs:
        raise ProgramError("the program declares no output")
    rev = reveals(graph)
    for name, to in rev.items():
        if name not in graph:
            raise ProgramError(f"meta.reveal names %{name}, which the program does not define")
        if to != "client":
            raise ProgramError(
                f"%{name}: the program reveals it to {to!r}; the client refuses to reveal "
                "anything except its outputs to itself"
            )
        if name not in graph.outputs:
            raise ProgramError(f"%{name}: the program reveals a value that is not an output")
    for o in graph.outputs:
        if o not in graph:
            raise ProgramError(f"output %{o} is not defined by the program")
        if o not in rev:
            raise ProgramError(f"output %{o}: no recipient declared in meta.reveal")
        node = graph[o]
        if node.op in ("input", *PARAMS):
            raise ProgramError(f"output %{o}: the program reveals its {node.op} directly")
        if graph.users(o):
            raise ProgramError(
                f"output %{o}: the program reveals an intermediate value "
                f"(read by %{graph.users(o)[0]})"
            )
    if len(set(graph.outputs)) != len(graph.outputs):
        raise ProgramError("the program reveals an output twice")
    return ell


def check_calls(calls: list[tuple[Node, list[Any], dict[str, Any]]]) -> None:
    """ProgramError, before any traffic, for a call the Executor method would reject: an
    attribute it does not take (an IR edited to add one, or a node whose ring differs from
    the program's) would otherwise end the run mid-protocol with a TypeError."""
    from .executor import Executor  # the walker's target; imported late (it pulls protocols)

    for node, args, kw in calls:
        try:
            inspect.signature(getattr(Executor, node.op)).bind(None, node.name, *args, **kw)
        except TypeError as e:
            raise ProgramError(
                f"%{node.name}: {node.op} cannot take these arguments: {e}"
            ) from None


class Program:
    """A checked public IR, ready to run on an Executor (the constants the runner reads have
    the names a generated ``program.py`` used)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.ELL = check_program(graph)
        self.PROGRAM_HASH = program_hash(graph)
        fns = graph.meta.get("output_function", {})
        self.INPUTS = {
            n.attrs["name"]: {"shape": list(n.type.shape), "scale": n.type.dtype.scale}
            for n in graph.inputs()
        }
        self.OUTPUTS = {
            o: {
                "shape": list(graph[o].type.shape),
                "scale": graph[o].type.dtype.scale,
                "function": fns.get(o, "identity"),
            }
            for o in graph.outputs
        }
        self.LABELS = list(graph.meta.get("labels", []))
        self.OVERFLOW_CHECKED = overflow_checked(graph)
        self.STEPS = sum(1 for n in graph.nodes if n.op not in PARAMS) + len(graph.outputs)
        self._calls = [(n, *call_args(graph, n, self.ELL)) for n in graph.nodes]
        check_calls(self._calls)
        self._frees = last_uses(graph)

    def run(self, rt: Any) -> dict[str, Any]:  # noqa: ANN401 - an Executor
        """Execute on ``rt``; the revealed outputs (signed integers on the client, None on the
        server)."""
        env: dict[str, Any] = {}
        for node, args, kw in self._calls:
            vals = [env[a.name] if isinstance(a, Ref) else a for a in args]
            env[node.name] = getattr(rt, node.op)(node.name, *vals, **kw)
            for v in self._frees[node.name]:
                del env[v]
        return {o: rt.output(o, env[o]) for o in self.graph.outputs}


__all__ = [
    "PARAMS",
    "SUPPORTED",
    "Program",
    "ProgramError",
    "Ref",
    "call_args",
    "check_calls",
    "check_ops",
    "check_program",
    "last_uses",
    "overflow_checked",
]
