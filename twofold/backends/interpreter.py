"""A torch.fx-style walker of an ``ir.Graph``: one method per op, values freed after last use.

Backends (float reference, cleartext fixed point, ...) subclass ``Interpreter`` and
define ``op_<name>(node, *args)`` for the ops they execute. The walk is the program
order of the graph (DESIGN.md §3: node order is topological, so walking is executing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Node


class InterpreterError(ValueError):
    """The graph cannot be run on the inputs given (missing input, unknown op, ...)."""


class Interpreter:
    """Executes ``graph`` node by node; subclasses provide ``op_<opname>`` methods.

    ``params`` overrides ``graph.params`` (e.g. integer weights of a compiled graph).
    ``self.env`` holds the live values; a value is dropped right after its last reader
    runs unless it is a graph output or ``keep_all`` is set (for debugging/recording).
    """

    def __init__(
        self,
        graph: Graph,
        params: dict[str, np.ndarray] | None = None,
        keep_all: bool = False,
    ) -> None:
        self.graph = graph
        self.params = graph.params if params is None else params
        self.keep_all = keep_all
        self.env: dict[str, Any] = {}
        self._last_use = self._compute_last_use()

    # ------------------------------------------------------------- hooks
    def param(self, key: str) -> np.ndarray:
        """The value of parameter ``key`` (a weight or public constant)."""
        try:
            return self.params[key]
        except KeyError:
            raise InterpreterError(f"parameter {key!r} has no value") from None

    def convert_input(self, node: Node, value: np.ndarray) -> Any:
        """Turn a user-supplied input into the backend's representation (checked shape)."""
        value = np.asarray(value)
        if tuple(value.shape) != node.type.shape:
            raise InterpreterError(
                f"input {node.name!r} has shape {list(value.shape)}, "
                f"the graph expects {list(node.type.shape)}"
            )
        return value

    def convert_output(self, node: Node, value: Any) -> np.ndarray:
        """Turn a backend value into the array returned by ``run``."""
        return np.asarray(value)

    # ------------------------------------------------------------- walking
    def _compute_last_use(self) -> dict[str, list[str]]:
        """For each node, the values whose last reader it is (to free after it runs)."""
        last: dict[str, str] = {}
        for node in self.graph.nodes:
            for i in node.inputs:
                last[i] = node.name
        frees: dict[str, list[str]] = {}
        outputs = set(self.graph.outputs)
        for value, user in last.items():
            if value not in outputs:
                frees.setdefault(user, []).append(value)
        return frees

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the graph; returns ``{output name: value}`` in ``graph.outputs`` order."""
        self.env = {}
        self._inputs = inputs
        names = {n.name for n in self.graph.inputs()}
        names |= {n.attrs.get("name", n.name) for n in self.graph.inputs()}
        unknown = sorted(set(inputs) - names)
        if unknown:
            raise InterpreterError(
                f"unknown input(s) {unknown}; the graph's inputs are {sorted(names)}"
            )
        for node in self.graph.nodes:
            args = [self.env[i] for i in node.inputs]
            self.env[node.name] = self.run_node(node, args)
            if not self.keep_all:
                for dead in self._last_use.get(node.name, ()):
                    del self.env[dead]
        return {o: self.convert_output(self.graph[o], self.env[o]) for o in self.graph.outputs}

    def run_node(self, node: Node, args: list[Any]) -> Any:
        """Dispatch to ``op_<node.op>``."""
        fn = getattr(self, f"op_{node.op}", None)
        if fn is None:
            raise InterpreterError(
                f"{type(self).__name__} cannot execute op {node.op!r} (node %{node.name})"
            )
        return fn(node, *args)

    # ------------------------------------------------------------- sources
    def op_input(self, node: Node) -> Any:
        key = node.attrs.get("name", node.name)
        for k in (node.name, key):
            if k in self._inputs:
                return self.convert_input(node, self._inputs[k])
        raise InterpreterError(f"missing input {node.name!r} of shape {list(node.type.shape)}")

    def op_weight(self, node: Node) -> Any:
        return self.param(node.attrs["key"])

    def op_const(self, node: Node) -> Any:
        return self.param(node.attrs["key"])
