"""``twofold run client`` as the hospital's IT runs it: every mistake in the command line or the
files it names ends in one ``twofold: error:`` line, before any traffic, naming the thing at
fault, and nothing the user had is damaged (DESIGN.md §6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_run_cli import bundles  # noqa: F401

from twofold.cli import cli
from twofold.toolchain import write_json_atomic

NOBODY = "127.0.0.1:9"  # no server: an error about the connection means the check came too late


def run_client(bundle: Path, inp: Path, *extra: str):  # noqa: ANN201
    """``twofold run client`` in-process against a port nobody listens on."""
    return CliRunner().invoke(
        cli,
        ["run", "client", str(bundle), "--connect", NOBODY, "--input", str(inp), "--quiet",
         "--insecure-plaintext", *extra],
    )  # fmt: skip


def one_line(res, *needles: str) -> str:  # noqa: ANN001
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twofold: error: "), res.output
    assert "cannot connect" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------- D1: what -o names


def test_output_fifo_is_refused_not_replaced(bundles, tmp_path):  # noqa: F811
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(fifo)), str(fifo), "FIFO")
    assert fifo.is_fifo()


def test_output_symlink_to_a_fifo_is_refused(bundles, tmp_path):  # noqa: F811
    fifo, link = tmp_path / "f", tmp_path / "mystdout"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(link)), str(link), "FIFO")
    assert link.is_symlink() and fifo.is_fifo()


def test_output_equal_to_the_input_is_refused(bundles, tmp_path):  # noqa: F811
    x = tmp_path / "x.npy"
    x.write_bytes(bundles["x"].read_bytes())
    one_line(run_client(bundles["a"], x, "-o", str(x)), str(x), "input")
    assert x.read_bytes() == bundles["x"].read_bytes()
    hard = tmp_path / "hard.json"  # the same file under another name
    os.link(x, hard)
    one_line(run_client(bundles["a"], x, "-o", str(hard)), str(hard), "input")
    assert x.read_bytes() == bundles["x"].read_bytes()


def test_write_json_atomic_replaces_a_symlinks_target_and_never_a_fifo(tmp_path):
    """The write itself keeps the rule (the path may change during a long run)."""
    target, link = tmp_path / "real.json", tmp_path / "out.json"
    target.write_text("{}")
    link.symlink_to(target)
    write_json_atomic({"a": 1}, link)
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        write_json_atomic({"a": 1}, fifo)
    assert fifo.is_fifo() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_simulate_refuses_the_same_outputs(bundles, tmp_path):  # noqa: F811
    x = tmp_path / "x.npy"
    x.write_bytes(bundles["x"].read_bytes())
    res = CliRunner().invoke(cli, ["simulate", str(bundles["a"]), "--input", str(x), "-o", str(x)])
    one_line(res, str(x), "input")
    assert x.read_bytes() == bundles["x"].read_bytes()


# ----------------------------------------------- D2: the output's directory, before the run


def test_output_in_a_missing_directory_is_refused_before_the_run(bundles, tmp_path):  # noqa: F811
    out = tmp_path / "nodir" / "out.json"
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(out)),
             f"-o {out}: directory {out.parent} does not exist")  # fmt: skip
    afile = tmp_path / "afile"
    afile.write_text("")
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(afile / "out.json")),
             f"{afile} is not a directory")  # fmt: skip


def test_output_directory_not_writable_is_refused(bundles, tmp_path, monkeypatch):  # noqa: F811
    """(Root writes anywhere, so the permission is faked.)"""
    import twofold.toolchain as tc

    real = os.access
    monkeypatch.setattr(
        tc.os, "access", lambda path, mode: Path(path) != tmp_path and real(path, mode)
    )
    out = tmp_path / "out.json"
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(out)), f"-o {out}", "not writable")


def test_output_that_is_a_directory_is_one_line_not_a_usage_error(bundles, tmp_path):  # noqa: F811
    one_line(run_client(bundles["a"], bundles["x"], "-o", str(tmp_path)), str(tmp_path),
             "is a directory")  # fmt: skip
    res = CliRunner().invoke(
        cli, ["simulate", str(bundles["a"]), "--input", str(bundles["x"]), "-o", str(tmp_path)]
    )
    one_line(res, str(tmp_path), "is a directory")


def test_write_error_names_the_output_not_the_temporary_file(tmp_path):
    out = tmp_path / "gone" / "out.json"
    with pytest.raises(OSError, match=f"cannot write {out}") as e:
        write_json_atomic({"a": 1}, out)
    assert ".out.json." not in str(e.value)


# ------------------------------------------------ D3: --session-timeout is the run's limit


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_session_timeout_must_be_finite_and_positive(bundles, tmp_path, value):  # noqa: F811
    res = run_client(bundles["a"], bundles["x"], "-o", str(tmp_path / "o.json"),
                     "--session-timeout", value)  # fmt: skip
    one_line(res, "--session-timeout", value)
    assert not (tmp_path / "o.json").exists()


def test_session_timeout_bounds_the_opening_too(bundles):  # noqa: F811
    """A server trickling its gate reply: the opening's own bound (connect timeout + the
    per-read timeout) is longer than the --session-timeout, which still ends the run."""
    import time

    import numpy as np
    from test_run_admission import _frame, _trickling_server

    from twofold.runtime.errors import RuntimeProtocolError
    from twofold.runtime.runner import run_client as run

    t0 = time.monotonic()
    with (
        _trickling_server(_frame(64)) as port,  # a gate reply that never ends
        pytest.raises(RuntimeProtocolError, match="deadline"),
    ):
        run(bundles["a"], "127.0.0.1", port, {"image": np.load(bundles["x"])},
            insecure_plaintext=True, timeout=30.0, session_timeout=1.5, progress=False)  # fmt: skip
    assert time.monotonic() - t0 < 5


# ----------------------------------------------------------- D4: --timeout, at startup


@pytest.mark.parametrize(
    ("value", "shown"),
    [("inf", "inf"), ("1e308", "1e+308"), ("nan", "nan"), ("-1", "-1"), ("0", "0"),
     ("86401", "86401")],
)  # fmt: skip
def test_timeout_is_checked_at_startup(bundles, tmp_path, value, shown):  # noqa: F811
    res = run_client(bundles["a"], bundles["x"], "-o", str(tmp_path / "o.json"), "--timeout", value)
    one_line(res, "--timeout", shown)
    assert not (tmp_path / "o.json").exists()


def test_a_stray_overflow_error_is_one_line(monkeypatch, capsys):
    """The cause is fixed above; a number too large anywhere else still ends in one line."""
    import twofold.cli as tcli

    def boom(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        raise OverflowError("timeout doesn't fit into C timeval")

    monkeypatch.setattr(tcli.cli, "main", boom)
    with pytest.raises(SystemExit) as e:
        tcli.main(["run", "client"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["twofold: error: a number is too large: timeout doesn't fit into C timeval"]


# -------------------------------------------------------------- D5: Ctrl-C, every command


def _interrupt(proc) -> tuple[str, str]:  # noqa: ANN001
    """SIGINT ``proc`` (as Ctrl-C does); its (stdout, stderr)."""
    import signal

    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


def test_ctrl_c_in_run_client_is_interrupted_130(bundles, tmp_path):  # noqa: F811
    """The client waits on a server that accepted and says nothing; Ctrl-C ends it with one
    line, status 130, and the previous out.json as it was."""
    import socket
    import subprocess
    import sys

    out = tmp_path / "out.json"
    out.write_text('{"old": true}')
    with socket.create_server(("127.0.0.1", 0)) as lst:
        lst.settimeout(60)
        proc = subprocess.Popen(
            [sys.executable, "-m", "twofold.cli", "run", "client", str(bundles["a"]),
             "--connect", f"127.0.0.1:{lst.getsockname()[1]}", "--input", str(bundles["x"]),
             "-o", str(out), "--insecure-plaintext", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        conn, _ = lst.accept()  # the client is connected and waits for the gate's reply
        with conn:
            _, err = _interrupt(proc)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["twofold: interrupted"], err
    assert out.read_text() == '{"old": true}'


def test_ctrl_c_stops_run_server_with_130(bundles):  # noqa: F811
    from test_run_cli import Server

    srv = Server(bundles["a"])  # returns once the server printed its banner
    out, err = _interrupt(srv.proc)
    assert srv.proc.returncode == 130, err
    # the server handles Ctrl-C itself (admission.serve_forked): its log, on stdout, says it
    # stopped; nothing on stderr, where click's "Aborted!" or a traceback would go
    assert out.strip().splitlines()[-1].endswith("stopped"), out
    assert err.strip() == "", err


# --------------------------------------------------------- D6: a tampered client bundle


def _client_copy(b: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the client bundle to tamper with."""
    import shutil

    d = tmp_path / "client"
    shutil.copytree(b["a"] / "client", d)
    return d


