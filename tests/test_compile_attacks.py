"""``twofold compile`` on hostile or broken inputs: one ``twofold: error:`` line naming the thing
at fault, a non-zero exit, nothing written, an earlier bundle left as it was; and the notes on
what in the client bundle may depend on the weights stay complete."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from twofold.cli import cli

F = TensorProto.FLOAT


def _save(path: Path, nodes: list, inits: list, in_shape=(1, 4), out_shape=(1, 4)) -> Path:  # noqa: ANN001
    x = helper.make_tensor_value_info("x", F, list(in_shape))
    y = helper.make_tensor_value_info("y", F, list(out_shape))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def _i64(values: list[int], name: str) -> TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _f32(values, name: str) -> TensorProto:  # noqa: ANN001
    return numpy_helper.from_array(np.array(values, np.float32), name)


def _compile(*args: str) -> object:
    return CliRunner().invoke(cli, ["compile", *args, "--preprocess", "none"])


def _one_error_line(res, *names: str) -> None:  # noqa: ANN001
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # not a traceback
    assert res.output.startswith("twofold: error: ") and res.output.count("\n") == 1, res.output
    for n in names:
        assert n in res.output, (n, res.output)


def _external(path: Path, location: str) -> Path:
    """x + w with w's 4 floats stored in the external file ``location``."""
    w = TensorProto(name="w", data_type=F, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return _save(path, [helper.make_node("Add", ["x", "w"], ["y"], name="add0")], [w])


@pytest.mark.parametrize("where", ["parent", "absolute", "linked-dir"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path: Path, where: str) -> None:
    secret = tmp_path / "secret.bin"
    np.arange(4, dtype=np.float32).tofile(secret)
    d = tmp_path / "vendor"
    d.mkdir()
    if where == "linked-dir":
        (d / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    location = {"parent": "../secret.bin", "absolute": str(secret),
                "linked-dir": "elsewhere/secret.bin"}[where]  # fmt: skip
    model = _external(d / "m.onnx", location)
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    _one_error_line(res, "m.onnx", "'w'", "outside")
    assert not (tmp_path / "out").exists()


def test_external_data_inside_the_model_folder_still_loads(tmp_path: Path) -> None:
    np.arange(4, dtype=np.float32).tofile(tmp_path / "w.bin")
    model = _external(tmp_path / "m.onnx", "w.bin")
    res = _compile(str(model), "-o", str(tmp_path / "out"), "--bitlength", "32")
    assert res.exit_code == 0, res.output


def test_a_fifo_model_is_named_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    res = _compile(str(fifo), "-o", str(tmp_path / "out"))
    _one_error_line(res, "m.onnx", "FIFO")
    assert "does not exist" not in res.output


def test_huge_constant_of_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    """A 16 TiB ConstantOfShape folded on constants: a clear refusal, not a MemoryError (or
    the OOM killer for a size that does fit in virtual memory)."""
    nodes = [
        helper.make_node(
            "ConstantOfShape", ["shp"], ["c"], name="big_fill", value=_f32([1.0], "v")
        ),  # fmt: skip
        helper.make_node("Slice", ["c", "st", "en", "ax"], ["c1"], name="sl"),
        helper.make_node("Reshape", ["c1", "rs"], ["c2"], name="rs"),
        helper.make_node("Add", ["x", "c2"], ["y"], name="add"),
    ]
    inits = [_i64([1 << 20, 1 << 20, 4], "shp"), _i64([0, 0], "st"), _i64([1, 1], "en"),
             _i64([0, 1], "ax"), _i64([1, 4], "rs")]  # fmt: skip
    model = _save(tmp_path / "m.onnx", nodes, inits)
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    _one_error_line(res, "big_fill", "ConstantOfShape")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_is_named(tmp_path: Path, bad: float) -> None:
    w = np.ones((4, 4), np.float32)
    w[1, 2] = bad
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    model = _save(tmp_path / "m.onnx", nodes, [numpy_helper.from_array(w, "W")])
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    _one_error_line(res, "'W'", "mm")


def test_nan_scalar_constant_is_named(tmp_path: Path) -> None:
    nodes = [helper.make_node("Mul", ["x", "s"], ["y"], name="scale_mul")]
    model = _save(tmp_path / "m.onnx", nodes, [_f32(np.nan, "s")])
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    _one_error_line(res, "'s'", "scale_mul", "NaN")


def test_an_op_on_weights_alone_is_one_line(tmp_path: Path) -> None:
    """``y * T.exp()`` as torch's legacy exporter writes it: Exp of an initializer at run
    time (was a KeyError traceback in quantize)."""
    nodes = [helper.make_node("Exp", ["T"], ["e"], name="temp_exp"),
             helper.make_node("Mul", ["x", "e"], ["y"], name="mul")]  # fmt: skip
    model = _save(tmp_path / "m.onnx", nodes, [_f32(0.5, "T")])
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    _one_error_line(res, "lut of model constants only (%T)")


def test_note_names_a_learned_scalar_folded_on_constants(tmp_path: Path) -> None:
    """``y / (T + 1)`` left unfolded by the exporter: the frontend folds T + 1 itself, and the
    public divisor must still be listed as read from the initializer T."""
    one = helper.make_node("Constant", [], ["one"], name="one", value=_f32(1.0, "one_v"))
    nodes = [one, helper.make_node("Add", ["T", "one"], ["t1"], name="t_plus_1"),
             helper.make_node("Unsqueeze", ["t1", "ax"], ["t2"], name="unsq"),
             helper.make_node("Div", ["x", "t2"], ["y"], name="temperature")]  # fmt: skip
    model = _save(tmp_path / "m.onnx", nodes, [_f32(2.5, "T"), _i64([0], "ax")])
    res = _compile(str(model), "-o", str(tmp_path / "out"), "--bitlength", "32")
    assert res.exit_code == 0, res.output
    assert "from 'T'" in res.output, res.output


def test_l_note_does_not_claim_calibration_that_was_not_given(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    model = _save(tmp_path / "m.onnx", nodes, [_f32(np.ones((4, 4)), "W")])
    res = _compile(str(model), "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    (note,) = [line for line in res.output.splitlines() if "--bitlength auto" in line]
    assert "calibration" not in note, note
    np.save(tmp_path / "c.npy", np.full((1, 4), 0.5))
    res = _compile(str(model), "-o", str(tmp_path / "o2"), "--calibrate", str(tmp_path / "c.npy"))
    (note,) = [line for line in res.output.splitlines() if "--bitlength auto" in line]
    assert "calibration" in note, note


# ------------------------------------------------------------------ -o DIR


def _digests(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["y"], name="r")]  # fmt: skip
    return _save(tmp_path / "tiny.onnx", nodes, [_f32(np.eye(4), "W")])


def test_compile_into_a_project_folder_deletes_none_of_its_files(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    """``-o`` an existing folder that is not an old-layout bundle: its program.py and
    report.json are the vendor's, not a bundle's, and stay."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "program.py").write_text("the vendor's training code\n")
    (proj / "report.json").write_text('{"auroc": 0.91}\n')
    (proj / "client").mkdir()  # an empty part: fine
    for _ in range(2):  # a first compile, then a recompile
        res = _compile(str(tiny), "-o", str(proj), "--bitlength", "32")
        assert res.exit_code == 0, res.output
        assert (proj / "program.py").read_text() == "the vendor's training code\n"
        assert (proj / "report.json").read_text() == '{"auroc": 0.91}\n'


@pytest.mark.parametrize("part", ["client", "server"])
def test_foreign_files_in_a_part_are_refused_not_shipped(tmp_path: Path, tiny, part: str) -> None:  # noqa: ANN001
    """A file compile did not write, in DIR/client, would go to the hospital with the client
    bundle; in a DIR/server that is no bundle, its files would be overwritten. Refused before
    anything is written, naming the file."""
    out = tmp_path / "out"
    (out / part).mkdir(parents=True)
    (out / part / "patients.csv").write_text("mrn,diagnosis\n88213,effusion\n")
    (out / part / "program.py").write_text("the vendor's own server code\n")
    before = _digests(out)
    res = _compile(str(tiny), "-o", str(out), "--bitlength", "32")
    _one_error_line(res, str(out / part))
    assert _digests(out) == before
    assert sorted(p.name for p in out.iterdir()) == [part]


def test_recompile_refuses_a_file_added_to_the_client_part(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    assert _compile(str(tiny), "-o", str(out), "--bitlength", "32").exit_code == 0
    (out / "client" / "calibration.npy").write_bytes(b"\x93NUMPY")
    before = _digests(out)
    res = _compile(str(tiny), "-o", str(out), "--bitlength", "32")
    _one_error_line(res, "calibration.npy")
    assert _digests(out) == before


def test_recompile_keeps_server_extras(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    """The server part's own extras (its TLS key) are carried over, as before."""
    out = tmp_path / "out"
    assert _compile(str(tiny), "-o", str(out), "--bitlength", "32").exit_code == 0
    (out / "server" / "tls").mkdir()
    (out / "server" / "tls" / "key.pem").write_text("k")
    assert _compile(str(tiny), "-o", str(out), "--bitlength", "31").exit_code == 0
    assert (out / "server" / "tls" / "key.pem").read_text() == "k"


def test_old_layout_bundle_is_still_cleaned_up(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    out.mkdir()
    for f in ("ir.txt", "ir.json", "weights.npz", "report.json", "program.py"):
        (out / f).write_text("old")
    res = _compile(str(tiny), "-o", str(out), "--bitlength", "32")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["client", "server"]


def test_dangling_symlink_output_is_named(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    res = _compile(str(tiny), "-o", str(link))
    _one_error_line(res, str(link), "does not exist", "create that folder or give another -o")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("inner", ["client", "server", "client/v2"])
def test_output_inside_a_bundle_part_is_refused(tmp_path: Path, tiny, inner: str) -> None:  # noqa: ANN001
    """``-o build/client`` (the part the vendor hands to the hospital, given for the bundle's
    top folder) would write ``build/client/server/weights.npz``: the weights inside the folder
    that is shipped. A part, or a folder inside one, is refused as ``-o``, naming the part."""
    out = tmp_path / "build"
    assert _compile(str(tiny), "-o", str(out), "--bitlength", "32").exit_code == 0
    before = _digests(out)
    res = _compile(str(tiny), "-o", str(out / inner), "--bitlength", "32")
    _one_error_line(res, str(out / inner.split("/")[0]), f"-o {out}")
    assert _digests(out) == before
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_symlinked_output_on_another_file_system_is_recompiled(tmp_path: Path, tiny) -> None:  # noqa: ANN001
    """``-o build`` where ``build`` links to a folder on another file system (a scratch
    volume): a recompile replaces the parts there, as in an ordinary folder."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary directory")
    target = Path(tempfile.mkdtemp(dir=shm, prefix="twofold-test-"))
    try:
        link = tmp_path / "build"
        link.symlink_to(target)
        for ell in ("32", "31"):  # a first compile into the empty folder, then a recompile
            res = _compile(str(tiny), "-o", str(link), "--bitlength", ell)
            assert res.exit_code == 0, res.output
        assert sorted(p.name for p in target.iterdir()) == ["client", "server"]
        assert "fix<31," in (target / "client" / "ir.txt").read_text()  # the recompile's
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    finally:
        shutil.rmtree(target, ignore_errors=True)
