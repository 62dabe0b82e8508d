"""End-to-end benchmark: DenseNet-121 (CheXNet head) in 2PC between two OS processes.

For each input size: export, ``twofold compile``, ``twofold run server --once`` and
``twofold run client`` on loopback TCP with the real radiograph (pydicom-data RG1_UNCR.dcm),
then ``twofold simulate`` on the same input: the secure logits must equal it bit for bit.
Reports wall time, bytes each way, rounds, peak RSS per party and the per-layer-kind breakdown
(linear / ReLU / truncation / pooling), to compare with DESIGN.md §7 (SCI_HE ≈ 1,500 s and
≈ 35 GiB; CrypTen with a dealer 65 s and 10.1 GiB).

    python benchmarks/e2e.py [--json FILE] [--quick] [--sizes 224 128] [--linear auto]
                             [--transport tls|plaintext|both]
                             [--models densenet121 resnet50 mobilenetv2 efficientnet_b0]
                             [--batch N]   (N images as one program; figures are per batch)

``--quick`` runs 32² and 64² (same keys). Each size runs twice by default, over TLS (the
pinned self-signed certificate, as ``twofold run`` does by default) and ``--insecure-plaintext``,
and a second table gives the time ratio and the TCP bytes TLS adds (kernel TCP_INFO counts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWOFOLD = [sys.executable, "-m", "twofold.cli"]
KINDS = ("linear", "relu", "truncation", "pooling", "local", "io")


def _demo():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("chexnet_demo", ROOT / "examples/chexnet/demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(res: subprocess.CompletedProcess, what: str) -> None:
    if res.returncode != 0:
        sys.exit(f"e2e: {what} failed: {res.stderr.strip()[-2000:]}")


# --- issue 17 (--models): vendors' CNNs from tests/cnn_zoo.py beside DenseNet-121 -------------
MODELS = ("densenet121", "resnet50", "mobilenetv2", "efficientnet_b0")


def _export(model: str, path: Path, size: int) -> None:
    if model == "densenet121":
        _demo().export(path, size)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    import cnn_zoo

    cnn_zoo.export(model, path, size)


def _batch_input(d: Path, image: str, size: int, batch: int) -> str:
    """``batch`` images as one .npy [N, 3, S, S]: the radiograph, then mirrored and shifted
    copies (--batch: one program for the whole batch)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from twofold.preprocess import load_image

    x = np.asarray(load_image(image, "chexnet", size), np.float64).reshape(3, size, size)
    views = [x, x[:, :, ::-1]]
    imgs = [np.roll(views[i % 2], 3 * (i // 2), axis=2) for i in range(batch)]
    path = d / f"batch{batch}.npy"
    np.save(path, np.stack(imgs))
    return str(path)


# --- end issue 17 -----------------------------------------------------------------------------


def bench_size(
    size: int,
    work: Path,
    linear: str,
    image: str,
    transports: list[str],
    model: str = "densenet121",
    batch: int = 1,
) -> dict:
    d = work / (f"{model}_{size}" + (f"_b{batch}" if batch > 1 else ""))
    d.mkdir(parents=True, exist_ok=True)
    onnx_path = d / f"{model}.onnx"
    if not onnx_path.exists():
        _export(model, onnx_path, size)
    bundle = d / "bundle"
    cal = [a for f in _demo().calibration_images(d) for a in ("--calibrate", str(f))]
    shape = []
    if batch > 1:  # issue 17: the whole batch is one program
        shape = ["--input-shape", f"{batch},3,{size},{size}"]
        image = _batch_input(d, image, size, batch)
    t = time.perf_counter()
    _check(
        subprocess.run([*TWOFOLD, "compile", str(onnx_path), "-o", str(bundle), *cal, *shape],
                       capture_output=True, text=True),
        "compile",
    )  # fmt: skip
    compile_s = time.perf_counter() - t
    sim_path = d / "simulate.json"
    _check(
        subprocess.run([*TWOFOLD, "simulate", str(bundle), "--input", image, "-o", str(sim_path)],
                       capture_output=True, text=True),
        "simulate",
    )  # fmt: skip
    sim = json.loads(sim_path.read_text())
    runs = {}
    for transport in transports:
        r = run_2pc(bundle, d, linear, image, transport, size)
        r["exact"] = r.pop("logits") == sim["logits"]
        runs[transport] = r | {"compile_s": round(compile_s, 3), "linear": linear}
    return runs


def run_2pc(bundle: Path, d: Path, linear: str, image: str, transport: str, size: int) -> dict:
    """One ``run server --once`` / ``run client`` pair; TLS with the pinned self-signed
    certificate, or ``--insecure-plaintext`` on both sides."""
    plain = ["--insecure-plaintext"] if transport == "plaintext" else []
    server = subprocess.Popen(
        [*TWOFOLD, "run", "server", str(bundle), "--listen", "127.0.0.1:0", "--once",
         "--linear", linear, "--quiet", *plain],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = server.stdout.readline()
    if "serving" not in line:
        sys.exit(f"e2e: server did not start: {server.stderr.read()[-2000:]}")
    sys.path.insert(0, str(ROOT))
    from twofold.twoparty import parse_banner

    addr, fp = parse_banner(line)
    pin = plain or ["--server-fingerprint", fp]
    out = d / f"out-{transport}.json"
    t = time.perf_counter()
    cli = subprocess.run(
        [*TWOFOLD, "run", "client", str(bundle), "--connect", addr, "--input", image,
         "-o", str(out), "--quiet", *pin],
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t
    _, serr = server.communicate(timeout=600)
    _check(cli, f"2PC run at {size}² over {transport} (server: {serr.strip()[-500:]})")
    doc = json.loads(out.read_text())
    c, s = doc["cost"], doc["cost"]["server"]
    wire = c.get("wire", {})
    return {
        "s": round(wall, 3),
        "bytes_client_to_server": c["bytes_sent"],
        "bytes_server_to_client": c["bytes_recv"],
        "wire_bytes": wire.get("bytes_sent", 0) + wire.get("bytes_recv", 0) or None,
        "rounds": c["rounds"],
        "peak_rss_mb_server": s["peak_rss_mb"],
        "peak_rss_mb_client": c["peak_rss_mb"],
        "logits": doc["logits"],
        "setup": c["setup"],
        "by_kind": {
            k: {
                "s": c["by_kind"][k]["s"],
                "bytes": c["by_kind"][k]["bytes_sent"] + c["by_kind"][k]["bytes_recv"],
                "rounds": c["by_kind"][k]["rounds"],
            }
            for k in KINDS
            if k in c["by_kind"]
        },
    }


def tls_table(results: dict) -> str:
    """TLS against plaintext for each size run both ways: time ratio and TCP bytes added."""
    rows = [
        "| size | plaintext s | TLS s | TLS/plain time | plaintext wire MiB | TLS wire MiB "
        "| TLS adds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, r in results.items():
        if not k.endswith("/tls") or k[:-4] + "/plaintext" not in results:
            continue
        p = results[k[:-4] + "/plaintext"]
        wt, wp = r["wire_bytes"] or 0, p["wire_bytes"] or 0
        added = f"{(wt - wp) / wp:+.2%}" if wp else "n/a"
        rows.append(
            f"| {k[:-4]} | {p['s']:.1f} | {r['s']:.1f} | {r['s'] / p['s']:.3f} | "
            f"{wp / 2**20:.1f} | {wt / 2**20:.1f} | {added} |"
        )
    return "\n".join(rows)


def table(results: dict) -> str:
    rows = [
        "| run | time s | client→server GiB | server→client GiB | rounds | RSS server MiB "
        "| RSS client MiB | exact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for k, r in results.items():
        rows.append(
            f"| {k} | {r['s']:.1f} | {r['bytes_client_to_server'] / 2**30:.3f} | "
            f"{r['bytes_server_to_client'] / 2**30:.3f} | {r['rounds']:,} | "
            f"{r['peak_rss_mb_server']:.0f} | {r['peak_rss_mb_client']:.0f} | {r['exact']} |"
        )
    rows += ["", "| run | kind | time s | GiB | rounds |", "| --- | --- | ---: | ---: | ---: |"]
    for k, r in results.items():
        for kind, v in r["by_kind"].items():
            rows.append(
                f"| {k} | {kind} | {v['s']:.1f} | {v['bytes'] / 2**30:.3f} | {v['rounds']:,} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DenseNet-121 2PC end to end")
    ap.add_argument("--json", dest="json_path", help="write the figures as JSON here")
    ap.add_argument("--quick", action="store_true", help="32² and 64² instead of 224² and 128²")
    ap.add_argument("--sizes", type=int, nargs="+", help="input sizes (overrides --quick)")
    ap.add_argument("--linear", choices=["he", "ot", "auto"], default="auto")
    ap.add_argument(
        "--transport",
        choices=["tls", "plaintext", "both"],
        default="both",
        help="TLS (the default of twofold run), plaintext, or both to compare",
    )
    ap.add_argument("--workdir", default=str(ROOT / "build" / "bench"))
    ap.add_argument("--models", nargs="+", choices=MODELS, default=["densenet121"])
    ap.add_argument("--batch", type=int, default=1, help="images per program (issue 17)")
    args = ap.parse_args(argv)
    import pydicom.data

    image = pydicom.data.get_testdata_file("RG1_UNCR.dcm")
    sizes = args.sizes or ([32, 64] if args.quick else [224, 128])
    results = {}
    for model, size in ((m, z) for m in args.models for z in sizes):
        print(f"{model} at {size}x{size} ...", file=sys.stderr, flush=True)
        transports = ["tls", "plaintext"] if args.transport == "both" else [args.transport]
        runs = bench_size(
            size, Path(args.workdir), args.linear, image, transports, model, args.batch
        )
        for transport, r in runs.items():
            key = f"{model}_{size}" + (f"_b{args.batch}" if args.batch > 1 else "")
            results[f"{key}/{transport}"] = r | {"load_avg": os.getloadavg(), "batch": args.batch}
            print(json.dumps(r), file=sys.stderr, flush=True)
    print(table(results))
    print()
    print(tls_table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
