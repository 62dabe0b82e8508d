"""ONNX → float IR: load, check, infer shapes, fold shape arithmetic, map each op (DESIGN.md §2).

Initializers become server ``weight`` nodes, graph inputs client ``input`` nodes; a symbolic
batch is 1 unless ``input_shape`` says N (a batch of N images runs as one program).
Shape/Gather/Unsqueeze/Concat/... chains over known shapes and constants are evaluated here
(the values are public facts of the model), so the IR only holds tensor computations.
A final Sigmoid/Softmax stays in the float IR and is recorded in
``graph.meta["output_function"]`` for the compiler's output pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..ir import Graph, IRVerifyError, ShapeError, verify
from ..ir.bundle import file_kind
from ..ir.public import FROM_INITIALIZERS

MIN_OPSET, MAX_OPSET = 11, 21
#: Older models are raised to this opset with ``onnx.version_converter`` (said in the report).
UPGRADE_TO = 13


class FrontendError(ValueError):
    """The ONNX file cannot be turned into IR; the message names the file, op or node."""


# ------------------------------------------------------------------ loading


def _check_external_data(model, p: Path) -> None:  # noqa: ANN001 - onnx.ModelProto
    """Refuse a tensor whose external data lies outside the model's folder.

    Invariant: the compiler reads no file but the model and the regular files inside its
    folder that the model names, whatever a ``location`` says (``../../etc/passwd``, an
    absolute path, a symbolic link out of the folder). Checked here rather than left to
    ``onnx.load``, whose own check depends on the onnx version (setup.cfg allows 1.16)."""
    from onnx.external_data_helper import (
        ExternalDataInfo,
        _get_all_tensors,
        uses_external_data,
    )

    base = p.resolve().parent
    for t in _get_all_tensors(model):
        if not uses_external_data(t):
            continue
        loc = ExternalDataInfo(t).location
        target = (base / loc).resolve()
        if not loc or Path(loc).is_absolute() or not target.is_relative_to(base):
            raise FrontendError(
                f"{p}: tensor {t.name!r} keeps its data in {loc!r}, outside the model's folder "
                f"{base}; refused (the compiler reads only files beside the model)"
            )
        if not target.is_file():
            raise FrontendError(
                f"{p}: tensor {t.name!r} keeps its data in {loc!r}, which is not a regular "
                f"file in {base}"
            )


def _read_model(path: str | Path):  # noqa: ANN202 - onnx.ModelProto
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        if p.exists():
            what = file_kind(p.stat().st_mode)
            raise FrontendError(f"model file {p} is {what}, not a regular file")
        raise FrontendError(f"model file {p} does not exist")
    bad = (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError,
           onnx.checker.ValidationError)  # fmt: skip
    try:
        model = onnx.load(str(p), load_external_data=False)
    except bad as e:
        raise FrontendError(f"{p} is not a valid ONNX model (cannot parse it: {e})") from None
    _check_external_data(model, p)
    try:
        onnx.load_external_data_for_model(model, str(p.resolve().parent))
    except bad as e:
        raise FrontendError(f"{p}: cannot read its external data: {e}") from None
    if not model.graph.node:
        raise FrontendError(f"{p} is not a valid ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"{p} is not a valid ONNX model: {first}") from None
    return model


def _opset(model, path: Path) -> int:  # noqa: ANN001
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise FrontendError(f"{path.name}: no default-domain opset import")
    v = versions[0]
    if not 1 <= v <= MAX_OPSET:
        raise FrontendError(f"{path.name}: opset {v} is not supported (1..{MAX_OPSET})")
    return v


def _upgrade(model, v: int, path: Path):  # noqa: ANN001, ANN202
    """An opset < 11 model raised to ``UPGRADE_TO`` by ``onnx.version_converter``, checked."""
    import onnx
    from onnx import version_converter

    try:
        up = version_converter.convert_version(model, UPGRADE_TO)
        # IR 3 wanted every initializer listed as a graph input; the adapters add ones that
        # are not (Pad's pads), which later IR versions allow.
        up.ir_version = max(up.ir_version, 7)
        onnx.checker.check_model(up)
    except Exception as e:  # the converter raises RuntimeError/ValidationError/plain errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(
            f"{path.name}: opset {v} is older than {MIN_OPSET} and onnx.version_converter "
            f"cannot raise it to {UPGRADE_TO}: {first}"
        ) from None
    return up


def _input_dims(vi) -> list[int | str]:  # noqa: ANN001 - onnx.ValueInfoProto
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]


def _fix_input_shape(dims: list[int | str], want: Sequence[int] | None, name: str) -> list[int]:
    """Concrete shape of an input: symbolic batch → 1 (or ``want``'s N); ``want`` must fit the
    model's static dims."""
    shown = "[" + ",".join(str(d) for d in dims) + "]"
    if want is None:
        out = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                out.append(d)
            elif i == 0:
                out.append(1)
            else:
                raise FrontendError(
                    f"input {name!r} has symbolic dimension {d!r} at axis {i} (shape {shown}); "
                    "give --input-shape"
                )
        return out
    want = [int(d) for d in want]
    ok = len(want) == len(dims) and all(
        (isinstance(d, int) and d > 0 and d == w) or (not isinstance(d, int) or d <= 0)
        for d, w in zip(dims, want, strict=False)
    )
    if not ok or any(w <= 0 for w in want):
        raise FrontendError(
            f"input shape {list(want)} does not fit the model: input {name!r} expects {shown}"
        )
    return want


def _with_concrete_inputs(model, shapes: dict[str, list[int]]):  # noqa: ANN001, ANN202
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[vi.name], strict=True):
                d.Clear()
                d.dim_value = v
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except Exception as e:  # onnx raises InferenceError and plain RuntimeErrors
        raise FrontendError(f"ONNX shape inference failed: {str(e).splitlines()[0]}") from None


