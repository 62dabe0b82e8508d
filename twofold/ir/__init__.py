"""The typed dataflow IR shared by every stage (DESIGN.md §3)."""

from .graph import Graph, Node
from .ops import OPS, OpSpec, ShapeError
from .printer import format_graph, format_node
from .serialize import graph_from_json, graph_to_json, program_hash
from .types import FLOAT32, Fix, Float32, TensorType, Visibility, parse_type
from .verify import IRVerifyError, verify

__all__ = [
    "FLOAT32",
    "OPS",
    "Fix",
    "Float32",
    "Graph",
    "IRVerifyError",
    "Node",
    "OpSpec",
    "ShapeError",
    "TensorType",
    "Visibility",
    "format_graph",
    "format_node",
    "graph_from_json",
    "graph_to_json",
    "parse_type",
    "program_hash",
    "verify",
]
