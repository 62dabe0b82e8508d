"""Tensor types of the IR: shape, element type and visibility.

A float tensor prints as ``float32[1,3,224,224] @client``; a fixed-point one as
``fix<32,11>[1,64,112,112] @secret`` (ring Z_2^32, 11 fractional bits), the
form of DESIGN.md §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum


class Visibility(str, Enum):
    """Who knows a tensor's value: everyone, one party, or nobody (additively shared)."""

    PUBLIC = "public"
    SERVER = "server"
    CLIENT = "client"
    SECRET = "secret"


@dataclass(frozen=True)
class Float32:
    """IEEE single precision, the element type before quantization."""

    def __str__(self) -> str:
        return "float32"


@dataclass(frozen=True)
class Fix:
    """Fixed point in the ring Z_2^ell, two's complement, with ``scale`` fractional bits."""

    ell: int
    scale: int

    def __post_init__(self) -> None:
        if not 1 <= self.ell <= 64:
            raise ValueError(f"ring bit length must be in 1..64, got {self.ell}")
        if self.scale < 0:
            raise ValueError(f"scale must be non-negative, got {self.scale}")

    def __str__(self) -> str:
        return f"fix<{self.ell},{self.scale}>"


ElemType = Float32 | Fix
FLOAT32 = Float32()


@dataclass(frozen=True)
class TensorType:
    """Static type of an IR value."""

    shape: tuple[int, ...]
    dtype: ElemType = FLOAT32
    vis: Visibility = Visibility.SECRET

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"negative dimension in shape {self.shape}")

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_fixed(self) -> bool:
        return isinstance(self.dtype, Fix)

    def with_(self, **changes: object) -> TensorType:
        """Copy with some fields replaced (``shape``, ``dtype``, ``vis``)."""
        return replace(self, **changes)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.dtype}[{dims}] @{self.vis.value}"


_TYPE_RE = re.compile(r"^(float32|fix<(\d+),(\d+)>)\[([\d,]*)\]\s*@(\w+)$")


def parse_type(text: str) -> TensorType:
    """Inverse of ``str(TensorType)``."""
    m = _TYPE_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a tensor type: {text!r}")
    dtype: ElemType = FLOAT32 if m.group(1) == "float32" else Fix(int(m.group(2)), int(m.group(3)))
    shape = tuple(int(d) for d in m.group(4).split(",") if d)
    return TensorType(shape, dtype, Visibility(m.group(5)))


def join_visibility(*vis: Visibility) -> Visibility:
    """Visibility of a value computed from inputs of the given visibilities.

    Public op public stays public; one private owner with public stays with that
    owner; anything mixing two owners (or a secret) is secret-shared.
    """
    owners = {v for v in vis if v is not Visibility.PUBLIC}
    if not owners:
        return Visibility.PUBLIC
    if len(owners) == 1:
        return owners.pop()
    return Visibility.SECRET