# ------------------------------------------------------------------ attributes


def _attrs(node) -> dict[str, Any]:  # noqa: ANN001
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if hasattr(v, "raw_data") or hasattr(v, "dims"):
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


# ------------------------------------------------------------------ constant folding


def _np_slice(data, starts, ends, axes=None, steps=None):  # noqa: ANN001, ANN202
    axes = list(range(len(starts))) if axes is None else [int(a) % data.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    idx = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        idx[a] = slice(int(s), int(e), int(st))
    return data[tuple(idx)]


#: The most elements a constant folded on constants may have (2^28: 1 GiB of float32, 2 GiB
#: of float64). Exporters also build weight-sized constants this way (the ONNX zoo's AlexNet
#: fills a 37.7 M-element one with ConstantOfShape; VGG-16's largest weight has 103 M), so
#: the bound is a weight's size, not shape arithmetic's; a model declaring a
#: ConstantOfShape/Expand/Range of terabytes is refused before numpy tries to allocate it
#: (or the OOM killer ends the run).
FOLD_MAX_ELEMENTS = 1 << 28


def _fold_size(op: str, x: list[np.ndarray | None]) -> int | None:
    """Elements the folded result of ``op`` will have, computed before allocating it, for the
    ops whose output can be far larger than their inputs (None for the others)."""
    if op == "ConstantOfShape":
        return math.prod(int(d) for d in x[0].reshape(-1))
    if op == "Expand":
        dims = tuple(int(d) for d in x[1].reshape(-1))
        return math.prod(np.broadcast_shapes(x[0].shape, dims))
    if op == "Range":
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in x[:3])
        if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
            raise ValueError(f"Range({start}, {limit}, {delta}) has no finite length")
        return max(math.ceil((limit - start) / delta), 0)
    return None


def _fold(op: str, a: dict[str, Any], x: list[np.ndarray | None], opset: int) -> np.ndarray:
    """numpy semantics of the ONNX ops allowed on constants (shape arithmetic); ValueError for
    a result of more than :data:`FOLD_MAX_ELEMENTS` elements, before it is allocated."""
    size = _fold_size(op, x)
    if size is not None and size > FOLD_MAX_ELEMENTS:
        raise ValueError(
            f"its result would have {size:,} elements (at most {FOLD_MAX_ELEMENTS:,} are "
            "evaluated on constants)"
        )
    if op in ("Identity", "Dropout"):
        return x[0]
    if op == "Gather":
        return np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))
    if op == "Unsqueeze":
        axes = a["axes"] if opset < 13 else x[1]
        y = x[0]
        rank = y.ndim + len(axes)
        for ax in sorted(int(v) % rank for v in axes):
            y = np.expand_dims(y, ax)
        return y
    if op == "Squeeze":
        axes = a.get("axes") if opset < 13 else (x[1] if len(x) > 1 else None)
        return np.squeeze(x[0]) if axes is None else np.squeeze(x[0], tuple(int(v) for v in axes))
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in x], axis=a["axis"])
    if op == "Cast":
        from onnx import helper

        return x[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
    if op == "Slice":
        return _np_slice(x[0], x[1], x[2], *(v for v in x[3:]))
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
        if f is not None:
            return f(x[0], x[1]).astype(np.result_type(x[0], x[1]))
        if np.issubdtype(x[0].dtype, np.integer):
            return np.trunc(x[0] / x[1]).astype(x[0].dtype)
        return (x[0] / x[1]).astype(x[0].dtype)
    if op == "Reshape":
        return x[0].reshape(_reshape_target(x[0].shape, x[1], a.get("allowzero", 0)))
    if op == "Flatten":
        ax = a.get("axis", 1) % (x[0].ndim + 1)
        return x[0].reshape(math.prod(x[0].shape[:ax]), -1)
    if op == "Transpose":
        return x[0].transpose(a.get("perm"))
    if op == "ConstantOfShape":
        v = a.get("value", np.zeros(1, np.float32))
        return np.full(tuple(int(d) for d in x[0]), v.reshape(-1)[0], dtype=v.dtype)
    if op == "Range":
        return np.arange(x[0], x[1], x[2]).astype(x[0].dtype)
    if op == "Equal":
        return np.equal(x[0], x[1])
    if op == "Where":
        return np.where(x[0], x[1], x[2])
    if op == "Expand":
        return x[0] * np.ones(tuple(int(d) for d in x[1]), x[0].dtype)
    raise KeyError(op)


FOLDABLE = {
    "Identity", "Dropout", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Add",
    "Sub", "Mul", "Div", "Reshape", "Flatten", "Transpose", "ConstantOfShape", "Range", "Equal",
    "Where", "Expand",
}  # fmt: skip


def _reshape_target(shape: Sequence[int], target: np.ndarray, allowzero: int) -> list[int]:
    t = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        t = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(t)]
    if t.count(-1) > 1:
        raise ShapeError(f"reshape target {t} has more than one -1")
    if -1 in t:
        rest = math.prod(d for d in t if d != -1)
        total = math.prod(shape)
        if rest == 0 or total % rest:
            raise ShapeError(f"cannot reshape {list(shape)} to {t}")
        t[t.index(-1)] = total // rest
    return t


# ------------------------------------------------------------------ the converter


