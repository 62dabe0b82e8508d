"""The dataflow graph: SSA values, one op a node, edges from producer to consumer.

Each node defines exactly one value, named like the node. Node order is kept
topological (inputs before users), so walking ``graph.nodes`` is executing the
program. Edges live in a networkx ``MultiDiGraph`` (key = argument position) so
passes can ask for users, predecessors and reachability cheaply.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from . import ops as _ops
from .types import TensorType, Visibility


def _canon(value: Any) -> Any:
    """Attribute values as JSON would give them back: lists, ints, floats, strings."""
    if isinstance(value, tuple | list):
        return [_canon(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return _canon(value.tolist())
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    return value


@dataclass
class Node:
    """One op: ``name = op(inputs...) {attrs}`` of type ``type``."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]
    type: TensorType
    meta: dict[str, Any] = field(default_factory=dict)


class Graph:
    """A program over tensors. ``params`` holds weight and constant values by key."""

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._g = nx.MultiDiGraph()
        self.outputs: list[str] = []
        self.params: dict[str, np.ndarray] = {}
        self.meta: dict[str, Any] = {}
        self._counter = 0

    # ------------------------------------------------------------- building
    def fresh_name(self, hint: str = "t") -> str:
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in hint) or "t"
        name = base
        while name in self._nodes:
            self._counter += 1
            name = f"{base}_{self._counter}"
        return name

    def add(
        self,
        op: str,
        inputs: list[str] | tuple[str, ...] = (),
        attrs: dict[str, Any] | None = None,
        type: TensorType | None = None,
        name: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Append a node; its type is inferred from the operands unless given."""
        spec = _ops.spec(op)
        full = dict(copy.deepcopy(spec.defaults))
        full.update(attrs or {})
        full = _canon(full)
        for i in inputs:
            if i not in self._nodes:
                raise KeyError(f"{op}: operand %{i} is not defined")
        if type is None:
            type = self.infer_type(op, list(inputs), full)
        name = self.fresh_name(name or op)
        node = Node(name, op, list(inputs), full, type, dict(meta or {}))
        self._nodes[name] = node
        self._g.add_node(name)
        for pos, src in enumerate(inputs):
            self._g.add_edge(src, name, key=pos)
        return name

    def infer_type(self, op: str, inputs: list[str], attrs: dict[str, Any]) -> TensorType:
        """Shape from the op's rule; visibility joined; dtype float (passes retype)."""
        spec = _ops.spec(op)
        in_types = [self._nodes[i].type for i in inputs]
        shape = spec.infer([t.shape for t in in_types], attrs)
        if op == "input":
            vis = Visibility.CLIENT
        elif op == "weight":
            vis = Visibility.SERVER
        elif op == "const":
            vis = Visibility.PUBLIC
        else:
            from .types import join_visibility

            vis = join_visibility(*(t.vis for t in in_types))
        dtype = in_types[0].dtype if in_types else TensorType(()).dtype
        return TensorType(shape, dtype, vis)

    def add_param(self, key: str, value: np.ndarray, public: bool = False) -> str:
        """Store a tensor and add its ``weight`` (server) or ``const`` (public) node."""
        value = np.asarray(value)
        self.params[key] = value
        return self.add(
            "const" if public else "weight",
            attrs={"key": key, "shape": list(value.shape)},
            name=key,
        )

    # ------------------------------------------------------------- queries
    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def __getitem__(self, name: str) -> Node:
        return self._nodes[name]

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> list[Node]:
        """Nodes in program (topological) order."""
        return list(self._nodes.values())

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def users(self, name: str) -> list[str]:
        """Nodes that read ``name`` (each once, in program order)."""
        succ = set(self._g.successors(name))
        return [n for n in self._nodes if n in succ]

    def is_output(self, name: str) -> bool:
        return name in self.outputs

    def inputs(self) -> list[Node]:
        return [n for n in self._nodes.values() if n.op == "input"]

    def nx_graph(self) -> nx.MultiDiGraph:
        """The edge structure (read-only use)."""
        return self._g

    # ------------------------------------------------------------- rewriting
    def set_inputs(self, name: str, inputs: list[str]) -> None:
        node = self._nodes[name]
        for src in set(node.inputs):
            while self._g.has_edge(src, name):
                self._g.remove_edge(src, name)
        node.inputs = list(inputs)
        for pos, src in enumerate(inputs):
            self._g.add_edge(src, name, key=pos)

    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of ``old`` (and the output list) read ``new`` instead."""
        for user in self.users(old):
            if user == new:
                continue
            self.set_inputs(user, [new if i == old else i for i in self._nodes[user].inputs])
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove(self, name: str) -> None:
        if self.users(name):
            raise ValueError(f"cannot remove %{name}: still used by {self.users(name)}")
        self._g.remove_node(name)
        del self._nodes[name]

    def remove_dead(self) -> int:
        """Drop nodes that no output depends on; returns how many went."""
        live = set(self.outputs)
        for o in self.outputs:
            live |= nx.ancestors(self._g, o)
        dead = [n for n in self._nodes if n not in live]
        for n in reversed(dead):
            self._g.remove_node(n)
            del self._nodes[n]
        used = {n.attrs["key"] for n in self._nodes.values() if n.op in ("weight", "const")}
        for k in [k for k in self.params if k not in used]:
            del self.params[k]
        return len(dead)

    def toposort(self) -> None:
        """Restore program order after rewrites that appended nodes out of order."""
        pos = {n: i for i, n in enumerate(self._nodes)}
        order = list(nx.lexicographical_topological_sort(self._g, key=lambda n: pos[n]))
        self._nodes = {n: self._nodes[n] for n in order}

    def copy(self) -> Graph:
        g = Graph()
        g._nodes = {k: copy.deepcopy(v) for k, v in self._nodes.items()}
        g._g = self._g.copy()
        g.outputs = list(self.outputs)
        g.params = dict(self.params)
        g.meta = copy.deepcopy(self.meta)
        g._counter = self._counter
        return g

    def __eq__(self, other: object) -> bool:
        """Structural equality (names, ops, operands, attrs, types, metadata; not params)."""
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            list(self._nodes) == list(other._nodes)
            and all(self._nodes[k] == other._nodes[k] for k in self._nodes)
            and self.outputs == other.outputs
            and self.meta == other.meta
        )

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)
