"""The Interpreter base: program-order walk, dispatch, freeing after last use, errors."""

import numpy as np
import pytest

from twofold.backends.interpreter import Interpreter, InterpreterError
from twofold.ir import Graph


def _graph() -> Graph:
    g = Graph()
    x = g.add("input", attrs={"name": "x", "shape": [1, 3]}, name="x")
    w = g.add_param("w", np.ones((1, 3), np.float32))
    y = g.add("add", [x, w])
    r = g.add("relu", [y])
    g.outputs = [r]
    return g


class _Small(Interpreter):
    def __init__(self, graph, **kw):
        super().__init__(graph, **kw)
        self.live_sizes: list[int] = []

    def run_node(self, node, args):
        self.live_sizes.append(len(self.env))
        return super().run_node(node, args)

    def op_add(self, node, a, b):
        return a + b

    def op_relu(self, node, a):
        return np.maximum(a, 0)


def test_runs_and_frees_dead_values():
    it = _Small(_graph())
    out = it.run({"x": np.array([[-3.0, 0.0, 1.0]], np.float32)})
    assert list(out) == ["relu"]
    np.testing.assert_array_equal(out["relu"], [[0.0, 1.0, 2.0]])
    assert list(it.env) == ["relu"]  # x, w and add were freed after their last reader
    assert it.live_sizes == [0, 1, 2, 1]


def test_keep_all_keeps_intermediates():
    it = _Small(_graph(), keep_all=True)
    it.run({"x": np.zeros((1, 3), np.float32)})
    assert set(it.env) == {"x", "w", "add", "relu"}


def test_errors_name_the_culprit():
    g = _graph()
    with pytest.raises(InterpreterError, match="missing input 'x'"):
        _Small(g).run({})
    with pytest.raises(InterpreterError, match=r"shape \[1, 4\].*\[1, 3\]"):
        _Small(g).run({"x": np.zeros((1, 4))})
    with pytest.raises(InterpreterError, match="unknown input"):
        _Small(g).run({"x": np.zeros((1, 3)), "y": np.zeros(1)})
    with pytest.raises(InterpreterError, match="cannot execute op 'relu'"):
        _NoRelu(g).run({"x": np.zeros((1, 3))})


class _NoRelu(Interpreter):
    def op_add(self, node, a, b):
        return a + b
