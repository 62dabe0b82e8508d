"""Compiler passes: float IR → secure fixed-point IR (DESIGN.md §4)."""

from .errors import CompileError
from .pipeline import CompileOptions, describe, pass_names, run_pipeline

__all__ = ["CompileError", "CompileOptions", "describe", "pass_names", "run_pipeline"]
