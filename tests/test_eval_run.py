"""End to end: a torch-exported ONNX model and its compiled bundle through ``run_eval``:
plaintext (onnxruntime) vs secure (cleartext fixed point), bad rows, resume after a stop."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from evalnet import export_eval_net

from twofold.eval.runner import EvalConfig, EvalError, run_eval
from twofold.ir import Graph
from twofold.toolchain import compile_model

SIZE = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Conv-ReLU-GAP-FC-sigmoid with 14 outputs, exported by torch; the same net as IR."""
    tmp = tmp_path_factory.mktemp("model")
    conv, fc = export_eval_net(tmp / "m.onnx", SIZE)
    g = Graph()
    x = g.add("input", attrs={"name": "image", "shape": [1, 3, SIZE, SIZE]}, name="x")
    w, b = (
        g.add_param("c.w", conv.weight.detach().numpy()),
        g.add_param("c.b", conv.bias.detach().numpy()),
    )
    y = g.add("relu", [g.add("conv2d", [x, w, b], {"strides": [1, 1], "pads": [1] * 4})])
    f = g.add("flatten", [g.add("global_avgpool", [y])])
    fw = g.add_param("fc.w", fc.weight.detach().numpy().T.copy())
    fb = g.add_param("fc.b", fc.bias.detach().numpy())
    g.outputs = [g.add("sigmoid", [g.add("gemm", [f, fw, fb])], name="prob")]
    compile_model(None, tmp / "bundle", graph=g, preprocess="none", scale=12)
    return tmp / "m.onnx", tmp / "bundle"


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(1)
    img = tmp_path / "img"
    img.mkdir()
    rows = ["path,Cardiomegaly,Pleural Effusion"]
    for i in range(12):
        np.save(img / f"x{i}.npy", rng.uniform(-1, 1, (1, 3, SIZE, SIZE)))
        rows.append(f"x{i}.npy,{i % 2},{int(i % 3 == 0)}")
    import pydicom.data
    from PIL import Image

    shutil.copy(pydicom.data.get_testdata_file("RG1_UNCR.dcm"), img / "rg1.dcm")  # real DICOM
    Image.fromarray(rng.integers(0, 255, (20, 16), dtype=np.uint8)).save(img / "p.png")
    (img / "broken.npy").write_bytes(b"not an array")
    rows += ["rg1.dcm,1,1", "p.png,0,0", "broken.npy,1,0", "gone.npy,0,1", "x1.npy,1,1"]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "d.csv", img


def _cfg(model, dataset, out, **kw):
    return EvalConfig(bundle=model[1], model=model[0], dataset=dataset[0], fmt="plain",
                      images=dataset[1], out=out, **kw)  # fmt: skip


def _stable(summary):
    """The report's content minus timings and paths."""
    return {k: summary[k] for k in ("dataset", "labels", "overall", "verdicts")} | {
        "dataset": {**summary["dataset"], "path": None}
    }


def test_run_report_bad_rows_and_agreement(model, dataset, tmp_path):
    s = run_eval(_cfg(model, dataset, tmp_path / "out"))
    d = s["dataset"]
    assert (d["rows"], d["images"], d["evaluated"], d["pending"]) == (17, 15, 14, 0)
    reasons = {b["id"]: b["reason"] for b in d["bad_rows"]}
    assert set(reasons) == {"broken.npy", "gone.npy", "x1.npy"}
    assert reasons["broken.npy"].startswith("unreadable image")
    assert "missing file" in reasons["gone.npy"] and "duplicate" in reasons["x1.npy"]
    assert [r["label"] for r in s["labels"]] == ["Cardiomegaly", "Effusion"]
    for r in s["labels"]:
        assert abs(r["auc_secure"]["auc"] - r["auc_plain"]["auc"]) <= 0.05
    assert s["overall"]["max_abs_diff"] < 1e-3 and s["verdicts"]["equivalent"]
    assert s["cost"]["per_image"]["peak_mem_bytes"]["max"] > 0
    out = tmp_path / "out"
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert recs[0]["kind"] == "header" and len(recs) == 1 + 15
    assert {"report.md", "report.html", "summary.json", "roc.png"} <= {
        p.name for p in out.iterdir()
    }


