"""The ``onnx`` package's own test models, tried the way a vendor's ONNX files would be.

Suites (shipped inside the installed ``onnx`` wheel, ``onnx/backend/test/data/``):
``pytorch-converted``, ``pytorch-operator`` (a model + one input/output data set each) and
``light`` (model-zoo architectures with light weights, no input file: the input is
``arange(n)/n``, as onnx's own runner makes it).

Each case is prepared as issue 17 describes: graph inputs after the first become
initializers (their test values), the first input is sliced to batch 1, the reference output
is onnxruntime's on that prepared model. Then ``compile`` (calibrated on the input, declared
range around it) and ``simulate``; a case passes when every output is within
``1e-2 · max(1, |ref|∞)`` of the reference. Outcomes:

* ``pass``; ``refused`` (a clear one-line error from the frontend or compiler);
* ``n/a`` (not applicable: the first input is not a float tensor);
* ``wrong`` (compiled and simulated, but outside tolerance) and ``traceback`` (any other
  exception): the two that must never happen.

    run_case(case) -> Outcome;  cases() -> list[Case]
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUITES = ("pytorch-converted", "pytorch-operator", "light")
TOLERANCE = 1e-2
STATUSES = ("pass", "refused", "n/a", "wrong", "traceback")
#: Cases whose compile + simulate take longer than pytest's budget (the table still lists
#: them, measured by ``benchmarks/onnx_conformance.py``).
SLOW = {"light_resnet50", "light_vgg19"}


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    model: Path
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]


@dataclass
class Outcome:
    case: str
    suite: str
    status: str  # pass | refused | n/a | wrong | traceback
    detail: str = ""
    seconds: float = 0.0


def data_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def cases() -> list[Case]:
    root = data_root()
    out: list[Case] = []
    for suite in SUITES[:2]:
        for d in sorted((root / suite).iterdir()):
            ds = d / "test_data_set_0"
            out.append(
                Case(
                    suite,
                    d.name,
                    d / "model.onnx",
                    tuple(sorted(ds.glob("input_*.pb"))),
                    tuple(sorted(ds.glob("output_*.pb"))),
                )
            )
    for m in sorted((root / "light").glob("light_*.onnx")):
        if m.name.endswith("_output_0.pb"):
            continue
        out.append(Case("light", m.stem, m, (), (m.with_name(m.stem + "_output_0.pb"),)))
    return out


def _tensor(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def _dummy(vi) -> np.ndarray:  # noqa: ANN001 - onnx.ValueInfoProto
    """The light suite's input: ``arange(n)/n`` in the declared shape (symbolic dims → 1)."""
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
    n = int(np.prod(dims))
    return (np.arange(n).reshape(dims) / n).astype(np.float32)


