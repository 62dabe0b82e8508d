"""IR: types, building, printing, JSON round trip, verifier messages."""

import numpy as np
import pytest

from twofold.ir import (
    Fix,
    Graph,
    IRVerifyError,
    TensorType,
    Visibility,
    graph_from_json,
    graph_to_json,
    parse_type,
    program_hash,
    verify,
)


def small_graph() -> Graph:
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 3, 8, 8]}, name="x")
    w = g.add_param("conv.weight", np.ones((4, 3, 3, 3), np.float32))
    b = g.add_param("conv.bias", np.zeros(4, np.float32))
    y = g.add("conv2d", [x, w, b], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, name="y")
    r = g.add("relu", [y])
    p = g.add("maxpool", [r], {"kernel": [2, 2], "strides": [2, 2]})
    f = g.add("flatten", [p])
    g.outputs = [f]
    g.meta["output_function"] = {f: "sigmoid"}
    return g


def test_types_print_and_parse():
    t = TensorType((1, 64, 112, 112), Fix(32, 11), Visibility.SECRET)
    assert str(t) == "fix<32,11>[1,64,112,112] @secret"
    assert parse_type(str(t)) == t
    assert parse_type("float32[1,3] @client").vis is Visibility.CLIENT
    with pytest.raises(ValueError):
        Fix(65, 3)


def test_shapes_and_visibility():
    g = small_graph()
    assert g["x"].type.vis is Visibility.CLIENT
    assert g["conv.weight"].type.vis is Visibility.SERVER
    assert g["y"].type.shape == (1, 4, 4, 4)
    assert g["y"].type.vis is Visibility.SECRET
    assert g[g.outputs[0]].type.shape == (1, 16)
    verify(g)


def test_printer_reads_like_a_program():
    text = str(small_graph())
    assert "%x " in text and '= input "image"' in text
    assert "float32[1,4,4,4] @secret = conv2d(%x, %conv.weight, %conv.bias)" in text
    assert text.strip().endswith("return %flatten")


def test_json_round_trip_is_identical():
    g = small_graph()
    g2 = graph_from_json(graph_to_json(g))
    assert g2 == g
    assert graph_to_json(g2) == graph_to_json(g)
    assert program_hash(g2) == program_hash(g)


def test_verifier_names_the_node():
    g = small_graph()
    g["y"].type = g["y"].type.with_(shape=(1, 4, 5, 5))
    with pytest.raises(IRVerifyError, match=r"%y: declared shape \[1, 4, 5, 5\]"):
        verify(g, "test")


def test_verifier_checks_scales():
    g = Graph()
    a = g.add(
        "input",
        attrs={"name": "a", "shape": [4]},
        type=TensorType((4,), Fix(32, 8), Visibility.CLIENT),
    )
    b = g.add(
        "input",
        attrs={"name": "b", "shape": [4]},
        type=TensorType((4,), Fix(32, 9), Visibility.CLIENT),
    )
    s = g.add("add", [a, b], type=TensorType((4,), Fix(32, 8), Visibility.CLIENT), name="s")
    g.outputs = [s]
    with pytest.raises(IRVerifyError, match="%s: add: operands have different scales"):
        verify(g)


def test_rewrites_and_dead_code():
    g = small_graph()
    r = g.users("y")[0]
    g.replace_uses(r, "y")
    g.remove(r)
    assert g.remove_dead() == 0
    verify(g)
    g.outputs = ["y"]
    assert g.remove_dead() == 2
    assert "maxpool" not in g