def test_resume_after_stop_gives_the_same_report(model, dataset, tmp_path):
    full = run_eval(_cfg(model, dataset, tmp_path / "full"))
    part = run_eval(_cfg(model, dataset, tmp_path / "part", limit=4))
    assert part["dataset"]["evaluated"] == 4 and part["dataset"]["pending"] == 11
    assert "incomplete run" in (tmp_path / "part" / "report.md").read_text()
    with (tmp_path / "part" / "results.jsonl").open("a") as f:
        f.write('{"id":"x5.npy","plain":[0.1,')  # killed mid-write
    with pytest.raises(EvalError, match="pass --resume"):
        run_eval(_cfg(model, dataset, tmp_path / "part"))
    msgs = []
    resumed = run_eval(_cfg(model, dataset, tmp_path / "part", resume=True, jobs=2), msgs.append)
    assert any("partial last record" in m for m in msgs)
    assert any("4 done, 11 to run" in m for m in msgs)
    assert _stable(resumed) == _stable(full)
    lines = (tmp_path / "part" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 15  # every image exactly once: none lost, none recomputed


def test_config_errors_are_clear(model, dataset, tmp_path):
    with pytest.raises(EvalError, match="--connect HOST:PORT"):
        run_eval(_cfg(model, dataset, tmp_path / "o", mode="2pc"))
    with pytest.raises(EvalError, match="ONNX model .* does not exist"):
        run_eval(_cfg((tmp_path / "nope.onnx", model[1]), dataset, tmp_path / "o"))
    with pytest.raises(EvalError, match="not a compiled bundle"):
        run_eval(_cfg((model[0], tmp_path / "nob"), dataset, tmp_path / "o"))
    with pytest.raises(EvalError, match="3 label names given for a model with 14 outputs"):
        run_eval(_cfg(model, dataset, tmp_path / "o", labels=["a", "b", "c"]))


def test_cli_eval_and_one_line_errors(model, dataset, tmp_path):
    from click.testing import CliRunner

    from twofold.cli import cli

    base = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(dataset[0]),
            "--images", str(dataset[1]), "--quiet"]  # fmt: skip
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o"), "--limit", "3"])
    assert r.exit_code == 0, r.output
    assert "3 images evaluated, 2 bad rows, 12 pending" in r.output
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "pass --resume" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o2"), "--format", "nih"])
    assert r.exit_code == 1 and "'Image Index', 'Finding Labels'" in r.output
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o3"), "--label-map", "x"])
    assert r.exit_code == 1 and "DATASET_LABEL=MODEL_LABEL" in r.output
    (tmp_path / "h.csv").write_text("path,Cardiomegaly\n")
    hdr = [*base[:5], str(tmp_path / "h.csv"), *base[6:], "-o", str(tmp_path / "o4")]
    r = CliRunner().invoke(cli, hdr)
    assert r.exit_code == 1 and "has a header but no data rows" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o4").exists()
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o"), "--retry-failed"])
    assert r.exit_code != 0 and "--retry-failed goes with --resume" in r.output
    for bad in ("0", "-1", "nan", "inf", "1e308"):  # refused at start, naming the option
        r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "o5"), "--timeout", bad])
        assert r.exit_code == 1 and r.output.startswith("twofold: error: --timeout"), r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o5").exists()


