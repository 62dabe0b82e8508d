"""Errors of the compiler: a model or setting it cannot turn into a secure program."""

from __future__ import annotations


class CompileError(ValueError):
    """The model or a compile setting is at fault; the message names the tensor or node."""
