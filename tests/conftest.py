"""Shared fixtures: ``zoo_onnx(name, size)`` exports a zoo model once per session;
``recording``: the socketpair channels of ``net.run_pair`` keep a copy of every array they
receive (``chan.view``: a party's view)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

# One BLAS thread (here and in subprocesses): on the shared 2-core box a contended OpenBLAS
# pool made DenseNet-121's float reference 14x slower under load (3.5 s vs 0.25 s).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
threadpool_limits(1)

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


@pytest.fixture
def recording(monkeypatch):  # noqa: ANN001, ANN201
    """``net.run_pair``'s channels record every array they receive in ``chan.view``."""
    import socket

    from twofold.runtime import net

    class Recording(net.Channel):
        def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
            super().__init__(*a, **kw)
            self.view: list = []

        def recv_array(self, dtype, shape):  # noqa: ANN001, ANN201
            a = super().recv_array(dtype, shape)
            self.view.append(a.copy())
            return a

    def pair(timeout: float = 30.0):  # noqa: ANN202
        a, b = socket.socketpair()
        return Recording(a, timeout), Recording(b, timeout)

    monkeypatch.setattr(net, "socketpair_channels", pair)