class _Converter:
    """Walks the ONNX nodes in order; ``values`` maps ONNX names to IR names, ``consts`` to
    known arrays (initializers, Constant nodes, folded shape arithmetic)."""

    def __init__(self, model, opset: int, path: Path) -> None:  # noqa: ANN001
        from onnx import numpy_helper

        self.model, self.opset, self.path = model, opset, path
        self.g = Graph()
        self.values: dict[str, str] = {}
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer
        }
        self.initializers = set(self.consts)  # where a model keeps its learned values
        #: constants folded here from initializers (``T + 1``, ``Unsqueeze(T)``) -> those
        #: initializers: a learned value stays learned through shape arithmetic
        self.derived: dict[str, set[str]] = {}
        self.node = None

    # -- helpers
    def fail(self, msg: str) -> FrontendError:
        n = self.node
        where = f"node {n.name or '(unnamed)'!r} ({n.op_type})" if n is not None else "model"
        return FrontendError(f"{self.path.name}: {where}: {msg}")

    def val(self, name: str, role: str = "") -> str:
        """IR value for ONNX value ``name``; a constant becomes a server weight on first use.

        Exporter-made names (``onnx::Conv_123``, BN folded into a conv) are replaced by the
        node's scope plus ``role`` (``features.conv0.weight``) so the IR stays readable.
        """
        if name in self.values:
            return self.values[name]
        if name in self.consts:
            arr = np.asarray(self.consts[name])
            if not np.issubdtype(arr.dtype, np.floating):
                raise self.fail(f"integer tensor {name!r} used as a tensor operand")
            if not np.all(np.isfinite(arr)):
                raise self.fail(f"weight {name!r} holds NaN or infinite values")
            key = self.g.fresh_name(self._scoped(name, role))
            self.values[name] = self.g.add_param(key, arr.astype(np.float32))
            return self.values[name]
        raise self.fail(f"operand {name!r} is not defined")

    def _scoped(self, name: str, role: str) -> str:
        scope = [p for p in (self.node.name if self.node else "").split("/") if p][:-1]
        if not role or not name.startswith("onnx::") or not scope:
            return name
        parts: list[str] = []
        for p in scope:  # torch repeats the parent: /features/features.0/Conv
            if parts and p.startswith(parts[-1] + "."):
                parts[-1] = p
            else:
                parts.append(p)
        return ".".join(parts + [role])

    def public_from(self, ir: str, names: list[str]) -> str:
        """Note on IR node ``ir`` that a value of it (an attribute, public: the client bundle
        holds it) was read from the initializers among ``names``: a learned scalar there
        would be in the client bundle (``compile`` lists them, compiler/report.py)."""
        found = sorted(set().union(*(self.sources(n) for n in names)))
        if found:
            self.g[ir].meta[FROM_INITIALIZERS] = found
        return ir

    def sources(self, name: str) -> set[str]:
        """The initializers constant ``name`` is, or was folded from (empty for literals)."""
        return {name} if name in self.initializers else self.derived.get(name, set())

    def const(self, name: str, what: str) -> np.ndarray:
        """The value of constant ``name`` (an attribute-like operand); never NaN."""
        if name not in self.consts:
            raise self.fail(f"{what} must be a constant (got computed value {name!r})")
        v = np.asarray(self.consts[name])
        if v.dtype.kind in "fc" and np.any(np.isnan(v)):
            raise self.fail(f"{what} {name!r} is NaN")
        return v

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.g[self.val(name)].type.shape

    def shape_of(self, ir: str) -> tuple[int, ...]:
        """Shape of an IR value (not an ONNX name)."""
        return self.g[ir].type.shape

    def add(self, op: str, inputs: list[str], attrs: dict | None = None, hint: str = "") -> str:
        try:
            return self.g.add(op, inputs, attrs or {}, name=hint or op)
        except (ShapeError, ValueError, KeyError) as e:
            raise self.fail(f"{op}: {e}") from None

    # -- main loop
    def run(self, shapes: dict[str, list[int]]) -> Graph:
        init = set(self.consts)
        for vi in self.model.graph.input:
            if vi.name in init:
                continue
            elem = vi.type.tensor_type.elem_type
            if elem not in (1, 10, 11):  # float, float16, double
                raise FrontendError(f"{self.path.name}: input {vi.name!r} is not a float tensor")
            self.values[vi.name] = self.g.add(
                "input", attrs={"name": vi.name, "shape": shapes[vi.name]}, name=vi.name
            )
        outputs = [o.name for o in self.model.graph.output]
        for node in self.model.graph.node:
            self.node = node
            if node.domain not in ("", "ai.onnx"):
                raise self.unsupported()
            self.convert(node, outputs)
        self.node = None
        fns: dict[str, str | None] = {}
        for o in outputs:
            if o in self.consts and o not in self.values:
                raise FrontendError(f"{self.path.name}: output {o!r} is a constant")
            ir = self.val(o)
            if ir != o and o not in self.g and ir not in self.g.outputs:
                # name the output value like the ONNX output
                ir = self._rename(ir, o)
            self.g.outputs.append(ir)
            op = self.g[ir].op
            fns[ir] = op if op in ("sigmoid", "softmax", "log_softmax") else None
        self.g.remove_dead()
        self.g.meta.update(
            {"model": self.path.name, "onnx_opset": self.opset, "output_function": fns}
        )
        return self.g

    def _rename(self, ir: str, want: str) -> str:
        """Re-add the output node under the ONNX output name (same op, inputs, attrs)."""
        n = self.g[ir]
        if n.op in ("input", "weight", "const") or self.g.users(ir):
            return ir
        new = self.g.add(n.op, n.inputs, n.attrs, type=n.type, name=want, meta=n.meta)
        self.g.replace_uses(ir, new)
        self.g.remove(ir)
        for k, v in self.values.items():
            if v == ir:
                self.values[k] = new
        return new

    def unsupported(self) -> FrontendError:
        ops = ", ".join(sorted(set(CONVERTERS) | {"Constant", "Shape"}))
        folded = ", ".join(sorted(FOLDABLE - set(CONVERTERS)))
        return self.fail(
            f"unsupported op {self.node.op_type!r}; supported ops: {ops} "
            f"(and on constants only: {folded})"
        )

    def convert(self, node, outputs: list[str]) -> None:  # noqa: ANN001
        op, ins, a = node.op_type, list(node.input), _attrs(node)
        if op == "Constant":
            self.consts[node.output[0]] = self._constant(a)
            return
        if op == "Shape":
            shape = np.array(self.shape(ins[0]), dtype=np.int64)
            self.consts[node.output[0]] = shape[a.get("start", 0) : a.get("end", len(shape))]
            return
        present = [i for i in ins if i]
        if op in FOLDABLE and present and all(i in self.consts for i in present):
            args = [np.asarray(self.consts[i]) if i else None for i in ins]
            try:
                self.consts[node.output[0]] = _fold(op, a, args, self.opset)
                if src := set().union(*(self.sources(i) for i in present)):
                    self.derived[node.output[0]] = src
            except (ValueError, IndexError, TypeError, ShapeError, MemoryError) as e:
                raise self.fail(f"cannot evaluate on constants: {e}") from None
            return
        fn = CONVERTERS.get(op)
        if fn is None:
            raise self.unsupported()
        out = fn(self, ins, a)
        if isinstance(out, list):  # one IR value per ONNX output (Split)
            for name, v in zip(node.output, out, strict=False):
                if name:
                    self.values[name] = v
            return
        used_extra = [o for o in node.output[1:] if o]
        if used_extra and any(self._is_read(o) or o in outputs for o in used_extra):
            raise self.fail(f"only the first output of {op} is supported")
        self.values[node.output[0]] = out

    def _is_read(self, name: str) -> bool:
        return any(name in n.input for n in self.model.graph.node)

    def _constant(self, a: dict[str, Any]) -> np.ndarray:
        for k, dt in (("value_float", np.float32), ("value_int", np.int64)):
            if k in a:
                return np.array(a[k], dt)
        for k, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
            if k in a:
                return np.array(list(a[k]), dt)
        if "value" in a:
            return np.asarray(a["value"])
        raise self.fail(f"Constant with attribute(s) {sorted(a)} is not supported")

    # -- windows
    def window(self, x_shape: Sequence[int], a: dict, kernel: Sequence[int]) -> dict[str, Any]:
        if len(kernel) != 2 or len(x_shape) != 4:
            raise self.fail(f"only 2-D windows on NCHW tensors (input shape {list(x_shape)})")
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            p = list(a.get("pads", [0, 0, 0, 0]))
            pads = [p[0], p[1], p[2], p[3]]
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            lo, hi = [], []
            for size, k, s, d in zip(x_shape[2:], kernel, strides, dil, strict=True):
                out = -(-size // s)
                total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
                small, big = total // 2, total - total // 2
                lo.append(small if auto == "SAME_UPPER" else big)
                hi.append(big if auto == "SAME_UPPER" else small)
            pads = [lo[0], lo[1], hi[0], hi[1]]
        else:
            raise self.fail(f"auto_pad {auto!r} is not supported")
        return {"strides": strides, "pads": pads, "dilations": dil}


# ------------------------------------------------------------------ op converters

Conv = Callable[[_Converter, list[str], dict[str, Any]], "str | list[str]"]
CONVERTERS: dict[str, Conv] = {}


def _reg(*names: str) -> Callable[[Conv], Conv]:
    def deco(fn: Conv) -> Conv:
        for n in names:
            CONVERTERS[n] = fn
        return fn

    return deco


def _as_2d(a: dict[str, Any]) -> dict[str, Any]:
    """Window attributes of a 1-D op as those of a 2-D op over [N, C, 1, L]."""
    b = dict(a)
    for k, unit in (("strides", 1), ("dilations", 1), ("kernel_shape", 1)):
        if k in b:
            b[k] = [unit, *list(b[k])]
    if "pads" in b:
        b["pads"] = [0, b["pads"][0], 0, b["pads"][1]]
    return b


def _unit_axis(c: _Converter, x: str) -> tuple[str, tuple[int, ...]]:
    """[N, C, L] → [N, C, 1, L] (1-D windows run as 2-D ones with a unit axis)."""
    shape = c.shape(x)
    return c.add("reshape", [c.val(x)], {"shape": [shape[0], shape[1], 1, shape[2]]}), shape


@_reg("Conv")
def _conv(c: _Converter, ins: list[str], a: dict) -> str:
    w_shape = c.shape(ins[1])
    if len(w_shape) == 3 and len(c.shape(ins[0])) == 3 and ins[1] in c.consts:
        x, _ = _unit_axis(c, ins[0])
        w = c.const(ins[1], "Conv weight").astype(np.float32)
        key = c.g.fresh_name(c._scoped(ins[1], "weight"))
        args = [x, c.g.add_param(key, w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]))]
        if len(ins) > 2 and ins[2]:
            args.append(c.val(ins[2], "bias"))
        a2 = _as_2d(a)
        attrs = c.window(c.shape_of(x), a2, [1, w_shape[2]])
        attrs["group"] = int(a.get("group", 1))
        y = c.add("conv2d", args, attrs)
        n, o, _, length = c.g[y].type.shape
        return c.add("reshape", [y], {"shape": [n, o, length]})
    if len(w_shape) != 4:
        raise c.fail(f"only 1-D and 2-D convolution are supported (weight shape {list(w_shape)})")
    attrs = c.window(c.shape(ins[0]), a, w_shape[2:])
    attrs["group"] = int(a.get("group", 1))
    args = [c.val(ins[0]), c.val(ins[1], "weight")]
    if len(ins) > 2 and ins[2]:
        args.append(c.val(ins[2], "bias"))
    return c.add("conv2d", args, attrs)