def prepare(case: Case):  # noqa: ANN201 - (onnx.ModelProto, np.ndarray) or a str reason
    """The prepared model and its one input, or a ``str`` saying why the case is n/a."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(case.model))
    init = {t.name for t in model.graph.initializer}
    ins = [vi for vi in model.graph.input if vi.name not in init]
    if not ins:
        return "the model has no inputs"
    if case.inputs:
        values = [_tensor(p) for p in case.inputs]
    else:
        values = [_dummy(vi) for vi in ins]
    if values[0].dtype.kind != "f":
        return f"first input is {values[0].dtype} (not a float image)"
    for vi, v in zip(ins[1:], values[1:], strict=False):
        model.graph.initializer.append(numpy_helper.from_array(v, vi.name))
    first = onnx.ValueInfoProto()
    first.CopyFrom(ins[0])
    keep = [vi for vi in model.graph.input if vi.name in init]
    del model.graph.input[:]
    model.graph.input.extend([first, *keep])
    model.ir_version = max(model.ir_version, 4)  # IR 3 wants every initializer as an input
    x = values[0]
    big = np.abs(x.astype(np.float64)).max(initial=0.0) if x.size else 0.0
    if not np.all(np.isfinite(x)) or not 1e-6 < big < 1e4:
        # pytorch-operator stored torch.Tensor(n) contents: uninitialised memory (denormals,
        # 1e30s); a seeded standard normal input of that shape stands in for it.
        x = np.random.default_rng(17).standard_normal(x.shape).astype(x.dtype)
    if x.ndim >= 1 and x.shape[0] > 1:
        x = x[:1]
        model.graph.input[0].type.tensor_type.shape.dim[0].Clear()
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    for o in model.graph.output:  # outputs follow the sliced batch: symbolic dims
        for i, d in enumerate(o.type.tensor_type.shape.dim):
            d.Clear()
            d.dim_param = f"{o.name}_d{i}"
    return model, x


def _reference(model, x: np.ndarray) -> list[np.ndarray] | str:  # noqa: ANN001
    """onnxruntime's outputs on the prepared model, raised to opset 13 if older (as twofold's
    frontend raises it), so old-opset kernels ORT lacks do not matter."""
    import onnxruntime as ort
    from onnx import version_converter

    try:
        if model.opset_import[0].version < 11:
            model = version_converter.convert_version(model, 13)
            model.ir_version = max(model.ir_version, 7)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})
    except Exception as e:  # the prepared model itself is invalid (batch fixed inside it)
        return f"onnxruntime cannot run the batch-1 model: {str(e).splitlines()[0][:120]}"


def run_case(case: Case) -> Outcome:
    """Prepare, compile, simulate, compare (see the module docstring)."""
    import onnx

    from twofold.backends.cleartext import FixedPointOverflow, simulate
    from twofold.compiler import CompileError
    from twofold.frontends.onnx import FrontendError
    from twofold.toolchain import compile_model

    t0 = time.perf_counter()

    def done(status: str, detail: str = "") -> Outcome:
        return Outcome(case.name, case.suite, status, detail, time.perf_counter() - t0)

    prepared = prepare(case)
    if isinstance(prepared, str):
        return done("n/a", prepared)
    model, x = prepared
    ref = _reference(model, x)
    if isinstance(ref, str):
        return done("n/a", ref)
    span = max(float(x.max() - x.min()), 1.0)
    rng = (float(x.min()) - 0.1 * span, float(x.max()) + 0.1 * span)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{case.name}.onnx"
        onnx.save(model, str(path))
        np.save(Path(tmp) / "x.npy", x.astype(np.float64))
        scale, note = 12, ""
        try:
            for attempt in range(2):
                try:
                    sg, _ = compile_model(
                        path, None, preprocess="none", input_range=rng, scale=scale,
                        calibrate=[Path(tmp) / "x.npy"],
                    )  # fmt: skip
                    break
                except CompileError as e:
                    # what the message tells a user to do: a lower --scale, once
                    need = re.search(r"needs (\d+) bits, more than the 63", str(e))
                    if attempt or need is None or scale - (int(need[1]) - 63) < 2:
                        raise
                    scale -= int(need[1]) - 63
                    note = f" (at --scale {scale})"
            got = simulate(sg, x.astype(np.float64))["outputs"]
        except (FrontendError, CompileError, FixedPointOverflow) as e:
            return done("refused", str(e).splitlines()[0])
        except Exception as e:  # noqa: BLE001 - a traceback is an outcome here
            return done("traceback", f"{type(e).__name__}: {e}")
    if len(got) != len(ref):
        return done("wrong", f"{len(got)} outputs, reference has {len(ref)}")
    worst = 0.0
    for want, (_, g) in zip(ref, got.items(), strict=True):
        v = np.asarray(g["values"], np.float64)
        want = np.asarray(want, np.float64)
        if v.size != want.size:
            return done("wrong", f"output has {v.size} values, reference {want.size}")
        err = float(np.abs(v - want.ravel()).max(initial=0.0))
        worst = max(worst, err / max(1.0, float(np.abs(want).max(initial=0.0))))
    if worst > TOLERANCE:
        return done("wrong", f"max |Δ| / max(1, |ref|) = {worst:.3g}")
    return done("pass", f"max rel Δ {worst:.2g}{note}")


def table(outcomes: list[Outcome]) -> str:
    """The markdown conformance table (docs/ONNX_CONFORMANCE.md)."""
    import onnx

    counts = {k: sum(o.status == k for o in outcomes) for k in STATUSES}
    applicable = len(outcomes) - counts["n/a"]
    lines = [
        "# ONNX conformance: the `onnx` package's own test models",
        "",
        "Generated by `python benchmarks/onnx_conformance.py --markdown docs/ONNX_CONFORMANCE.md`"
        f" (onnx {onnx.__version__}; every suite read from the installed wheel's",
        "`onnx/backend/test/data/`, `light` included). Each case: inputs after the first become",
        "initializers, batch sliced to 1, opset < 11 raised by `onnx.version_converter` (in the",
        "frontend), reference = onnxruntime on that model; `compile` calibrated on the input, then",
        f"`simulate`; pass = every output within {TOLERANCE:g}·max(1, |ref|∞). A stored input",
        "of uninitialised memory (pytorch-operator's `torch.Tensor(n)`) is replaced by a seeded",
        "normal input. `tests/test_onnx_conformance.py` re-runs every case not marked slow and",
        "checks it against this table.",
        "",
        f"**{counts['pass']} of {applicable} applicable cases pass**; "
        f"{counts['refused']} refused with a clear error, {counts['n/a']} not applicable, "
        f"{counts['wrong']} wrong, {counts['traceback']} tracebacks.",
        "",
        "| suite | case | outcome | detail | pytest |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        detail = o.detail.replace("|", "\\|")
        if len(detail) > 160:
            detail = detail[:157] + "..."
        where = "slow: table only" if o.case in SLOW else "yes"
        lines.append(f"| {o.suite} | {o.case} | {o.status} | {detail} | {where} |")
    return "\n".join(lines) + "\n"


def read_table(path: Path) -> dict[str, str]:
    """case → outcome, from a table written by :func:`table`."""
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 5 and cells[2] in STATUSES:
            out[cells[1]] = cells[2]
    return out
