"""Dataset-scale ``twofold eval`` in 2PC: ``--engine ray`` (local instance) vs ``--engine local``.

    .venv/bin/python benchmarks/eval_scale.py [--json FILE] [--quick]

A zoo model (default ``mobilenet``) at 32² is compiled (declared input range [-3, 3],
calibrated on the images), one ``twofold run server --max-sessions 4`` serves it, and
``twofold eval --mode 2pc`` runs 16 random images with 1, 2 and 4 concurrent sessions: with
``--engine ray --jobs K --per-endpoint K`` (a fresh local Ray instance of K CPUs each time) and
with ``--engine local --jobs K``. Each run is a ``twofold eval`` process, timed whole (wall) and
by the rate its report measured once the engine was up (``projection.measured.run``).

Reported per run: images/min (run), wall s of the whole command; for Ray, the start-up it adds
(wall − run − the same for local) and the overhead per task = (run time Ray − run time local) /
images at the same K; and separately the round trip of an empty Ray task with the same
arguments (the image bytes and the shipped bundle reference), which is Ray's own share.
``--quick``: 4 images at 16² with a smaller net, K in 1, 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "twofold.cli", *args]


def prepare(tmp: Path, name: str, size: int, n: int) -> tuple[Path, Path, Path, Path, str]:
    """ONNX model, compiled bundle, dataset CSV, image directory and output label names."""
    import zoo

    from twofold.toolchain import compile_model

    onnx_path = zoo.export(name, tmp / f"{name}.onnx", size)
    img = tmp / "img"
    img.mkdir()
    rng = np.random.default_rng(3)
    rows = ["path,L0"]
    for i in range(n):
        np.save(img / f"x{i}.npy", rng.normal(0, 1, (1, 3, size, size)).clip(-3, 3))
        rows.append(f"x{i}.npy,{i % 2}")
    (tmp / "d.csv").write_text("\n".join(rows) + "\n")
    bundle = tmp / "bundle"
    g, _ = compile_model(
        onnx_path, bundle, preprocess="none", input_range=(-3.0, 3.0),
        calibrate=sorted(img.glob("*.npy")),
    )  # fmt: skip
    n_out = int(np.prod(g[g.outputs[0]].type.shape))
    return onnx_path, bundle, tmp / "d.csv", img, ",".join(f"L{i}" for i in range(n_out))


def start_server(bundle: Path, sessions: int) -> tuple[subprocess.Popen, list[str]]:
    """The vendor's server (TLS, its self-signed certificate) and eval's options to reach it."""
    srv = subprocess.Popen(
        _cli("run", "server", str(bundle), "--listen", "127.0.0.1:0", "--quiet",
             "--max-sessions", str(sessions)),
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    line = srv.stdout.readline()
    if " on 127.0.0.1:" not in line:
        raise SystemExit(f"server did not start: {line!r}")
    # keep reading: a server blocked on a full stdout pipe would stall its sessions
    threading.Thread(target=srv.stdout.read, daemon=True).start()
    addr = "127.0.0.1:" + line.split(" on 127.0.0.1:")[1].split(",")[0].strip()
    if "fingerprint " in line:  # TLS by default: pin the server's certificate
        return srv, [
            "--connect",
            addr,
            "--server-fingerprint",
            line.split("fingerprint ")[1].split()[0],
        ]
    return srv, ["--connect", addr]


def run_eval(files: tuple, out: Path, conn: list[str], engine: str, k: int) -> dict:
    onnx_path, bundle, csv, img, labels = files
    cmd = _cli("eval", str(bundle), "--model", str(onnx_path), "--dataset", str(csv),
               "--images", str(img), "-o", str(out), "--mode", "2pc", *conn,
               "--labels", labels, "--engine", engine, "--jobs", str(k),
               "--per-endpoint", str(k), "--quiet")  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"eval --engine {engine} --jobs {k} failed:\n{r.stderr.strip()}")
    s = json.loads((out / "summary.json").read_text())
    run = s["projection"]["measured"]["run"]
    exact = s["overall"]["twopc_vs_simulate"]
    return {
        "engine": engine,
        "sessions": k,
        "images": run["images"],
        "run_s": run["elapsed_s"],
        "images_per_min": run["images_per_min"],
        "wall_s": wall,
        "bit_exact": exact["bit_exact_images"] == exact["images"] == run["images"],
    }


def empty_task_ms(files: tuple, repeat: int) -> float:
    """Round trip of a Ray task that does nothing with the arguments an eval task gets."""
    import ray

    from twofold.eval.ray_engine import _files

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        box = [ray.put({"model": _files(files[0]), "bundle": _files(files[1])})]
        data = next(files[3].iterdir()).read_bytes()

        @ray.remote(num_cpus=1, max_retries=0)
        def nop(key: str, box: list, data: bytes, ep: str) -> tuple[str, int]:
            return "ok", len(data)

        ray.get(nop.remote("k", box, data, "h:1"))  # warm the worker
        t0 = time.perf_counter()
        for _ in range(repeat):
            ray.get(nop.remote("k", box, data, "h:1"))
        return (time.perf_counter() - t0) / repeat * 1e3
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--quick", action="store_true", help="4 images at 16², K in 1, 2")
    ap.add_argument("--model", default=None, help="zoo model (default mobilenet; quick: vgg)")
    a = ap.parse_args()
    n, size, ks = (4, 16, (1, 2)) if a.quick else (16, 32, (1, 2, 4))
    name = a.model or ("vgg" if a.quick else "mobilenet")
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        files = prepare(tmp, name, size, n)
        nop_ms = empty_task_ms(files, 20 if a.quick else 100)
        srv, conn = start_server(files[1], max(ks))
        rows = []
        try:
            for k in ks:
                for engine in ("local", "ray"):
                    rows.append(run_eval(files, tmp / f"{engine}-{k}", conn, engine, k))
                    r = rows[-1]
                    print(f"  {engine} K={k}: {r['images_per_min']:.1f} img/min, run "
                          f"{r['run_s']:.1f} s, wall {r['wall_s']:.1f} s, load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        finally:
            srv.terminate()
            srv.wait(timeout=60)
    by = {(r["engine"], r["sessions"]): r for r in rows}
    for r in rows:
        if r["engine"] == "ray":
            loc = by[("local", r["sessions"])]
            r["overhead_per_task_s"] = (r["run_s"] - loc["run_s"]) / r["images"]
            r["startup_s"] = (r["wall_s"] - r["run_s"]) - (loc["wall_s"] - loc["run_s"])
    doc = {
        "model": name,
        "size": size,
        "images": n,
        "cpus": os.cpu_count(),
        "empty_ray_task_ms": nop_ms,
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "runs": rows,
    }
    print(f"\n{name} {size}², {n} images, one server; load {load0[0]:.1f} → "
          f"{doc['loadavg_end'][0]:.1f} (1-min avg)")  # fmt: skip
    print(
        "| engine | K | img/min | run s | wall s | Ray start-up s | Ray overhead/task s | exact |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = (
            f"{r['startup_s']:.1f} | {r['overhead_per_task_s']:+.2f}"
            if r["engine"] == "ray"
            else "– | –"
        )
        print(f"| {r['engine']} | {r['sessions']} | {r['images_per_min']:.1f} | {r['run_s']:.1f} "
              f"| {r['wall_s']:.1f} | {extra} | {'yes' if r['bit_exact'] else 'NO'} |")  # fmt: skip
    print(f"\nempty Ray task round trip (same arguments): {nop_ms:.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
