"""Issue 13, the checked range model (compiler/headroom.py): its guarantee, tested.

For every input the client's check admits, either the result is valid and equals the exact
fixed-point result (the same program in a ring so wide nothing can wrap), or it is flagged with
the first ReLU whose limit was reached — in simulate and, bit for bit, in two processes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fixedpoint_graphs import small_cnn
from test_input_checks import small_eval
from test_run_cli import Server, client

from twofold.backends.cleartext import Cleartext, FixedPointOverflow, simulate
from twofold.cli import cli
from twofold.compiler import CompileError
from twofold.ir import Fix
from twofold.toolchain import PREPROCESS_RANGES, compile_model

LO, HI = PREPROCESS_RANGES["chexnet"]


def _wide(g):  # noqa: ANN001, ANN202
    """The same program in Z_2^64 (no wrap possible for these tensors): the exact result."""
    w = g.copy()
    for n in w.nodes:
        n.type = n.type.with_(dtype=Fix(64, n.type.dtype.scale))
    return w


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """small_cnn calibrated on one low-contrast image: ordinary inputs exceed its ranges."""
    d = tmp_path_factory.mktemp("headroom")
    cal = np.random.default_rng(1).uniform(-0.3, 0.3, (1, 3, 16, 16))
    np.save(d / "cal.npy", cal)
    g, rep = compile_model(None, d / "b", graph=small_cnn(), calibrate=[d / "cal.npy"])
    return d, g, rep


def _inputs(n: int, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(LO, HI, (1, 3, 16, 16)) for _ in range(n // 2)]
    xs += [rng.uniform(-0.3, 0.3, (1, 3, 16, 16)) * s for s in np.linspace(1, 7, n - n // 2)]
    xs += [np.full((1, 3, 16, 16), HI), np.full((1, 3, 16, 16), LO)]  # the extremes
    return [np.clip(x, LO, HI) for x in xs]


def test_valid_means_exact_and_invalid_is_flagged(checked) -> None:  # noqa: ANN001
    _, g, rep = checked
    assert g.meta["range_model"] == "checked" and rep["totals"]["checked_elements"] > 0
    relus = [n.name for n in g.nodes if n.op == "relu"]
    checked_relus = [r for r in relus if len(g[r].inputs) == 2]
    assert "r1_post" in checked_relus
    for r in set(relus) - set(checked_relus):  # unchecked: bounded by the sound ranges alone
        assert g[g[r].inputs[0]].meta["range"][1] < 2.0 ** (g.meta["ell"] - 2)
    wide = _wide(g)
    n_valid = n_flagged = 0
    for x in _inputs(24):
        doc = simulate(g, x)  # with check=True: any unflagged overflow would raise here
        if doc["valid"]:
            n_valid += 1
            exact = Cleartext(wide, check=False)
            want = exact.decode(g.outputs[0], exact.run(x)[g.outputs[0]])
            (out,) = doc["logits"].values()
            assert np.array_equal(np.array(out["values"]), want.ravel())
        else:
            n_flagged += 1
            assert doc["overflow_at"].lstrip("%") in relus and "outputs" not in doc
            assert doc["error"] == f"result invalid: value out of range at {doc['overflow_at']}"
    assert n_valid and n_flagged  # the set exercises both sides of the guarantee


def test_calibrated_model_overflows_where_checked_one_flags(checked) -> None:  # noqa: ANN001
    d, g, _ = checked
    old, _ = compile_model(None, None, graph=small_cnn(), calibrate=[d / "cal.npy"],
                           range_model="calibrated")  # fmt: skip
    assert "range_model" in old.meta and old.meta["range_model"] == "calibrated"
    x = np.full((1, 3, 16, 16), HI)
    with pytest.raises(FixedPointOverflow):
        simulate(old, x)
    assert simulate(g, x)["valid"] is False


def test_headroom_bits_raise_limits_and_ring(checked) -> None:  # noqa: ANN001
    d, g, rep = checked
    g3, rep3 = compile_model(None, None, graph=small_cnn(), calibrate=[d / "cal.npy"],
                             headroom_bits=3)  # fmt: skip
    assert rep3["ell"] >= rep["ell"]
    xs = _inputs(12, seed=4)
    f1, f3 = ([simulate(h, x)["valid"] is False for x in xs] for h in (g, g3))
    assert sum(f3) < sum(f1) and not any(b and not a for a, b in zip(f1, f3, strict=True))
    with pytest.raises(CompileError, match="--headroom-bits"):
        compile_model(None, None, graph=small_cnn(), headroom_bits=-1)


def test_limits_stay_on_the_server(checked) -> None:  # noqa: ANN001
    """The limits derive from calibration: the server's weights.npz holds them, the client's
    ir.json only their shape."""
    d, g, _ = checked
    ir = (d / "b" / "client" / "ir.json").read_text()
    keys = [g[n.inputs[1]].attrs["key"] for n in g.nodes if n.op == "relu" and len(n.inputs) == 2]
    assert keys
    with np.load(d / "b" / "server" / "weights.npz") as z:
        assert all(k in z.files for k in keys)
        for k in keys:
            assert json.dumps(z[k].ravel().tolist())[1:-1] not in ir


def test_simulate_cli_flags_invalid_result(checked) -> None:  # noqa: ANN001
    d, _, _ = checked
    np.save(d / "hi.npy", np.full((1, 3, 16, 16), HI))
    out = d / "sim_hi.json"
    res = CliRunner().invoke(cli, ["simulate", str(d / "b"), "--input", str(d / "hi.npy"),
                                   "-o", str(out)])  # fmt: skip
    assert res.exit_code == 3
    assert res.output.strip().startswith("twofold: error: result invalid: value out of range at %")
    doc = json.loads(out.read_text())
    assert doc["valid"] is False and "outputs" not in doc


def test_two_processes_flag_exactly_like_simulate(checked) -> None:  # noqa: ANN001
    """Real `run server` / `run client`: a valid input gives simulate's document bit for bit
    (with "valid": true), a flagged one the same verdict, exit 3, no probabilities."""
    d, g, _ = checked
    xs = {"ok": np.random.default_rng(1).uniform(-0.3, 0.3, (1, 3, 16, 16)),
          "hi": np.full((1, 3, 16, 16), HI)}  # fmt: skip
    srv = Server(d / "b")
    try:
        for name, x in xs.items():
            np.save(d / f"{name}.npy", x)
            res = client(d / "b", srv.addr, d / f"{name}.npy", d / f"o_{name}.json", "--quiet")
            got = json.loads((d / f"o_{name}.json").read_text())
            got.pop("cost")
            assert got["overflow_checked"] is True  # in simulate's document too
            want = json.loads(json.dumps(simulate(g, x)))
            assert got == want, name
            if name == "ok":
                assert res.returncode == 0 and got["valid"] is True, res.stderr
            else:
                assert res.returncode == 3 and got["valid"] is False
                assert "result invalid: value out of range at %" in res.stderr
    finally:
        srv.stop()


def test_run_client_refuses_out_of_range_with_a_live_server(checked) -> None:  # noqa: ANN001
    """A 1e9 pixel against a live server: refused before connecting, so the server never
    sees a session and no out.json is written."""
    d, _, _ = checked
    x = np.zeros((1, 3, 16, 16))
    x[0, 1, 2, 3] = 1e9
    np.save(d / "huge.npy", x)
    srv = Server(d / "b")
    try:
        res = client(d / "b", srv.addr, d / "huge.npy", d / "o_huge.json", "--quiet")
    finally:
        out, _ = srv.stop()
    assert res.returncode == 1 and "outside the range" in res.stderr
    assert not (d / "o_huge.json").exists() and "session" not in out


def test_eval_records_flagged_result_with_reason(tmp_path, zoo_onnx) -> None:  # noqa: ANN001
    """In an evaluation a flagged result is a secure failure with its reason and tensor, not a
    dropped row and not a probability."""
    ok = np.random.default_rng(1).uniform(-0.3, 0.3, (1, 3, 16, 16))
    hi = np.full((1, 3, 16, 16), HI)
    by_id = small_eval(tmp_path, zoo_onnx("resnet", 16), {"ok.npy": ok, "hi.npy": hi}, "ok.npy")
    assert "secure" in by_id["ok.npy"]
    bad = by_id["hi.npy"]
    assert bad["failure"] == "overflow" and "secure" not in bad
    assert "output flagged invalid: overflow at %" in bad["secure_error"]
