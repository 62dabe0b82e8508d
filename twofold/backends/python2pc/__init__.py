"""Python 2PC code generation: secure IR -> ``program.py``, run by both parties (DESIGN.md §5)."""

from .emit import emit_program, write_program

__all__ = ["emit_program", "write_program"]
