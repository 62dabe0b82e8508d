"""A batch of N images runs as one program (issue 17): compile with ``--input-shape N,...``,
simulate, and 2PC equal to simulate bit for bit, each image's logits equal to the batch-1
program's, and the rounds shared by the whole batch (the HE packing, the OTs and the
non-linear protocols all run over the batch at once)."""

from __future__ import annotations

import numpy as np
import pytest

from twofold.backends.cleartext import Cleartext, simulate
from twofold.backends.float_ref import run_float
from twofold.frontends.onnx import load_onnx
from twofold.runtime.executor import Executor
from twofold.runtime.program import Program
from twofold.runtime.ring import to_signed
from twofold.runtime.session import run_parties
from twofold.toolchain import compile_model


def _images(n: int, size: int = 16) -> np.ndarray:
    return np.clip(np.random.default_rng(n).normal(0, 1, (n, 3, size, size)), -2, 2.5)


def _two_party(g, x: np.ndarray) -> tuple[np.ndarray, int]:  # noqa: ANN001
    mod = Program(g)

    def server(party):  # noqa: ANN001, ANN202
        return mod.run(Executor(party, mod.ELL, weights=dict(g.params), steps=mod.STEPS))

    def client(party):  # noqa: ANN001, ANN202
        rt = Executor(party, mod.ELL, inputs={"image": x}, steps=mod.STEPS)
        return mod.run(rt), rt

    _, (out, rt) = run_parties(server, client, program_hash=mod.PROGRAM_HASH)
    return out[g.outputs[0]], sum(lc.rounds for lc in rt.cost.layers)


def test_batch_runs_as_one_program(zoo_onnx):
    path = zoo_onnx("resnet", 16)
    x = _images(3)
    outs, rounds = {}, {}
    for n in (1, 3):
        g, _ = compile_model(path, None, input_shape=(n, 3, 16, 16), preprocess="none")
        assert g[g.inputs()[0].name].type.shape[0] == n
        outs[n], rounds[n] = _two_party(g, x[:n])
        assert np.array_equal(
            outs[n], to_signed(Cleartext(g).run(x[:n])[g.outputs[0]], g.meta["ell"])
        )
    assert np.array_equal(outs[3][:1], outs[1])  # image 0 alike in both programs
    assert rounds[3] < 1.5 * rounds[1]  # three images for little more than one's rounds


@pytest.mark.parametrize("name", ["squeezenet", "vgg", "mobilenet"])
def test_batch_simulates_like_the_float_reference(zoo_onnx, name):
    path = zoo_onnx(name, 16)
    x = _images(4)
    g, _ = compile_model(path, None, input_shape=(4, 3, 16, 16), preprocess="none")
    want = next(iter(run_float(load_onnx(path, (4, 3, 16, 16)), {"image": x}, np.float64).values()))
    (got,) = simulate(g, x)["outputs"].values()  # after the output function, like the float ref
    assert got["shape"][0] == 4
    assert np.abs(np.asarray(got["values"]).reshape(want.shape) - want).max() <= 2e-2


def test_cli_compiles_a_batch_calibrated_on_one_image(zoo_onnx, tmp_path):
    """``--input-shape N,...`` with single-image calibration files (repeated over the batch);
    ``simulate`` then takes an .npy of N images."""
    import json

    from click.testing import CliRunner

    from twofold.cli import cli

    np.save(tmp_path / "one.npy", _images(1)[0])
    np.save(tmp_path / "two.npy", _images(2))
    path, out = zoo_onnx("vgg", 16), tmp_path / "b"
    args = ["compile", str(path), "-o", str(out), "--preprocess", "none", "--headroom-bits", "4"]
    res = CliRunner().invoke(cli, [*args, "--input-shape", "2,3,16,16", "--calibrate",
                                   str(tmp_path / "one.npy")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        cli, ["simulate", str(out), "--input", str(tmp_path / "two.npy"), "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    (o,) = json.loads((tmp_path / "o").read_text())["outputs"].values()
    assert o["shape"] == [2, 10]


def test_session_deadline_grows_with_the_batch(zoo_onnx):
    """The server's default session deadline scales with the images a session carries, so a
    batch-N session is not cut off at the batch-1 bound."""
    from twofold.runtime.runner import session_deadline

    path = zoo_onnx("vgg", 16)
    one, four = (
        Program(compile_model(path, None, input_shape=(n, 3, 16, 16), preprocess="none")[0])
        for n in (1, 4)
    )
    assert one.STEPS == four.STEPS
    assert session_deadline(four, None) - 600 == 4 * (session_deadline(one, None) - 600)
    assert session_deadline(four, 30.0) == 30.0
