"""``twofold eval --engine ray`` on a local Ray instance (num_cpus=2) in real 2PC against two
``twofold run server`` processes: a SIGKILLed driver resumes to the records of ``--engine
local`` (each image once), and a vendor endpoint that dies mid-run loses nothing.

One Ray instance for the module (no dashboard), shut down at the end; the CLI runs in a
subprocess joining it with ``--ray-address``, so killing the driver kills only that job.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from test_eval_run import SIZE, model  # noqa: F401 - the tiny 2PC model fixture

from twofold.eval.runner import EvalConfig, run_eval

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
SAME = ("id", "line", "plain", "secure", "simulate", "rounds")  # not timings, not bytes


@pytest.fixture(scope="module")
def cluster():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)  # Ray's workers inherit it: they import this tree
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old


def _plaintext_flag() -> tuple[list[str], dict]:
    """Plaintext loopback on either side of the TLS-by-default change (DESIGN decision 3)."""
    helptext = subprocess.run(
        [sys.executable, "-m", "twofold.cli", "run", "server", "--help"],
        capture_output=True, text=True, env=ENV, check=True,
    ).stdout  # fmt: skip
    if "--insecure-plaintext" in helptext:
        return ["--insecure-plaintext"], {"insecure_plaintext": True}
    return [], {}


def _server(bundle: Path, flags: list[str]) -> tuple[subprocess.Popen, str, str | None]:
    """A vendor endpoint in its own process group (so a kill takes its sessions too); its
    address and, with TLS, its certificate's fingerprint."""
    srv = subprocess.Popen(
        [sys.executable, "-m", "twofold.cli", "run", "server", str(bundle), "--listen",
         "127.0.0.1:0", "--quiet", "--max-sessions", "2", *flags],
        stdout=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
    )  # fmt: skip
    line = srv.stdout.readline()
    # keep reading: a server blocked on a full stdout pipe would stall its sessions
    threading.Thread(target=srv.stdout.read, daemon=True).start()
    fp = line.split("fingerprint ")[1].split()[0] if "fingerprint " in line else None
    return srv, "127.0.0.1:" + line.split(" on 127.0.0.1:")[1].split(",")[0].strip(), fp


def _kill(srv: subprocess.Popen) -> None:
    if srv.poll() is None:
        os.killpg(srv.pid, signal.SIGKILL)
    srv.wait(timeout=30)


@pytest.fixture()
def servers(model):  # noqa: F811
    flags, opts = _plaintext_flag()
    procs = [_server(model[1], flags)[:2] for _ in range(2)]
    try:
        yield procs, opts
    finally:
        for p, _ in procs:
            _kill(p)


@pytest.fixture()
def tls_servers(model):  # noqa: F811
    """Two endpoints with TLS (the default) and their self-signed certificates."""
    procs = [_server(model[1], []) for _ in range(2)]
    try:
        yield procs
    finally:
        for p, _, _ in procs:
            _kill(p)