@_reg("ConvTranspose")
def _conv_transpose(c: _Converter, ins: list[str], a: dict) -> str:
    """Transposed convolution = zero insertion + padding + a stride-1 convolution with the
    kernel flipped and its in/out channels swapped (per group), so it runs on the conv2d
    protocols. Zero insertion is data movement: [N,C,H,W] → [N,C,H,1,W,1], zero-pad the unit
    axes to s, reshape to [N,C,Hs,Ws], slice off the trailing s − 1 zeros."""
    x_shape, w_shape = c.shape(ins[0]), c.shape(ins[1])
    if len(w_shape) != 4 or len(x_shape) != 4 or ins[1] not in c.consts:
        raise c.fail(f"only 2-D ConvTranspose with a constant weight (weight {list(w_shape)})")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID") or "output_shape" in a:
        raise c.fail("ConvTranspose with auto_pad SAME or output_shape is not supported")
    g = int(a.get("group", 1))
    n, cin, h, w = x_shape
    k = list(w_shape[2:])
    st = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    if a.get("auto_pad") == "VALID":
        pads = [0, 0, 0, 0]
    outpad = [int(v) for v in a.get("output_padding", [0, 0])]
    wt = c.const(ins[1], "ConvTranspose weight").astype(np.float32)
    cout_g = wt.shape[1]
    wt = wt.reshape(g, cin // g, cout_g, k[0], k[1]).transpose(0, 2, 1, 3, 4)
    wt = np.ascontiguousarray(wt[..., ::-1, ::-1]).reshape(g * cout_g, cin // g, k[0], k[1])
    y = c.val(ins[0])
    if st != [1, 1]:
        y = c.add("reshape", [y], {"shape": [n, cin, h, 1, w, 1]})
        zeros = [0, 0, 0, 0, 0, 0, 0, 0, 0, st[0] - 1, 0, st[1] - 1]
        y = c.add("pad", [y], {"pads": zeros, "value": 0.0})
        y = c.add("reshape", [y], {"shape": [n, cin, h * st[0], w * st[1]]})
        hz, wz = (h - 1) * st[0] + 1, (w - 1) * st[1] + 1
        y = c.add("slice", [y], {"starts": [0, 0], "ends": [hz, wz], "axes": [2, 3]})
    edge = [dil[0] * (k[0] - 1), dil[1] * (k[1] - 1)]
    lo = [edge[0] - pads[0], edge[1] - pads[1]]
    hi = [edge[0] - pads[2] + outpad[0], edge[1] - pads[3] + outpad[1]]
    grow = [max(0, lo[0]), max(0, lo[1]), max(0, hi[0]), max(0, hi[1])]
    if any(grow):
        y = c.add("pad", [y], {"pads": [0, 0, grow[0], grow[1], 0, 0, grow[2], grow[3]]})
    if min(lo + hi) < 0:  # pads larger than the kernel crop the zero-inserted input
        hh, ww = c.shape_of(y)[2:]
        crop = {"starts": [max(0, -lo[0]), max(0, -lo[1])], "axes": [2, 3],
                "ends": [hh - max(0, -hi[0]), ww - max(0, -hi[1])]}  # fmt: skip
        y = c.add("slice", [y], crop)
    key = c.g.fresh_name(c._scoped(ins[1], "weight"))
    args = [y, c.g.add_param(key, wt)]
    if len(ins) > 2 and ins[2]:
        args.append(c.val(ins[2], "bias"))
    attrs = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": dil, "group": g}
    return c.add("conv2d", args, attrs)


@_reg("MaxPool", "AveragePool")
def _pool(c: _Converter, ins: list[str], a: dict) -> str:
    if len(c.shape(ins[0])) == 3 and len(a.get("kernel_shape", [])) == 1:
        x, _ = _unit_axis(c, ins[0])
        y = _pool2d(c, x, _as_2d(a))
        n, ch, _, length = c.g[y].type.shape
        return c.add("reshape", [y], {"shape": [n, ch, length]})
    return _pool2d(c, c.val(ins[0]), a)


def _pool2d(c: _Converter, x: str, a: dict) -> str:
    attrs = c.window(c.shape_of(x), a, a["kernel_shape"])
    attrs.update(kernel=list(a["kernel_shape"]), ceil_mode=int(a.get("ceil_mode", 0)))
    if c.node.op_type == "MaxPool":
        if a.get("storage_order", 0):
            raise c.fail("MaxPool storage_order=1 is not supported")
        return c.add("maxpool", [x], attrs)
    if attrs["dilations"] != [1, 1]:
        raise c.fail("AveragePool with dilations is not supported")
    del attrs["dilations"]
    attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    return c.add("avgpool", [x], attrs)


@_reg("GlobalAveragePool")
def _gap(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("global_avgpool", [c.val(ins[0])])


def _reduce_axes(c: _Converter, ins: list[str], a: dict, since: int) -> list[int] | None:
    """Sorted axes of a Reduce* node (attribute before opset ``since``, input from it on)."""
    rank = len(c.shape(ins[0]))
    if c.opset >= since:
        axes = c.const(ins[1], "reduction axes") if len(ins) > 1 and ins[1] else None
    else:
        axes = a.get("axes")
    if axes is None or np.size(axes) == 0:
        return None if a.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({int(v) % rank for v in np.ravel(axes)})


@_reg("ReduceMean", "ReduceSum")
def _reduce(c: _Converter, ins: list[str], a: dict) -> str:
    """Sum over the axes (local on shares); a mean is that times the public 1/count.

    A mean over the spatial axes of NCHW stays global average pooling."""
    mean = c.node.op_type == "ReduceMean"
    axes = _reduce_axes(c, ins, a, 18 if mean else 13)
    if axes is None:
        return c.val(ins[0])
    shape = c.shape(ins[0])
    keep = int(a.get("keepdims", 1))
    if mean and len(shape) == 4 and axes == [2, 3]:
        y = c.add("global_avgpool", [c.val(ins[0])])
        return y if keep else c.add("flatten", [y], {"axis": 1})
    y = c.add("reduce_sum", [c.val(ins[0])], {"axes": axes, "keepdims": keep})
    if mean:
        y = c.add("mul_const", [y], {"value": 1.0 / math.prod(shape[i] for i in axes)})
    return y


@_reg("BatchNormalization")
def _bn(c: _Converter, ins: list[str], a: dict) -> str:
    if a.get("training_mode", 0):
        raise c.fail("BatchNormalization in training mode is not supported")
    return c.add(
        "batchnorm", [c.val(i) for i in ins[:5]], {"epsilon": float(a.get("epsilon", 1e-5))}
    )


@_reg("Relu")
def _relu(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("relu", [c.val(ins[0])])


@_reg("LeakyRelu")
def _leaky(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("leaky_relu", [c.val(ins[0])], {"alpha": float(a.get("alpha", 0.01))})


@_reg("Clip")
def _clip(c: _Converter, ins: list[str], a: dict) -> str:
    def bound(i: int) -> float | None:
        if len(ins) > i and ins[i]:
            return float(c.const(ins[i], "Clip bound").reshape(-1)[0])
        return None

    lo, hi = bound(1), bound(2)
    if lo == 0.0 and hi is None:
        return c.add("relu", [c.val(ins[0])])
    return c.public_from(c.add("clip", [c.val(ins[0])], {"min": lo, "max": hi}), ins[1:3])


@_reg("Tanh", "Exp")
def _math(c: _Converter, ins: list[str], a: dict) -> str:
    """Smooth functions inside the network by table lookup (ir/lut.py)."""
    return c.add("lut", [c.val(ins[0])], {"fn": c.node.op_type.lower()})


@_reg("Elu", "Selu")
def _elu(c: _Converter, ins: list[str], a: dict) -> str:
    """ELU = relu(x) + α(exp(min(x, 0)) − 1) (the second term a table); SELU = γ·ELU."""
    selu = c.node.op_type == "Selu"
    alpha = float(a.get("alpha", 1.6732632423543772 if selu else 1.0))
    x = c.val(ins[0])
    y = c.add("add", [c.add("relu", [x]), c.add("lut", [x], {"fn": "elu_neg", "alpha": alpha})])
    if selu:
        y = c.add("mul_const", [y], {"value": float(a.get("gamma", 1.0507009873554805))})
    return y


@_reg("Softplus")
def _softplus(c: _Converter, ins: list[str], a: dict) -> str:
    """softplus(x) = relu(x) + log(1 + exp(−|x|)) (the second term a table)."""
    x = c.val(ins[0])
    return c.add("add", [c.add("relu", [x]), c.add("lut", [x], {"fn": "softplus_g"})])


@_reg("Sigmoid")
def _sigmoid(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("sigmoid", [c.val(ins[0])])


@_reg("Softmax", "LogSoftmax")
def _softmax(c: _Converter, ins: list[str], a: dict) -> str:
    shape = c.shape(ins[0])
    axis = int(a.get("axis", -1 if c.opset >= 13 else 1)) % len(shape)
    if c.opset < 13 and axis != len(shape) - 1:
        raise c.fail(f"{c.node.op_type} (opset < 13) is supported over the last axis only")
    op = "softmax" if c.node.op_type == "Softmax" else "log_softmax"
    return c.add(op, [c.val(ins[0])], {"axis": axis})


@_reg("Concat")
def _concat(c: _Converter, ins: list[str], a: dict) -> str:
    rank = len(c.shape(ins[0]))
    return c.add("concat", [c.val(i) for i in ins], {"axis": int(a["axis"]) % rank})


@_reg("Flatten")
def _flatten(c: _Converter, ins: list[str], a: dict) -> str:
    rank = len(c.shape(ins[0]))
    return c.add("flatten", [c.val(ins[0])], {"axis": int(a.get("axis", 1)) % (rank + 1)})


@_reg("Reshape")
def _reshape(c: _Converter, ins: list[str], a: dict) -> str:
    target = c.const(ins[1], "Reshape's shape")
    try:
        shape = _reshape_target(c.shape(ins[0]), target, int(a.get("allowzero", 0)))
    except ShapeError as e:
        raise c.fail(str(e)) from None
    return c.add("reshape", [c.val(ins[0])], {"shape": shape})


@_reg("Squeeze", "Unsqueeze")
def _squeeze(c: _Converter, ins: list[str], a: dict) -> str:
    shape = c.shape(ins[0])
    if c.opset >= 13:
        axes = c.const(ins[1], "axes") if len(ins) > 1 and ins[1] else None
    else:
        axes = a.get("axes")
    probe = np.empty(shape, np.uint8)
    out = _fold(c.node.op_type, {"axes": axes}, [probe, axes], c.opset).shape
    return c.add("reshape", [c.val(ins[0])], {"shape": list(out)})


@_reg("Transpose")
def _transpose(c: _Converter, ins: list[str], a: dict) -> str:
    rank = len(c.shape(ins[0]))
    perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
    return c.add("transpose", [c.val(ins[0])], {"perm": perm})


@_reg("Gemm")
def _gemm(c: _Converter, ins: list[str], a: dict) -> str:
    """y = alpha·A'·B' + beta·C; alpha/beta/transB fold into constant B and C."""
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    A = c.val(ins[0])  # noqa: N806
    if ta:
        A = c.add("transpose", [A], {"perm": [1, 0]})  # noqa: N806
    if ins[1] in c.consts and ins[1] not in c.values:
        b = c.const(ins[1], "B").astype(np.float32)
        b = (b.T if tb else b) * np.float32(alpha)
        B = c.g.add_param(c.g.fresh_name(ins[1]), np.ascontiguousarray(b, np.float32))  # noqa: N806
    else:
        B = c.val(ins[1])  # noqa: N806
        if tb:
            B = c.add("transpose", [B], {"perm": [1, 0]})  # noqa: N806
        if alpha != 1.0:
            A = c.add("mul_const", [A], {"value": alpha})  # noqa: N806
    args = [A, B]
    if len(ins) > 2 and ins[2] and beta != 0.0:
        if ins[2] in c.consts and ins[2] not in c.values:
            cv = c.const(ins[2], "C").astype(np.float32) * np.float32(beta)
            args.append(c.g.add_param(c.g.fresh_name(ins[2]), cv))
        else:  # a computed C is added after the product (gemm's bias is a parameter)
            cc = c.val(ins[2])
            cc = cc if beta == 1.0 else c.add("mul_const", [cc], {"value": beta})
            return c.add("add", [c.add("gemm", args), cc])
    return c.add("gemm", args)


@_reg("MatMul")
def _matmul(c: _Converter, ins: list[str], a: dict) -> str:
    sa, sb = c.shape(ins[0]), c.shape(ins[1])
    if len(sb) != 2 or len(sa) < 2 or math.prod(sa[:-2]) != 1:
        raise c.fail(
            f"MatMul only of a [.., M, K] (batch 1) by a 2-D matrix: {list(sa)}@{list(sb)}"
        )
    x = c.val(ins[0])
    if len(sa) != 2:
        x = c.add("reshape", [x], {"shape": [sa[-2], sa[-1]]})
    y = c.add("gemm", [x, c.val(ins[1])])
    if len(sa) != 2:
        y = c.add("reshape", [y], {"shape": [*sa[:-1], sb[1]]})
    return y


def _binary(ir_op: str) -> Conv:
    def conv(c: _Converter, ins: list[str], a: dict) -> str:
        return c.add(ir_op, [c.val(ins[0]), c.val(ins[1])])

    return conv


CONVERTERS["Add"] = _binary("add")
CONVERTERS["Sub"] = _binary("sub")


@_reg("Mul", "Div")
def _mul(c: _Converter, ins: list[str], a: dict) -> str:
    """By a scalar constant → ``mul_const``; by a constant tensor → ``mul`` with a weight."""
    div = c.node.op_type == "Div"
    x_i, k_i = ins
    if not div and x_i in c.consts and k_i not in c.consts:
        x_i, k_i = k_i, x_i
    if k_i in c.consts:
        k = c.const(k_i, "constant").astype(np.float64)
        if div:
            if np.any(k == 0):
                raise c.fail(f"division by a constant containing zero ({k_i!r})")
            k = 1.0 / k
        x_shape = c.shape(x_i)
        if k.size == 1 and np.broadcast_shapes(x_shape, k.shape) == tuple(x_shape):
            y = c.add("mul_const", [c.val(x_i)], {"value": float(k.reshape(-1)[0])})
            return c.public_from(y, [k_i])
        w = c.g.add_param(c.g.fresh_name(k_i), k.astype(np.float32))
        return c.add("mul", [c.val(x_i), w])
    if div:
        raise c.fail("Div by a computed (non-constant) value is not supported")
    return c.add("mul", [c.val(x_i), c.val(k_i)])


@_reg("Pad")
def _pad(c: _Converter, ins: list[str], a: dict) -> str:
    mode = a.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise c.fail(f"Pad mode {mode!r} is not supported (constant, reflect, edge)")
    shape = c.shape(ins[0])
    rank = len(shape)
    pads = [int(p) for p in c.const(ins[1], "Pad's pads").reshape(-1)]
    value = 0.0
    if mode == "constant" and len(ins) > 2 and ins[2]:
        value = float(c.const(ins[2], "Pad's constant_value").reshape(-1)[0])
    if len(ins) > 3 and ins[3]:
        axes = [int(x) % rank for x in c.const(ins[3], "Pad's axes").reshape(-1)]
        full = [0] * (2 * rank)
        for j, ax in enumerate(axes):
            full[ax], full[ax + rank] = pads[j], pads[j + len(axes)]
        pads = full
    if any(p < 0 for p in pads):
        raise c.fail(f"negative pads {pads} (cropping) are not supported")
    if mode == "reflect" and any(
        max(pads[i], pads[i + rank]) >= d for i, d in enumerate(shape) if pads[i] or pads[i + rank]
    ):
        raise c.fail(f"reflect pads {pads} must be smaller than the dimensions {list(shape)}")
    attrs: dict[str, Any] = {"pads": pads, "value": value}
    if mode != "constant":
        attrs["mode"] = mode
    return c.public_from(c.add("pad", [c.val(ins[0])], attrs), ins[2:3] if value else [])


@_reg("LRN")
def _lrn(c: _Converter, ins: list[str], a: dict) -> str:
    """Local response normalisation: kept in the float IR (inspect, float reference); the
    compiler refuses it (a power of a secret sum divides the input)."""
    attrs = {k: float(a.get(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0))}
    return c.add("lrn", [c.val(ins[0])], dict(attrs, size=int(a["size"])))


@_reg("Neg")
def _neg(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("mul_const", [c.val(ins[0])], {"value": -1.0})


@_reg("Sum", "Max", "Min")
def _variadic(c: _Converter, ins: list[str], a: dict) -> str:
    """Sum/Max/Min of n operands as a chain of binary ops (max/min lowered to ReLUs)."""
    op = {"Sum": "add", "Max": "max", "Min": "min"}[c.node.op_type]
    present = [i for i in ins if i]
    y = c.val(present[0])
    for i in present[1:]:
        y = c.add(op, [y, c.val(i)])
    return y


@_reg("Abs")
def _abs(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("abs", [c.val(ins[0])])


@_reg("PRelu")
def _prelu(c: _Converter, ins: list[str], a: dict) -> str:
    return c.add("prelu", [c.val(ins[0]), c.val(ins[1], "slope")])


@_reg("Slice")
def _slice(c: _Converter, ins: list[str], a: dict) -> str:
    if c.opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:

        def opt(i: int, what: str) -> list[int] | None:
            return None if len(ins) <= i or not ins[i] else [int(v) for v in c.const(ins[i], what)]

        starts, ends = opt(1, "Slice starts"), opt(2, "Slice ends")
        axes, steps = opt(3, "Slice axes"), opt(4, "Slice steps")
    attrs = {"starts": [int(v) for v in starts], "ends": [int(v) for v in ends]}
    attrs["axes"] = None if axes is None else [int(v) for v in axes]
    attrs["steps"] = None if steps is None else [int(v) for v in steps]
    return c.add("slice", [c.val(ins[0])], attrs)


@_reg("Split")
def _split(c: _Converter, ins: list[str], a: dict) -> list[str]:
    shape = c.shape(ins[0])
    axis = int(a.get("axis", 0)) % len(shape)
    n_out = len(c.node.output)
    if c.opset >= 13 and len(ins) > 1 and ins[1]:
        sizes = [int(v) for v in c.const(ins[1], "Split sizes")]
    elif c.opset < 13 and "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        n = int(a.get("num_outputs", n_out))
        step = -(-shape[axis] // n)
        sizes = [min(step, shape[axis] - k * step) for k in range(n)]
    if sum(sizes) != shape[axis] or len(sizes) != n_out:
        raise c.fail(f"Split sizes {sizes} do not cover axis {axis} of {list(shape)}")
    x, outs, start = c.val(ins[0]), [], 0
    for size in sizes:
        attrs = {"starts": [start], "ends": [start + size], "axes": [axis], "steps": None}
        outs.append(c.add("slice", [x], attrs))
        start += size
    return outs


@_reg("Tile")
def _tile(c: _Converter, ins: list[str], a: dict) -> str:
    """Repetitions as concatenations of copies along each axis (data movement)."""
    reps = [int(v) for v in c.const(ins[1], "Tile repeats").reshape(-1)]
    y = c.val(ins[0])
    if len(reps) != len(c.shape(ins[0])) or any(r < 1 for r in reps):
        raise c.fail(f"Tile repeats {reps} do not fit shape {list(c.shape(ins[0]))}")
    for axis, r in enumerate(reps):
        if r > 1:
            y = c.add("concat", [y] * r, {"axis": axis})
    return y


@_reg("Identity", "Dropout")
def _identity(c: _Converter, ins: list[str], a: dict) -> str:
    return c.val(ins[0])


# ------------------------------------------------------------------ entry point


def load_onnx(path: str | Path, input_shape: Sequence[int] | None = None) -> Graph:
    """Read, check and convert an ONNX model to a verified float IR graph.

    ``input_shape`` (e.g. ``(8, 3, 224, 224)``) fixes the shape of the single image input; it
    must agree with every static dimension of the model. Its first axis is the batch: N images
    run as one program (shares, OTs and HE packing over the whole batch).
    """
    p = Path(path)
    model = _read_model(p)
    opset = original = _opset(model, p)
    if opset < MIN_OPSET:
        model, opset = _upgrade(model, opset, p), UPGRADE_TO
    init = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init]
    if not inputs:
        raise FrontendError(f"{p.name}: the model has no inputs")
    if input_shape is not None and len(inputs) != 1:
        raise FrontendError(f"{p.name}: --input-shape needs a model with one input")
    shapes = {vi.name: _fix_input_shape(_input_dims(vi), input_shape, vi.name) for vi in inputs}
    model = _with_concrete_inputs(model, shapes)
    graph = _Converter(model, opset, p).run(shapes)
    if original != opset:
        graph.meta["onnx_opset_converted_from"] = original
    try:
        verify(graph, "onnx frontend")
    except IRVerifyError as e:
        raise FrontendError(f"{p.name}: {e}") from None
    return graph


def supported_ops() -> list[str]:
    """ONNX op types the frontend understands."""
    return sorted(set(CONVERTERS) | FOLDABLE | {"Constant", "Shape"})


from . import onnx_math  # noqa: E402, F401  (registers Div/Sqrt/Pow/Erf/LayerNorm/InstanceNorm)
