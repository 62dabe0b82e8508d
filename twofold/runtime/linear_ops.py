"""Adapter from the executor's IR-shaped linear ops to the linear protocols (DESIGN.md §5).

IR ``gemm`` is ``a @ b + c`` with either operand the server's weight; the protocol computes
``x @ w.T + b`` with the shared ``x`` on the left, so ``W @ x`` runs as ``(x.T @ W.T).T``.
A ``mul`` by a weight that broadcasts over channel axis 1 is an ``affine`` without shift.
``linear="auto"`` decides per op from public data only (the op kind, ℓ, whether the session has
an OT extension), so both parties pick alike (:func:`pick`): conv2d/gemm by HE (Cheetah-style,
the only choice that scales to DenseNet-121 at 224², where OT costs ~200 GiB) whenever its BFV
parameters support ℓ, else OT; the per-channel affine (and ``mul``) by OT, which costs
ℓ(ℓ+1)/2 bits per element where coefficient-encoded HE packs a per-channel scale badly (2.5 GB
for DenseNet-121's BatchNorms against 0.7 GB).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import RuntimeProtocolError
from .linear import linear as L  # noqa: N812
from .linear.linear_he_seal import he_supports


class LinearError(RuntimeProtocolError):
    """A linear op the protocols cannot run (names the IR value)."""


def _val(v: Any) -> np.ndarray | None:  # noqa: ANN401
    """The server's integer value of a Private/Public operand (None on the client)."""
    return getattr(v, "value", None)


class LinearOps:
    """Per-session linear-layer dispatcher; a ``LinearCache`` keeps prepared weights (memory!)."""

    def __init__(self, party: Any, ell: int, method: str = "auto", cache: Any = None) -> None:  # noqa: ANN401
        if method not in ("he", "ot", "auto"):
            raise LinearError(f"linear method must be he, ot or auto, got {method!r}")
        self.party = party
        self.ell = ell
        self.method = method
        self.has_ot = getattr(party, "ot", None) is not None
        # No cache by default: a session runs one image, and keeping every layer's weight
        # plaintexts alive cost the server 4.5 GiB at 64² (measured); built per layer, freed.
        self.cache = cache
        self.server = party.role == "server"

    def _w(self, v: Any) -> np.ndarray | None:  # noqa: ANN401
        return _val(v) if self.server else None

    def conv2d(self, rt: Any, name: str, x: np.ndarray, w: Any, b: Any, attrs: dict) -> np.ndarray:  # noqa: ANN401
        if isinstance(w, np.ndarray):
            raise LinearError(f"%{name}: conv2d with a run-time (shared) kernel is not supported")
        return L.conv2d(
            self.party, x, self._w(w), None if b is None else self._w(b),
            w_shape=_shape(w),
            strides=tuple(attrs["strides"]), pads=tuple(attrs["pads"]),
            dilations=tuple(attrs["dilations"]), group=int(attrs["group"]),
            ell=self.ell, method=self._pick("conv2d", name), cache=self.cache, name=name,
        )  # fmt: skip

    def _pick(self, kind: str, name: str) -> str:
        return pick(self.method, kind, self.ell, self.has_ot, name)

    def gemm(self, rt: Any, name: str, a: Any, b: Any, c: Any) -> np.ndarray:  # noqa: ANN401
        m = np.uint64((1 << self.ell) - 1) if self.ell < 64 else np.uint64(2**64 - 1)
        if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
            k, n = _shape(b)
            wt = None if self._w(b) is None else np.ascontiguousarray(self._w(b).T)
            y = L.gemm(
                self.party, a, wt, None, w_shape=(n, k), ell=self.ell,
                method=self._pick("gemm", name), cache=self.cache, name=name,
            )  # fmt: skip
        elif isinstance(b, np.ndarray) and not isinstance(a, np.ndarray):
            y = L.gemm(
                self.party, np.ascontiguousarray(b.T), self._w(a), None, w_shape=_shape(a),
                ell=self.ell, method=self._pick("gemm", name), cache=self.cache, name=name,
            ).T  # fmt: skip
        else:
            raise LinearError(f"%{name}: gemm needs exactly one shared operand and one weight")
        y = np.ascontiguousarray(y)
        if c is not None and self.server:
            y = (y + rt._addend(c)) & m
        return y

    def affine(self, rt: Any, name: str, x: np.ndarray, mul: Any, add: Any) -> np.ndarray:  # noqa: ANN401
        return L.affine(
            self.party, x, self._w(mul), self._w(add), ell=self.ell,
            method=self._pick("affine", name), cache=self.cache, name=name,
        )  # fmt: skip

    def sign_affine(self, rt: Any, name: str, x: np.ndarray, sign: Any, add: Any) -> np.ndarray:  # noqa: ANN401
        if not self.has_ot:
            raise LinearError(f"%{name}: sign_affine needs a session with an OT extension")
        return L.sign_affine(self.party, x, self._w(sign), self._w(add), ell=self.ell, name=name)

    def mul(self, rt: Any, name: str, x: np.ndarray, w: Any) -> np.ndarray:  # noqa: ANN401
        shp = _shape(w)
        c = x.shape[1] if x.ndim >= 2 else -1
        per_channel = (
            len(shp) <= x.ndim
            and x.ndim >= 2
            and all(d == 1 for i, d in enumerate(shp[::-1]) if x.ndim - 1 - i != 1)
            and (len(shp) >= x.ndim - 1 and shp[len(shp) - (x.ndim - 1)] == c)
        )
        if not per_channel:
            raise LinearError(
                f"%{name}: elementwise product with a server weight of shape {list(shp)} is "
                "supported only per channel (axis 1)"
            )
        v = self._w(w)
        return L.affine(
            self.party, x, None if v is None else v.reshape(c), None, ell=self.ell,
            method=self._pick("affine", name), cache=self.cache, name=name,
        )  # fmt: skip


def pick(method: str, kind: str, ell: int, has_ot: bool, name: str = "?") -> str:
    """The protocol ("he" or "ot") for one linear op of ``kind`` ("conv2d", "gemm", "affine");
    a function of public data only, so both parties decide alike."""
    if method != "auto":
        return method
    he_ok = he_supports(ell)
    if kind == "affine":
        choice = "ot" if has_ot else "he" if he_ok else None
    else:
        choice = "he" if he_ok else "ot" if has_ot else None
    if choice is None:
        raise LinearError(
            f"%{name}: no linear protocol for {kind} at ell={ell} (HE needs its parameters, "
            "OT a session with an OT extension)"
        )
    return choice


def _shape(v: Any) -> tuple[int, ...]:  # noqa: ANN401
    if hasattr(v, "shape") and v.shape is not None and not isinstance(v, np.ndarray):
        return tuple(v.shape)
    return tuple(np.shape(_val(v)))
