"""The two bundles (issue 12): DIR/server keeps everything weight- or calibration-derived;
DIR/client holds only the public program, identical for every weight and calibration set."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from twofold.cli import cli

# mobilenet: Clip (ReLU6: public constants), depthwise convs, global average pool;
# squeezenet: MaxPool, Concat, softmax output.
MODELS = ("mobilenet", "squeezenet")
ARGS = ["--preprocess", "none", "--bitlength", "40", "--scale", "12"]


def _reweighted(src: Path, dst: Path, seed: int) -> Path:
    """The same architecture with other weights: every float initializer scaled by 1 ± 0.3
    (BN variances stay positive)."""
    m = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f":
            a = (a * rng.uniform(0.7, 1.3, a.shape)).astype(a.dtype)
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(dst))
    return dst


def _calibration(d: Path, names: list[str], seed: int, amp: float) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for n in names:
        np.save(d / n, rng.uniform(-amp, amp, (1, 3, 32, 32)))
        out.append(str(d / n))
    return out


def _compile(model: Path, out: Path, cal: list[str]) -> None:
    cmd = ["compile", str(model), "-o", str(out), *ARGS]
    for c in cal:
        cmd += ["--calibrate", c]
    res = CliRunner().invoke(cli, cmd)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def compiles(zoo_onnx, tmp_path_factory):
    """``get(model)``: two compiles of one architecture with other weights, other calibration
    images and other calibration file names (cached per model)."""
    cache: dict[str, tuple] = {}

    def get(model: str) -> tuple:
        if model not in cache:
            d = tmp_path_factory.mktemp(f"split-{model}")
            onnx_a = zoo_onnx(model, 32)
            onnx_b = _reweighted(onnx_a, d / "other.onnx", seed=7)
            cal_a = _calibration(
                d / "ca", ["patient-0471-mrn88213.npy", "patient-0472.npy"], 1, 2.9
            )
            cal_b = _calibration(d / "cb", ["case-XJ2931.npy"], 2, 1.7)
            _compile(onnx_a, d / "a", cal_a)
            _compile(onnx_b, d / "b", cal_b)
            cache[model] = d, (onnx_a, onnx_b), (cal_a, cal_b)
        return cache[model]

    return get


@pytest.fixture(params=MODELS)
def two(compiles, request):
    return compiles(request.param)


@pytest.fixture()
def one(compiles):
    return compiles(MODELS[0])


def _files(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def test_client_bundles_byte_identical(two):
    d, _, _ = two
    a, b = _files(d / "a" / "client"), _files(d / "b" / "client")
    assert sorted(a) == ["ir.json", "ir.txt", "manifest.json"]
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"client/{name} differs between the two compiles"
    # ... while the server bundles do differ (the test could fail): weights and ranges
    sa, sb = _files(d / "a" / "server"), _files(d / "b" / "server")
    for name in ("weights.npz", "ir.json", "report.json", "manifest.json"):
        assert sa[name] != sb[name], name
    ma = json.loads(sa["manifest.json"])
    assert ma["program_hash"] == json.loads(a["manifest.json"])["program_hash"]


def _numbers(text: str) -> tuple[set[str], set[int]]:
    floats = set(re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text))
    ints = {int(t) for t in re.findall(r"(?<![\d.])-?\d+(?![\d.])", text)}
    return floats, ints


def test_client_bundle_holds_no_weight_or_calibration_value(two):
    d, (onnx_a, _), (cal_a, _) = two
    text = "\n".join(v.decode() for v in _files(d / "a" / "client").values())
    floats, ints = _numbers(text)
    ir = json.loads((d / "a" / "client" / "ir.json").read_text())
    public_ints = {v for p in ir["meta"]["public_params"].values() for v in p["values"]}
    # 1. no calibration file name, no range/bit-count metadata; the input range is the declared
    for f in cal_a:
        assert Path(f).name not in text and Path(f).stem not in text
    for key in ("observed", "bits", "widest", "calibrat", "# range", "weights_sha256"):
        assert key not in text, key
    assert ir["meta"]["input"]["range"] == [-3.0, 3.0]
    assert {k for n in ir["nodes"] for k in n.get("meta", {})} <= {"last_use", "free", "clamp"}
    # 2. every float in the client bundle is an architecture constant (declared input range,
    # ReLU6 clamp bounds), so no weight, no range derived from weights or calibration
    assert floats <= {"-3.0", "3.0", "0.0", "6.0"}, sorted(floats)[:20]
    # 3. every weight value: float reprs of each ONNX initializer's values, min and max
    m = onnx.load(str(onnx_a))
    for t in m.graph.initializer:
        w = numpy_helper.to_array(t).astype(np.float64).ravel()
        if w.size == 0 or t.data_type != onnx.TensorProto.FLOAT:
            continue
        for v in {w.min(), w.max(), *w[:64]}:
            for form in (repr(float(v)), repr(float(np.float32(v))), f"{v:.4g}", f"{v:.6g}"):
                if abs(v) > 1e-3 and not float(v).is_integer():
                    assert form not in floats, (t.name, form)
    # ... and as fixed point (int64 at its scale, from the server's weights.npz)
    with np.load(d / "a" / "server" / "weights.npz") as z:
        for k in z.files:
            q = z[k].ravel()
            big = {int(v) for v in (q.min(), q.max(), *q) if abs(int(v)) >= 10_000}
            assert not (big & ints) - public_ints, (k, sorted(big & ints)[:5])
    # 4. calibration extremes: the observed images' min/max and every calibrated node range
    for f in cal_a:
        x = np.load(f)
        for v in (x.min(), x.max()):
            assert all(s not in text for s in (repr(float(v)), f"{v:.4g}", f"{v:.6g}"))
    srv = json.loads((d / "a" / "server" / "ir.json").read_text())
    ranges = {v for n in srv["nodes"] for v in n.get("meta", {}).get("range", [])}
    assert len(ranges) > 20  # the server has them ...
    for v in ranges:
        if not float(v).is_integer():
            assert repr(float(v)) not in floats and f"{v:.4g}" not in floats  # ... not the client


def test_server_bundle_private_and_complete(one):
    d, _, _ = one
    srv = d / "a" / "server"
    assert stat.S_IMODE((srv / "weights.npz").stat().st_mode) == 0o600
    assert stat.S_IMODE(srv.stat().st_mode) == 0o700
    assert "# range [" in (srv / "ir.txt").read_text()
    m = json.loads((srv / "manifest.json").read_text())
    assert m["bundle"] == "server" and len(m["weights_sha256"]) == 64
    rep = json.loads((srv / "report.json").read_text())
    assert rep["bits_needed"] and any(r["range"] for r in rep["layers"])
    ir = json.loads((srv / "ir.json").read_text())
    assert ir["meta"]["compile"]["calibration_inputs"] == [
        "patient-0471-mrn88213.npy",
        "patient-0472.npy",
    ]


def test_each_command_takes_the_part_it_needs(one, tmp_path):
    d, _, (cal_a, _) = one
    top, cli_b, srv_b = d / "a", d / "a" / "client", d / "a" / "server"
    run = CliRunner().invoke
    x = cal_a[0]
    for b in (top, srv_b):  # simulate: the top DIR or the server bundle
        res = run(cli, ["simulate", str(b), "--input", x])
        assert res.exit_code == 0, res.output
    res = run(cli, ["simulate", str(cli_b), "--input", x])
    assert res.exit_code == 1 and "is the client bundle; simulate needs the server" in res.output
    res = run(cli, ["run", "client", str(srv_b), "--connect", "127.0.0.1:9", "--input", x])
    assert res.exit_code == 1 and "is the server bundle; run client needs the client" in res.output
    res = run(cli, ["run", "server", str(cli_b), "--listen", "127.0.0.1:0", "--once"])
    assert res.exit_code == 1 and "is the client bundle; run server needs the server" in res.output
    # a hospital that only got the client bundle, copied as DIR/client
    only = tmp_path / "hospital"
    (only / "client").mkdir(parents=True)
    for f in cli_b.iterdir():
        (only / "client" / f.name).write_bytes(f.read_bytes())
    res = run(cli, ["simulate", str(only), "--input", x])
    assert res.exit_code == 1 and "holds only the client bundle" in res.output
    assert "Traceback" not in res.output
    # inspect: the client part shows the IR without ranges; the top DIR lists both parts
    res = run(cli, ["inspect", str(cli_b)])
    assert res.exit_code == 0 and "client bundle" in res.output
    assert "= relu(" in res.output
    assert "# range" not in res.output and "bits needed" not in res.output
    res = run(cli, ["inspect", str(only)])
    assert res.exit_code == 0 and "client bundle" in res.output and "# range" not in res.output
    res = run(cli, ["inspect", str(top)])
    assert res.exit_code == 0 and "weights.npz" in res.output and "# range [" in res.output
    assert "client bundle" in res.output and "server bundle" in res.output


def test_failed_recompile_keeps_the_bundle(one, tmp_path):
    """A recompile that fails (a pass disabled, so nothing runnable) leaves both parts intact;
    a successful one replaces both and drops the old single-directory files."""
    d, (onnx_a, _), _ = one
    out = tmp_path / "b"
    _compile(onnx_a, out, [])
    before = _files(out)
    res = CliRunner().invoke(cli, ["compile", str(onnx_a), "-o", str(out), *ARGS,
                                   "--disable-pass", "quantize"])  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary left behind
    (out / "weights.npz").write_bytes(b"old layout")  # a bundle of the flat layout
    (out / "ir.json").write_text("{}")
    (out / "server" / "tls").mkdir()  # the server's own files (its TLS key) are kept
    (out / "server" / "tls" / "key.pem").write_text("k")
    _compile(onnx_a, out, [])
    assert sorted(p.name for p in out.iterdir()) == ["client", "server"]
    assert (out / "server" / "tls" / "key.pem").read_text() == "k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_sign_flips_leave_the_client_bundle_weight_independent(tmp_path):
    """BN folded forward (issue 16): signs, shifts and rescaled weights are server weights; a
    model with negative, tiny and zero BN scales (clamped shifts) and one with positive scales
    give byte-identical client bundles, each with one sign flip per matching BN."""
    from preact import export

    outs = []
    for name, seed, flip, amp in (("neg", 5, True, 2.9), ("pos", 9, False, 1.1)):
        onnx_path = export(tmp_path / f"{name}.onnx", 8, seed=seed, flip=flip)
        cal = tmp_path / f"cal-{name}.npy"
        np.save(cal, np.random.default_rng(seed).uniform(-amp, amp, (1, 3, 8, 8)))
        _compile(onnx_path, tmp_path / name, [str(cal)])
        outs.append(tmp_path / name)
    a, b = (_files(d / "client") for d in outs)
    assert a == b
    ir = json.loads(a["ir.json"])
    flips = [n for n in ir["nodes"] if n["op"] == "sign_affine"]
    assert len(flips) == 2
    signs = []
    for d in outs:
        with np.load(d / "server" / "weights.npz") as z:
            signs.append({int(v) for n in flips for v in z[n["inputs"][1]]})
    assert signs == [{-1, 1}, {1}]


def _temperature_model(path: Path, t: float) -> Path:
    """conv → relu → global pool → flatten → ``/ T`` with T a scalar initializer (a learned
    temperature, as torch exports an ``nn.Parameter``); the ReLU6 bounds are Constant nodes
    (as torch exports literals)."""
    from onnx import TensorProto as TP
    from onnx import helper as oh

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(np.array(t, np.float32), "T"),
    ]
    consts = [
        oh.make_node("Constant", [], [n], value=numpy_helper.from_array(np.array(v, np.float32)))
        for n, v in (("zero", 0.0), ("six", 6.0))
    ]
    nodes = [
        *consts,
        oh.make_node("Conv", ["image", "conv.weight"], ["c"], name="/conv/Conv"),
        oh.make_node("Clip", ["c", "zero", "six"], ["r"], name="/relu6/Clip"),
        oh.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool"),
        oh.make_node("Flatten", ["p"], ["f"], name="/flatten"),
        oh.make_node("Div", ["f", "T"], ["logits"], name="/Div"),
    ]
    g = oh.make_graph(
        nodes, "t", [oh.make_tensor_value_info("image", TP.FLOAT, [1, 3, 8, 8])],
        [oh.make_tensor_value_info("logits", TP.FLOAT, [1, 4])], inits,
    )  # fmt: skip
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_compile_says_what_in_the_client_bundle_depends_on_the_weights(tmp_path):
    """README and DESIGN said the client bundle has nothing derived from the weights, while
    --bitlength auto picks l from them and a learned scalar divisor T becomes a public
    mul_const (SECURITY.md documents both): compile said nothing. Now it names both."""
    run = CliRunner().invoke
    args = ["--preprocess", "none", "--input-range", "-3", "3"]
    for t in (1.7371, 2.5):
        res = run(cli, ["compile", str(_temperature_model(tmp_path / f"m{t}.onnx", t)),
                        "-o", str(tmp_path / f"b{t}"), *args])  # fmt: skip
        assert res.exit_code == 0, res.output
        ell = json.loads((tmp_path / f"b{t}" / "server" / "report.json").read_text())["ell"]
        assert "(--bitlength auto), so the client bundle depends on them" in res.output
        assert f"pass --bitlength {ell} to make it independent" in res.output
        notes = [ln for ln in res.output.splitlines() if "model initializers" in ln]
        assert len(notes) == 1 and "%logits (mul_const, from 'T')" in notes[0], res.output
        assert "%clip" not in notes[0] and "(const" not in notes[0]  # literals: architecture
    a, b = (_files(tmp_path / f"b{t}" / "client") for t in (1.7371, 2.5))
    assert a["ir.json"] != b["ir.json"]  # what the note is about: T is in the client bundle
    res = run(cli, ["compile", str(tmp_path / "m2.5.onnx"), "-o", str(tmp_path / "c"), *args,
                    "--bitlength", "32"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "--bitlength auto" not in res.output and "model initializers" in res.output