def test_two_party_mode_against_a_server(model, dataset, tmp_path):
    """Real 2PC sessions over loopback TCP (two jobs), each checked against simulate."""
    import subprocess
    import sys

    from twofold.twoparty import parse_banner

    srv = subprocess.Popen(
        [sys.executable, "-m", "twofold.cli", "run", "server", str(model[1]),
         "--listen", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        addr, fp = parse_banner(srv.stdout.readline())
        pin = {"server_fingerprint": fp}
        with pytest.raises(EvalError, match="--server-fingerprint"):  # TLS is not optional
            run_eval(_cfg(model, dataset, tmp_path / "o0", mode="2pc", connect=addr))
        s = run_eval(_cfg(model, dataset, tmp_path / "o", mode="2pc", connect=addr, jobs=2,
                          limit=3, connect_options=pin))  # fmt: skip
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    assert s["dataset"]["evaluated"] == 3
    assert s["overall"]["twopc_vs_simulate"] == {
        "images": 3, "bit_exact_images": 3, "max_abs_diff": 0.0,
    }  # fmt: skip
    per = s["cost"]["per_image"]
    assert per["comm_bytes"]["mean"] > 0 and per["rounds"]["mean"] > 0
    assert "bit-identical" in (tmp_path / "o" / "report.md").read_text()
    with pytest.raises(EvalError, match="two-party run with 127.0.0.1:.* failed"):
        run_eval(_cfg(model, dataset, tmp_path / "o2", mode="2pc", connect=addr,
                      connect_options=pin))  # server gone  # fmt: skip


def test_eval_is_not_held_back_by_the_servers_rate_limit(model, dataset, tmp_path):
    """``twofold eval`` opens one connection per image from one address; the server's
    per-address rate limit gives a token back for each session that completes, so ten images
    pass a server whose bucket holds 5 and refills once in 100 s (and the defaults, 20 and 1 a
    second, never throttle it)."""
    import subprocess
    import sys

    from twofold.twoparty import parse_banner

    srv = subprocess.Popen(
        [sys.executable, "-m", "twofold.cli", "run", "server", str(model[1]),
         "--listen", "127.0.0.1:0", "--quiet", "--burst-per-address", "5",
         "--rate-per-address", "0.01"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        addr, fp = parse_banner(srv.stdout.readline())
        s = run_eval(_cfg(model, dataset, tmp_path / "o", mode="2pc", connect=addr, jobs=2,
                          limit=10, connect_options={"server_fingerprint": fp}))  # fmt: skip
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    assert s["dataset"]["evaluated"] == 10
    assert s["overall"]["twopc_vs_simulate"]["bit_exact_images"] == 10


def test_sigkill_mid_run_then_resume(model, tmp_path):
    """A real kill -9 of `twofold eval` while it runs; --resume completes the same report."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    from twofold.cli import cli

    rng = np.random.default_rng(7)
    img = tmp_path / "img"
    img.mkdir()
    rows = ["path,Cardiomegaly"]
    for i in range(60):
        np.save(img / f"x{i}.npy", rng.uniform(-1, 1, (1, 3, SIZE, SIZE)))
        rows.append(f"x{i}.npy,{i % 2}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    args = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(tmp_path / "d.csv"),
            "--images", str(img), "--quiet"]  # fmt: skip
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "twofold.cli", *args, "-o", str(out)], env=env)
    res = out / "results.jsonl"
    while proc.poll() is None:
        if res.exists() and res.read_bytes().count(b"\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = res.read_bytes().count(b"\n") - 1
    assert 2 <= done < 60 and not (out / "summary.json").exists()
    r = CliRunner().invoke(cli, [*args, "-o", str(out), "--resume"])
    assert r.exit_code == 0, r.output
    assert "60 images evaluated, 0 bad rows, 0 pending" in r.output
    assert res.read_bytes().count(b"\n") == 61  # each image once
    ref = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "ref")])
    assert ref.exit_code == 0, ref.output
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert _stable(a) == _stable(b)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_in_2pc_ends_the_sessions_in_flight_at_once(model, dataset, tmp_path, presses):
    """Ctrl-C (once, or twice in a row) while two 2PC sessions are in flight on a server that
    accepted them and says nothing yet (as during a long session): eval ends both sessions
    at once (the server sees each connection close) instead of waiting for them (here the
    61 s handshake deadline; a 224² session runs minutes), records neither, and exits 130 with
    ``twofold: interrupted`` and no traceback; --resume then runs them."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from twofold.twoparty import parse_banner

    out = tmp_path / "o"
    args = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(dataset[0]),
            "--images", str(dataset[1]), "--mode", "2pc", "--jobs", "2",
            "--insecure-plaintext", "-o", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with socket.create_server(("127.0.0.1", 0)) as lst:
        lst.settimeout(60)
        port = lst.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "twofold.cli", *args, "--connect", f"127.0.0.1:{port}"],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        conns = [lst.accept()[0] for _ in range(2)]  # both sessions connected, waiting
        t0 = time.monotonic()
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
        for c in conns:  # the client ended each session: the server reads it to EOF at once
            c.settimeout(5)
            while c.recv(1 << 16):
                pass
            c.close()
    assert proc.returncode == 130, err
    assert took < 5, f"Ctrl-C took {took:.1f} s to stop eval"
    lines = err.strip().splitlines()
    assert lines[-1] == "twofold: interrupted" and "Traceback" not in err, err
    if presses == 1:
        assert any(x.startswith("interrupted: ended the 2 image(s) in flight") for x in lines)
    assert (out / "results.jsonl").read_text().count("\n") == 1  # the header: no record
    srv = subprocess.Popen(
        [sys.executable, "-m", "twofold.cli", "run", "server", str(model[1]),
         "--listen", "127.0.0.1:0", "--quiet", "--insecure-plaintext"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        addr, _ = parse_banner(srv.stdout.readline())
        s = run_eval(_cfg(model, dataset, out, mode="2pc", connect=addr, resume=True, limit=2,
                          connect_options={"insecure_plaintext": True}))  # fmt: skip
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    assert s["dataset"]["evaluated"] == 2 and s["secure_failures"]["failed"] == 0


def test_a_killed_runs_temporaries_are_removed_and_nothing_else(model, dataset, tmp_path):
    """A process SIGKILLed while writing the report set leaves its temporary files in the
    output folder; the next run removes them (this machine, a process no longer running, one
    of eval's own file names) and leaves everything else: a user's files, a live process's,
    another machine's, an older version's temporary."""
    import os
    import signal
    import subprocess
    import sys

    from twofold.eval import scratch

    out = tmp_path / "o"
    out.mkdir()
    code = (
        "import os, signal, sys; from pathlib import Path; from twofold.eval.report import "
        "_Staged; from twofold.eval.results import ResultsLog; o = Path(sys.argv[1]); "
        "st = _Staged(o); st.write('report.md', b'half'); st.path('roc.png'); "
        "(o / 'summary.json').write_text('{}'); st._keep(o / 'summary.json'); "
        "from twofold.eval import scratch; scratch.temporary(o, 'results.jsonl'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=False)
    assert r.returncode == -signal.SIGKILL
    (out / "summary.json").unlink()
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 4 and all(scratch.stale(out / n) for n in left), left
    assert any("-old-" in n for n in left) and any(n.endswith(".png") for n in left)
    live = scratch.temporary(out, "report.html", ".html")  # this process: running
    host = scratch._host()
    other = out / f".report.md.twofold-{'0' if host[0] != '0' else '1'}{host[1:]}-1-abcdefgh.md"
    keep = [live, other, out / ".report.md.abcdefgh.md", out / ".report.md.bak",
            out / "notes.txt", out / f".notes.txt.twofold-{host}-999999999-abcdefgh"]  # fmt: skip
    for p in keep[1:]:
        p.write_text("mine")
    msgs: list[str] = []
    s = run_eval(_cfg(model, dataset, out), msgs.append)
    assert s["dataset"]["evaluated"] > 0
    assert msgs[0] == f"removed 4 temporary file(s) a killed run left in {out}"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted(
        p.name for p in keep if p.name.startswith(".")
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_images_or_another_csv(model, dataset, tmp_path):
    csv, img = dataset
    run_eval(_cfg(model, dataset, tmp_path / "o", limit=3))
    np.save(img / "x0.npy", np.zeros((1, 3, SIZE, SIZE)))  # same name, other pixels
    with pytest.raises(EvalError, match=r"image x0\.npy has other content .* use another -o"):
        run_eval(_cfg(model, dataset, tmp_path / "o", resume=True))
    csv.write_text(csv.read_text().replace("x2.npy,0,0", "x2.npy,1,0"))
    with pytest.raises(EvalError, match="differs in: the dataset CSV"):
        run_eval(_cfg(model, dataset, tmp_path / "o", resume=True))


def test_failed_images_kept_retried_only_on_request_one_record_each(model, dataset, tmp_path):
    csv, img = dataset
    small = tmp_path / "small.csv"
    small.write_text("path,Cardiomegaly\nx0.npy,0\nx3.npy,1\nbroken.npy,1\n")
    cfg = dict(bundle=model[1], model=model[0], dataset=small, fmt="plain", images=img)
    out = tmp_path / "o"
    run_eval(EvalConfig(**cfg, out=out))
    res = out / "results.jsonl"

    def ids():
        return [json.loads(x).get("id") for x in res.read_text().splitlines()[1:]]

    assert ids() == ["x0.npy", "x3.npy", "broken.npy"]
    msgs = []
    run_eval(EvalConfig(**cfg, out=out, resume=True), msgs.append)
    assert len(ids()) == 3 and any("1 failed image(s) kept (--retry-failed" in m for m in msgs)
    np.save(img / "broken.npy", np.zeros((1, 3, SIZE, SIZE)))  # repaired: new content
    with pytest.raises(EvalError, match="broken.npy has other content.*--retry-failed"):
        run_eval(EvalConfig(**cfg, out=out, resume=True))
    msgs = []
    s = run_eval(EvalConfig(**cfg, out=out, resume=True, retry_failed=True), msgs.append)
    assert any("retrying 1 failed image(s)" in m for m in msgs)
    assert sorted(ids()) == ["broken.npy", "x0.npy", "x3.npy"]  # one record each
    assert s["dataset"]["evaluated"] == 3 and not s["dataset"]["bad_rows"]
    with res.open("a") as f:  # an older file with a duplicate record: compacted on resume
        f.write(res.read_text().splitlines()[1] + "\n")
    run_eval(EvalConfig(**cfg, out=out, resume=True))
    assert sorted(ids()) == ["broken.npy", "x0.npy", "x3.npy"]


def test_model_with_another_input_shape_is_one_clear_error(model, dataset, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 14, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Sigmoid()).eval()  # fmt: skip
    other = tmp_path / "other.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, SIZE + 2, SIZE + 2), str(other),
                          input_names=["image"], dynamo=False)  # fmt: skip
    with pytest.raises(EvalError, match=r"--model other.onnx takes input \[1, 3, 10, 10\], "
                       r"the bundle \[1, 3, 8, 8\]"):  # fmt: skip
        run_eval(_cfg((other, model[1]), dataset, tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_non_finite_input_and_secure_failures_are_recorded(model, dataset, tmp_path, monkeypatch):
    from twofold.eval import runner
    from twofold.eval.engines import SecureFailure, _probabilities

    bad = np.full((1, 3, SIZE, SIZE), np.nan)
    np.save(dataset[1] / "x4.npy", bad)  # NaN pixels: refused by the input check (issue 13)
    s = run_eval(_cfg(model, dataset, tmp_path / "o"))
    reasons = {b["id"]: b["reason"] for b in s["dataset"]["bad_rows"]}
    assert (
        reasons["x4.npy"]
        == "unreadable image: input x4.npy has non-finite values (NaN or infinity)"
    )

    class InputOutOfRange(ValueError):  # the range check's error type (DESIGN decision 2)
        pass

    load = runner._load_image

    def checked(sample, meta):
        if sample.id == "x6.npy":
            raise InputOutOfRange(f"{sample.path}: values in [-9, 9], expected [-1, 1]")
        return load(sample, meta)

    monkeypatch.setattr(runner, "_load_image", checked)
    s = run_eval(_cfg(model, dataset, tmp_path / "o2"))
    (f,) = [f for f in s["secure_failures"]["images"] if f["id"] == "x6.npy"]
    assert f["kind"] == "input out of range" and str(dataset[1]) not in f["reason"]
    assert "x6.npy" not in {b["id"] for b in s["dataset"]["bad_rows"]}
    doc = {"outputs": {"p": {"shape": [1], "values": [0.5], "valid": False,
                             "overflow_at": "%conv_3"}}}  # fmt: skip
    with pytest.raises(SecureFailure, match="overflow at %conv_3"):
        _probabilities(doc)


def test_a_dead_server_fails_fast_with_two_jobs(model, dataset, tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(EvalError, match="failed.*finished images are kept"):
        opts = {"timeout": 5.0, "insecure_plaintext": True}
        run_eval(_cfg(model, dataset, tmp_path / "d", mode="2pc", connect=f"127.0.0.1:{port}",
                      jobs=2, connect_options=opts))  # fmt: skip
    took = time.monotonic() - t0
    assert took < 25, f"a dead server cost {took:.0f} s for 14 images"  # not ~10 s per image


def test_batched_eval_equals_the_per_image_run(model, dataset, tmp_path):
    """``--batch 4`` on a bundle compiled for batch 4 (issue 17): 14 readable images in four
    secure runs (the last filled up), every image's secure output equal to the batch-1 run's,
    the bad rows reported alike; a --batch that the bundle was not compiled for is refused."""
    import onnx

    m = onnx.load(str(model[0]))  # the exported model, its batch made symbolic
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(m, str(tmp_path / "n.onnx"))
    b1, b4 = tmp_path / "b1", tmp_path / "b4"
    for b, n in ((b1, 1), (b4, 4)):
        compile_model(tmp_path / "n.onnx", b, input_shape=(n, 3, SIZE, SIZE), preprocess="none")
    one = run_eval(_cfg((model[0], b1), dataset, tmp_path / "o1"))
    four = run_eval(_cfg((model[0], b4), dataset, tmp_path / "o4", batch=4))
    assert four["dataset"]["evaluated"] == one["dataset"]["evaluated"] == 14
    assert four["dataset"]["bad_rows"] == one["dataset"]["bad_rows"]
    recs = {}
    for d in ("o1", "o4"):
        lines = (tmp_path / d / "results.jsonl").read_text().splitlines()[1:]
        recs[d] = {r["id"]: r for r in map(json.loads, lines) if "secure" in r}
    assert recs["o1"].keys() == recs["o4"].keys()
    for k, r in recs["o4"].items():
        assert r["batch"] == 4 and np.array_equal(r["secure"], recs["o1"][k]["secure"])
    with pytest.raises(EvalError, match="runs batches of 4; compile it with --input-shape 2,3"):
        run_eval(_cfg((model[0], b4), dataset, tmp_path / "o5", batch=2))


def test_report_provenance_names_what_changes_the_results(model, dataset, tmp_path, monkeypatch):
    """Two reports of the same results with another --uncertain used to have identical
    provenance; now the command, every result-changing option with its source, versions,
    UTC time, machine and the full dataset digest are in report.md, report.html and
    summary.json — without absolute paths or the --token value."""
    import platform
    import sys

    import onnxruntime
    from click.testing import CliRunner

    import twofold
    from twofold.cli import cli
    from twofold.eval.provenance import shown_argv

    out = tmp_path / "o"
    base = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(dataset[0]),
            "--images", str(dataset[1]), "-o", str(out), "--quiet"]  # fmt: skip

    def run(*extra):
        monkeypatch.setattr(sys, "argv", ["/abs/bin/twofold", *base, *extra])
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 0, r.output
        return {p: (out / p).read_text() for p in ("report.md", "report.html", "summary.json")}

    first = run("--limit", "3", "--margin", "0.02", "--note", "two words")
    again = run("--resume", "--limit", "0", "--uncertain", "ones")
    prov = json.loads(again["summary.json"])["provenance"]
    opts = {o["option"]: (o["value"], o["source"]) for o in prov["options"]}
    assert opts["--uncertain"] == ("ones", "command line")
    assert opts["--margin"] == (0.01, "default") and opts["--batch"] == (1, "the bundle's batch")
    assert opts["--label-map"] == (None, "default") and opts["--limit"] == (0, "command line")
    assert "--note 'two words'" in json.loads(first["summary.json"])["provenance"]["command"]
    old = {o["option"]: o for o in json.loads(first["summary.json"])["provenance"]["options"]}
    assert old["--uncertain"]["value"] == "zeros" and old["--margin"]["value"] == 0.02
    assert prov["versions"] == {
        "twofold": twofold.__version__, "python": platform.python_version(),
        "numpy": np.__version__, "scipy": __import__("scipy").__version__,
        "onnxruntime": onnxruntime.__version__,
    }  # fmt: skip
    assert prov["started_utc"].endswith("Z") and prov["finished_utc"] >= prov["started_utc"]
    assert prov["machine"]["cpus"] == __import__("os").cpu_count()
    assert len(prov["machine"]["load_average_start"]) == 3
    assert len(prov["machine"]["load_average_end"]) == 3
    digest = json.loads(again["summary.json"])["dataset"]["sha256"]
    assert prov["digests"]["dataset_csv_sha256"] == digest and len(digest) == 64
    assert prov["command"].startswith("twofold eval ") and "--uncertain ones" in prov["command"]
    for text in again.values():
        assert str(tmp_path) not in text and "/abs/" not in text
        assert "--uncertain" in text and digest in text and "onnxruntime" in text
    assert "| --uncertain | ones | command line |" in again["report.md"]
    assert first["report.md"] != again["report.md"]
    cwd = tmp_path / "work"
    assert shown_argv(["--token", "s3cret", "--token=x", f"{cwd}/a.csv", "--connect",
                       f"@{cwd}/v.txt", "--token", f"@{tmp_path}/t.txt", f"-o{tmp_path}/r",
                       f"-o{cwd}/r2", "-o", f"{cwd}/r3", "-h"], cwd) == [
        "--token", "***", "--token=***", "a.csv", "--connect", "@v.txt", "--token", "@…/t.txt",
        "-o…/r", "-or2", "-o", "r3", "-h",
    ]  # fmt: skip


def test_cli_report_write_failure_is_one_line_and_changes_nothing(model, dataset, tmp_path):
    from click.testing import CliRunner

    from twofold.cli import cli

    out = tmp_path / "o"
    args = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(dataset[0]),
            "--images", str(dataset[1]), "-o", str(out), "--quiet"]  # fmt: skip
    assert CliRunner().invoke(cli, [*args, "--limit", "2"]).exit_code == 0
    (out / "report.html").unlink()
    (out / "report.html").mkdir()  # the reviewer's repro: report.html cannot be replaced
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = CliRunner().invoke(cli, [*args, "--resume", "--limit", "1"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert r.output.startswith("twofold: error: cannot write report.html in ")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after.keys() - {"results.jsonl"} == before.keys() - {"results.jsonl"}
    assert all(after[k] == before[k] for k in before if k != "results.jsonl")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_unchecked_program_is_refused_unless_allowed_and_then_flagged(model, dataset, tmp_path):
    """A program that cannot flag an overflow (``--range-model calibrated``) is refused before
    any image, as ``run client`` refuses it; with ``allow_unchecked`` the report says so first
    (summary.json ``overflow_checked: false``, the warning above every claim, the option in the
    provenance), and a checked program's report has no such warning."""
    x = np.load(dataset[1] / "x0.npy")
    np.save(tmp_path / "cal.npy", x)
    b = tmp_path / "unchecked"
    compile_model(model[0], b, preprocess="none", calibrate=[tmp_path / "cal.npy"],
                  range_model="calibrated")  # fmt: skip
    with pytest.raises(EvalError, match="cannot flag an overflow.*--allow-unchecked"):
        run_eval(_cfg((model[0], b), dataset, tmp_path / "o1"))
    assert not (tmp_path / "o1").exists()  # refused before anything was written
    s = run_eval(_cfg((model[0], b), dataset, tmp_path / "o2", allow_unchecked=True))
    assert s["overflow_checked"] is False
    md = (tmp_path / "o2" / "report.md").read_text()
    assert md.index("UNCHECKED program") < md.index("## Summary")
    opts = {o["option"]: o for o in s["provenance"]["options"]}
    assert opts["--allow-unchecked"]["value"] is True
    checked = run_eval(_cfg(model, dataset, tmp_path / "o3", limit=2))
    assert checked["overflow_checked"] is True
    assert "UNCHECKED" not in (tmp_path / "o3" / "report.md").read_text()


def test_unchecked_warning_says_what_the_simulation_caught(model, dataset, tmp_path):
    """With the server bundle at hand (``--mode simulate``, or 2PC with its oracle) the
    fixed-point simulation checks every tensor against the bits the compiler assumed, so an
    image beyond the calibrated ranges of an unchecked program is a secure failure (overflow)
    in the report. Its warning may not claim that such an image shows "never as a secure
    failure" above the failures it lists; it says that the simulation caught them and that the
    program run by the hospital would not."""
    x = np.load(dataset[1] / "x0.npy")
    np.save(tmp_path / "cal.npy", x)
    b = tmp_path / "unchecked"
    compile_model(model[0], b, preprocess="none", calibrate=[tmp_path / "cal.npy"],
                  range_model="calibrated")  # fmt: skip
    img = tmp_path / "far"
    img.mkdir()
    rng = np.random.default_rng(5)
    rows = ["path,Cardiomegaly"]
    for i in range(4):  # odd: ±3 everywhere, beyond the one calibration image's ranges
        far = rng.choice([-3.0, 3.0], x.shape) if i % 2 else rng.uniform(-1, 1, x.shape)
        np.save(img / f"x{i}.npy", far)
        rows.append(f"x{i}.npy,{i % 2}")
    (tmp_path / "far.csv").write_text("\n".join(rows) + "\n")
    cfg = EvalConfig(bundle=b, model=model[0], dataset=tmp_path / "far.csv", fmt="plain",
                     images=img, out=tmp_path / "o", allow_unchecked=True)  # fmt: skip
    s = run_eval(cfg)
    assert s["secure_failures"]["reasons"] == {"overflow": 2}
    assert s["server_simulation"] is True
    md = (tmp_path / "o" / "report.md").read_text()
    warning = md[md.index("UNCHECKED program") : md.index("\n", md.index("UNCHECKED program"))]
    assert "never as secure failures" not in warning
    assert "fixed-point simulation" in warning and "would not" in warning