def _dataset(tmp_path: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    img = tmp_path / "img"
    img.mkdir()
    rows = ["path,Cardiomegaly"]
    for i in range(n):
        np.save(img / f"x{i}.npy", rng.uniform(-1, 1, (1, 3, SIZE, SIZE)))
        rows.append(f"x{i}.npy,{i % 2}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "d.csv", img


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()[1:]]


def _cfg(model, ds, out, **kw):  # noqa: F811
    return EvalConfig(bundle=model[1], model=model[0], dataset=ds[0], fmt="plain", images=ds[1],
                      out=out, mode="2pc", **kw)  # fmt: skip


def test_ray_driver_killed_resumes_to_the_local_records(model, cluster, servers, tmp_path):  # noqa: F811
    (procs, opts), n = servers, 8
    eps = [a for _, a in procs]
    ds = _dataset(tmp_path, n)
    out = tmp_path / "ray"
    args = [sys.executable, "-m", "twofold.cli", "eval", str(model[1]), "--model", str(model[0]),
            "--dataset", str(ds[0]), "--images", str(ds[1]), "-o", str(out), "--mode", "2pc",
            "--connect", eps[0], "--connect", eps[1], "--per-endpoint", "1",
            "--engine", "ray", "--ray-address", cluster, "--quiet"]  # fmt: skip
    args += ["--insecure-plaintext"] if opts else []
    proc = subprocess.Popen(args, env=ENV)
    res = out / "results.jsonl"
    while proc.poll() is None:
        if res.exists() and res.read_bytes().count(b"\n") >= 3:  # header + 2 records
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    killed = _records(out)
    assert 2 <= len(killed) < n and not (out / "summary.json").exists()

    msgs: list[str] = []
    cfg = _cfg(model, ds, out, connect=eps, engine="ray", per_endpoint=1, resume=True,
               connect_options=opts)  # fmt: skip
    s = run_eval(cfg, msgs.append)
    assert any(f"{len(killed)} done, {n - len(killed)} to run" in m for m in msgs), msgs
    assert any("img/min, ETA" in m for m in msgs) and any(m.startswith("projection:") for m in msgs)
    assert s["dataset"]["evaluated"] == n and s["overall"]["twopc_vs_simulate"] == {
        "images": n, "bit_exact_images": n, "max_abs_diff": 0.0,
    }  # fmt: skip
    recs = _records(out)
    assert sorted(r["id"] for r in recs) == sorted(f"x{i}.npy" for i in range(n))  # each once
    assert recs[: len(killed)] == killed  # nothing written before the kill was touched
    assert {r["endpoint"] for r in recs} == set(eps)

    ref = run_eval(_cfg(model, ds, tmp_path / "local", connect=eps, jobs=2, connect_options=opts))
    local = {r["id"]: {k: r.get(k) for k in SAME} for r in _records(tmp_path / "local")}
    mine = {r["id"]: {k: r.get(k) for k in SAME} for r in recs}
    diff = {(i, k) for i in local for k in SAME if mine[i][k] != local[i][k]}
    assert mine == local, sorted(diff)
    assert {k: s[k] for k in ("labels", "overall")} == {k: ref[k] for k in ("labels", "overall")}
    proj = s["projection"]
    assert proj["estimate"]["bytes_per_image"] > 0
    assert set(proj["measured"]["per_endpoint"]) == set(eps)
    assert "Cost projection (execution)" in (out / "report.md").read_text()


def test_an_endpoint_dies_mid_run_nothing_is_lost(model, cluster, tls_servers, tmp_path):  # noqa: F811
    """Over TLS, each server pinned by its fingerprint in the endpoint file (@FILE)."""
    n = 8
    (victim, dead, fp_dead), (_, alive, fp_alive) = tls_servers
    assert fp_dead and fp_alive
    eps = tmp_path / "vendors.txt"
    eps.write_text(f"# the vendor's two machines\n{dead} {fp_dead}\n{alive}  {fp_alive}\n")
    ds = _dataset(tmp_path, n)
    msgs: list[str] = []

    def progress(m: str) -> None:
        msgs.append(m)
        if f"@ {dead}" in m and victim.poll() is None:  # its first image is in: kill it now
            _kill(victim)

    cfg = _cfg(model, ds, tmp_path / "o", connect=f"@{eps}", engine="ray", per_endpoint=1)
    s = run_eval(cfg, progress)
    assert victim.poll() is not None
    assert s["dataset"]["evaluated"] == n and s["dataset"]["pending"] == 0
    assert s["overall"]["twopc_vs_simulate"]["bit_exact_images"] == n
    recs = _records(tmp_path / "o")
    assert sorted(r["id"] for r in recs) == sorted(f"x{i}.npy" for i in range(n))  # once each
    assert any(m.startswith("retrying") and dead in m for m in msgs), msgs
    by = [r["endpoint"] for r in recs]
    assert by.count(dead) >= 1 and by.count(alive) >= n - by.count(dead) > 0


def test_endpoint_options_fail_in_one_line(model, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from twofold.cli import cli

    ds = _dataset(tmp_path, 1)
    base = ["eval", str(model[1]), "--model", str(model[0]), "--dataset", str(ds[0]),
            "--images", str(ds[1]), "-o", str(tmp_path / "o"), "--mode", "2pc",
            "--quiet"]  # fmt: skip
    for extra, msg in (
        (["--connect", "127.0.0.1:1,nope"], "--connect: expected HOST:PORT, got 'nope'"),
        (["--connect", "@" + str(tmp_path / "none.txt")], "cannot read the endpoint file"),
        (["--connect", "h:1", "--per-endpoint", "0"], "--per-endpoint must be at least 1"),
        (["--connect", "h:1", "--connect", "h:1"], "--connect lists h:1 more than once"),
        (["--connect", "h:1", "--retries", "-1"], "--retries must be at least 0"),
    ):
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o" / "results.jsonl").exists()  # nothing partial written


def test_simulate_mode_on_ray_equals_local(model, cluster, tmp_path):  # noqa: F811
    ds = _dataset(tmp_path, 3)
    kw = dict(bundle=model[1], model=model[0], dataset=ds[0], fmt="plain", images=ds[1])
    a = run_eval(EvalConfig(out=tmp_path / "ray", engine="ray", **kw))
    b = run_eval(EvalConfig(out=tmp_path / "local", **kw))
    assert a["dataset"]["evaluated"] == 3 and a["cost"]["jobs"] == 2  # the cluster's CPUs
    same = ("line", "plain", "secure")
    ray_recs, local_recs = (
        {r["id"]: {k: r[k] for k in same} for r in _records(tmp_path / d)} for d in ("ray", "local")
    )
    assert ray_recs == local_recs and len(ray_recs) == 3
    assert {k: a[k] for k in ("labels", "overall")} == {k: b[k] for k in ("labels", "overall")}