@pytest.mark.parametrize("value", [None, 123])
def test_a_manifest_without_a_program_hash_is_a_bundle_error(bundles, tmp_path, value):  # noqa: F811
    """A manifest whose program hash is missing (or not a string) is one line naming the file,
    before anything else (it was a KeyError traceback from load_program)."""
    import json

    d = _client_copy(bundles, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    if value is None:
        del m["program_hash"]
    else:
        m["program_hash"] = value
    (d / "manifest.json").write_text(json.dumps(m))
    one_line(run_client(d, bundles["x"]), str(d / "manifest.json"), "no program hash")


@pytest.mark.parametrize("name", ["ir.json", "manifest.json"])
def test_deeply_nested_bundle_json_is_a_bundle_error(bundles, tmp_path, name):  # noqa: F811
    d = _client_copy(bundles, tmp_path)
    (d / name).write_text("[" * 100_000 + "]" * 100_000)
    line = one_line(run_client(d, bundles["x"]), str(d / name), "malformed", "nested too deeply")
    assert "Traceback" not in line


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_in_the_bundle_is_refused_not_waited_on(bundles, tmp_path, kind):  # noqa: F811
    import subprocess
    import sys

    name = "ir.json"
    d = _client_copy(bundles, tmp_path)
    (d / name).unlink()
    os.mkfifo(d / name) if kind == "fifo" else (d / name).mkdir()
    res = subprocess.run(
        [sys.executable, "-m", "twofold.cli", "run", "client", str(d), "--connect", NOBODY,
         "--input", str(bundles["x"]), "--insecure-plaintext", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(d / name) in lines[0] and "not a regular file" in lines[0]


def test_an_oversized_bundle_file_is_refused_unread(bundles, tmp_path):  # noqa: F811
    from twofold.ir.bundle import JSON_MAX

    d = _client_copy(bundles, tmp_path)
    with open(d / "ir.json", "r+b") as f:  # sparse: no disk spent
        f.truncate(JSON_MAX + 1)
    one_line(run_client(d, bundles["x"]), str(d / "ir.json"), "larger than")


# ------------------------------------------ D7: the program hash before any of its metadata


def _edit_ir(d: Path, edit, rehash: bool = False) -> None:  # noqa: ANN001
    """Apply ``edit`` to ``d/ir.json``'s document; with ``rehash`` the manifest names the
    edited program (what the vendor could ship), else it still names the compiled one."""
    from twofold.ir import program_hash
    from twofold.ir.bundle import load_ir

    doc = json.loads((d / "ir.json").read_text())
    edit(doc)
    (d / "ir.json").write_text(json.dumps(doc))
    if rehash:
        m = json.loads((d / "manifest.json").read_text())
        m["program_hash"] = program_hash(load_ir(d))
        (d / "manifest.json").write_text(json.dumps(m))


def _set_input(**kw):  # noqa: ANN003, ANN202
    return lambda doc: doc["meta"]["input"].update(kw)


INPUT_EDITS = {
    "input_null": lambda doc: doc["meta"].update(input=None),
    "range_nan": _set_input(range=[float("nan"), float("nan")]),
    "range_wide": _set_input(range=[-100, 100]),
    "scale_str": _set_input(scale="x"),
    "shape_str": _set_input(shape="x"),
    "preprocess": _set_input(preprocess="bogus"),
}


@pytest.mark.parametrize("edit", sorted(INPUT_EDITS))
def test_an_edited_ir_is_the_bundle_was_modified(bundles, tmp_path, edit):  # noqa: F811
    """Not errors blaming the image (AttributeError, NaN to int, int('x'), ...)."""
    d = _client_copy(bundles, tmp_path)
    _edit_ir(d, INPUT_EDITS[edit])
    one_line(run_client(d, bundles["x"]), str(d / "ir.json"), "the bundle was modified")


@pytest.mark.parametrize(
    ("edit", "field"),
    [("input_null", "meta.input is None"), ("range_nan", "meta.input.range"),
     ("shape_str", "meta.input.shape"), ("scale_str", "meta.input.scale"),
     ("preprocess", "meta.input.preprocess")],
)  # fmt: skip
def test_a_rehashed_malformed_input_spec_names_the_field(bundles, tmp_path, edit, field):  # noqa: F811
    d = _client_copy(bundles, tmp_path)
    _edit_ir(d, INPUT_EDITS[edit], rehash=True)
    line = one_line(run_client(d, bundles["x"]), str(d), field)
    assert str(bundles["x"]) not in line  # the image is not at fault


# ------------------------------------------------------------- D9: messages that say what


def test_input_that_is_a_directory_or_fifo_says_so(bundles, tmp_path):  # noqa: F811
    line = one_line(run_client(bundles["a"], tmp_path), str(tmp_path), "is a directory")
    assert "does not exist" not in line
    os.mkfifo(tmp_path / "x.png")
    one_line(run_client(bundles["a"], tmp_path / "x.png"), "not a regular file")


def test_non_finite_and_constant_pictures_are_named_once(bundles, tmp_path):  # noqa: F811
    import numpy as np
    from PIL import Image

    tif = tmp_path / "inf.tif"
    Image.fromarray(np.full((8, 8), np.inf, np.float32), "F").save(tif)
    line = one_line(run_client(bundles["a"], tif), str(tif), "non-finite")
    assert "constant pixel" not in line
    png = tmp_path / "const16.png"
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(png)
    line = one_line(run_client(bundles["a"], png), "constant pixel values")
    assert line.count(str(png)) == 1, line


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_a_bundle_without_its_manifest_says_so(bundles, tmp_path, kind):  # noqa: F811
    """The old single-directory layout is named only when its files are there."""
    d = _client_copy(bundles, tmp_path)
    (d / "manifest.json").unlink()
    if kind == "directory":
        (d / "manifest.json").mkdir()
    elif kind == "fifo":
        os.mkfifo(d / "manifest.json")
    want = {"missing": "is missing", "directory": "is a directory", "fifo": "not a regular file"}
    line = one_line(run_client(d, bundles["x"]), str(d / "manifest.json"), want[kind])
    assert "old single-directory" not in line and "recompile" not in line
    if kind == "directory":
        (d / "manifest.json").rmdir()
    elif kind == "fifo":
        (d / "manifest.json").unlink()
    (d / "weights.npz").write_bytes(b"")  # now the flat layout's files are all there
    (d / "report.json").write_text("{}")
    one_line(run_client(d, bundles["x"]), "manifest.json is missing", "old single-directory")


@pytest.mark.parametrize("ell", [200, "x"])
def test_a_rehashed_meta_ell_says_what_is_wrong(bundles, tmp_path, ell):  # noqa: F811
    d = _client_copy(bundles, tmp_path)
    _edit_ir(d, lambda doc: doc["meta"].update(ell=ell), rehash=True)
    line = one_line(run_client(d, bundles["x"]), f"meta.ell is {ell!r}", "ring of")
    assert "unexpected keyword" not in line


def test_an_oversized_token_is_refused_before_traffic(bundles, tmp_path):  # noqa: F811
    from twofold.twoparty import TOKEN_MAX

    big = tmp_path / "bigtok.txt"
    big.write_text("t" * (TOKEN_MAX + 1) + "\n")
    one_line(run_client(bundles["a"], bundles["x"], "--token", f"@{big}"),
             f"--token @{big}", f"{TOKEN_MAX + 1:,} bytes", f"at most {TOKEN_MAX:,}")  # fmt: skip
    big.write_text("t" * 3_000_000)  # not even read whole
    one_line(run_client(bundles["a"], bundles["x"], "--token", f"@{big}"), "more than")
    secret = "s" * (TOKEN_MAX + 1)
    line = one_line(run_client(bundles["a"], bundles["x"], "--token", secret), "--token")
    assert secret not in line  # a token is never printed


def test_the_longest_token_fits_the_servers_opening_frame():
    """TOKEN_MAX is what the gate frame takes, not a guess."""
    import json as js

    from twofold.runtime.gate import GATE_FRAME_MAX
    from twofold.twoparty import TOKEN_MAX, read_token

    assert len(js.dumps({"token": read_token("t" * TOKEN_MAX)}).encode()) == GATE_FRAME_MAX


def test_a_client_without_a_free_session_slot_is_told_so(bundles, tmp_path):  # noqa: F811
    """--max-sessions 1 and a session holding the slot: the next client, past the handshake,
    waits for a session that never starts; its message says so (busy or not answering)."""
    import time

    from test_run_cli import Server, client

    from twofold.runtime.gate import client_channel
    from twofold.runtime.runner import load_program
    from twofold.runtime.session import Party

    srv = Server(bundles["a"], "--max-sessions", "1", "--timeout", "60")
    holder = None
    try:
        host, port = srv.addr.rsplit(":", 1)
        holder = client_channel(host, int(port), server_fingerprint=srv.fingerprint, timeout=30)
        Party("client", holder, load_program(bundles["a"]).PROGRAM_HASH, setup_ot=False)
        holder.recv_bytes()  # the session settings: the one slot is the holder's now
        t0 = time.monotonic()
        res = client(bundles["a"], srv.addr, bundles["x"], tmp_path / "o.json", "--quiet",
                     "--timeout", "2")  # fmt: skip
        assert time.monotonic() - t0 < 30
    finally:
        if holder is not None:
            holder.close()
        srv.stop()
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("twofold: error: ") and "Traceback" not in res.stderr
    assert f"the server at {srv.addr} did not start the session" in last, last
    assert "session slots busy" in last and not (tmp_path / "o.json").exists()


# ------------------------------------- D10: a program that cannot flag an overflow, said so


@pytest.fixture(scope="module")
def unchecked(bundles, tmp_path_factory):  # noqa: F811, ANN001, ANN201
    """The "a" program calibrated on its input, in the calibrated range model (no checks)."""
    from test_python2pc import local_ops_graph

    from twofold.toolchain import compile_model

    d = tmp_path_factory.mktemp("unchecked") / "b"
    compile_model(None, d, graph=local_ops_graph(16), preprocess="none", input_range=(-3, 3),
                  calibrate=[bundles["x"]], range_model="calibrated")  # fmt: skip
    return d


def test_the_ir_says_whether_overflow_is_checked(bundles, unchecked, tmp_path):  # noqa: F811
    from test_python2pc import local_ops_graph

    from twofold.runtime.runner import load_program
    from twofold.toolchain import compile_model

    checked = tmp_path / "checked"
    compile_model(None, checked, graph=local_ops_graph(16), preprocess="none",
                  input_range=(-3, 3), calibrate=[bundles["x"]])  # fmt: skip
    # public, so the client knows it from the hash-checked IR: True with in-protocol checks or
    # sound (uncalibrated) ranges, False for ranges cut to the calibration images
    assert load_program(checked).OVERFLOW_CHECKED is True
    assert load_program(bundles["a"]).OVERFLOW_CHECKED is True
    assert load_program(unchecked).OVERFLOW_CHECKED is False
    ir = json.loads((unchecked / "client" / "ir.json").read_text())
    assert ir["meta"]["overflow_checked"] is False
    # an IR from before the key: its checked ReLUs tell the checked model; else nothing tells
    from twofold.runtime.program import overflow_checked

    for bundle, want in ((checked, True), (unchecked, None), (bundles["a"], None)):
        g = load_program(bundle).graph
        del g.meta["overflow_checked"]
        assert overflow_checked(g) is want


def test_an_unchecked_program_is_refused_unless_allowed(unchecked, bundles, tmp_path):  # noqa: F811
    out = tmp_path / "o.json"
    one_line(run_client(unchecked, bundles["x"], "-o", str(out)), "cannot flag an overflow",
             "--range-model calibrated", "--allow-unchecked", "before any traffic")  # fmt: skip
    assert not out.exists()


def test_an_allowed_unchecked_result_says_unchecked(unchecked, bundles, tmp_path):  # noqa: F811
    from test_run_cli import Server, client

    srv = Server(unchecked, "--once")
    try:
        res = client(unchecked, srv.addr, bundles["x"], tmp_path / "o.json", "--quiet",
                     "--allow-unchecked")  # fmt: skip
    finally:
        srv.stop()
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["overflow_checked"] is False and "outputs" in doc
    assert "UNCHECKED result" in res.stderr
    assert _simulated(unchecked, bundles["x"], tmp_path) == {**doc, "cost": None}


def _simulated(bundle, x, tmp_path):  # noqa: ANN001, ANN202
    """`twofold simulate`'s out.json for ``x``, with run client's ``cost`` key (None)."""
    from click.testing import CliRunner

    from twofold.cli import cli

    r = CliRunner().invoke(cli, ["simulate", str(bundle), "--input", str(x), "-o",
                                 str(tmp_path / "sim.json")])  # fmt: skip
    assert r.exit_code == 0, r.output
    return {**json.loads((tmp_path / "sim.json").read_text()), "cost": None}


def test_a_checked_result_says_checked(bundles, tmp_path):  # noqa: F811
    from test_run_cli import Server, client

    srv = Server(bundles["a"], "--once")
    try:
        res = client(bundles["a"], srv.addr, bundles["x"], tmp_path / "o.json", "--quiet")
    finally:
        srv.stop()
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["overflow_checked"] is True
    assert "UNCHECKED" not in res.stderr
    # simulate says the same, under the same name: its out.json is run client's minus cost
    assert _simulated(bundles["a"], bundles["x"], tmp_path) == {**doc, "cost": None}


def test_an_older_ir_without_the_key(bundles, tmp_path):  # noqa: F811
    """Compiled before the key: checked ReLUs say the checked range model; nothing else can
    be told, so the client refuses (recompile, or --allow-unchecked)."""
    d = _client_copy(bundles, tmp_path)
    _edit_ir(d, lambda doc: doc["meta"].pop("overflow_checked"), rehash=True)
    one_line(run_client(d, bundles["x"]), "does not say whether it flags overflows",
             "recompile", "--allow-unchecked")  # fmt: skip
    res = run_client(d, bundles["x"], "--allow-unchecked")
    assert "cannot connect" in res.output  # past the refusal: only the missing server stops it
