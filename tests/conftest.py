"""Shared fixtures: ``zoo_onnx(name, size)`` exports a zoo model once per session."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zoo  # noqa: E402


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory) -> Callable[[str, int], Path]:
    """Callable ``(name, size=32) -> Path`` of the model's ONNX file, cached for the session."""
    root = tmp_path_factory.mktemp("zoo")
    cache: dict[tuple[str, int], Path] = {}

    def get(name: str, size: int = 32) -> Path:
        key = (name, size)
        if key not in cache:
            cache[key] = zoo.export(name, root / f"{name}_{size}.onnx", size=size)
        return cache[key]

    return get
