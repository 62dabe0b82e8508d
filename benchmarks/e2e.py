"""End-to-end benchmark: DenseNet-121 (CheXNet head) in 2PC between two OS processes.

For each input size: export, ``twofold compile``, ``twofold run server --once`` and
``twofold run client`` on loopback TCP with the real radiograph (pydicom-data RG1_UNCR.dcm),
then ``twofold simulate`` on the same input: the secure logits must equal it bit for bit.
Reports wall time, bytes each way, rounds, peak RSS per party and the per-layer-kind breakdown
(linear / ReLU / truncation / pooling), to compare with DESIGN.md §7 (SCI_HE ≈ 1,500 s and
≈ 35 GiB; CrypTen with a dealer 65 s and 10.1 GiB), for each OT source (``--ot iknp silent``,
all in the same run), and beside the loopback time a WAN projection (:func:`project`) for
1 Gbit/s with 10 ms round trips and 100 Mbit/s with 40 ms. ``--shaped SIZE`` checks the
100 Mbit/s projection once against a real run through benchmarks/_relay.py (rate and delay per
direction on loopback; tc/netem is not available here) and reports measured / projected.

    python benchmarks/e2e.py [--json FILE] [--quick] [--sizes 224 128] [--linear auto]
                             [--transport tls|plaintext|both] [--ot iknp silent]
                             [--unfused-too] [--shaped 32]
                             [--models densenet121 resnet50 mobilenetv2 efficientnet_b0]
                             [--batch N]   (N images as one program; figures are per batch)
                             [--disable-pass NAME] [--pass-off-too bn_forward]

``--quick`` runs one small size per model (DenseNet-121 32², the zoo CNNs 16²) over TLS only,
under a minute of CPU per model on a quiet machine; keys are ``MODEL_SIZE_OT`` (``_nofuse`` for
``--unfused-too``, ``_no-PASS`` for a bundle compiled with ``--disable-pass PASS``, which
``--pass-off-too PASS`` adds beside the default one, to compare a pass on and off in one run)
``/TRANSPORT``, and ``shaped``. Each size runs over TLS (the pinned
self-signed certificate, as ``twofold run`` does by default) and ``--insecure-plaintext``
by default (``--transport both``), and a second table gives the time ratio and the TCP bytes
TLS adds (kernel TCP_INFO counts).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_relay.py
TWOFOLD = [sys.executable, "-m", "twofold.cli"]
KINDS = ("linear", "relu", "check", "math", "truncation", "pooling", "local", "io")


def _demo():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("chexnet_demo", ROOT / "examples/chexnet/demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(res: subprocess.CompletedProcess, what: str) -> None:
    if res.returncode != 0:
        sys.exit(f"e2e: {what} failed: {res.stderr.strip()[-2000:]}")


#: WAN links of the projection: (name, bits per second, round-trip time in seconds).
LINKS = (("1 Gbit/s, 10 ms", 1e9, 0.010), ("100 Mbit/s, 40 ms", 100e6, 0.040))


def project(r: dict, rate_bps: float, rtt_s: float) -> float:
    """Seconds the run would take on a link of ``rate_bps`` and ``rtt_s``: the loopback time
    (compute, plus the loopback transfers it already paid), every byte of both directions at
    the link rate (the protocol's flights alternate, so the directions rarely overlap), and one
    round trip per round the client counted."""
    bytes_ = r["bytes_client_to_server"] + r["bytes_server_to_client"]
    return r["s"] + bytes_ * 8 / rate_bps + r["rounds"] * rtt_s


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


def quick_size(model: str) -> int:
    """``--quick``'s input side: the zoo CNNs at 16² (EfficientNet-B0's 1,000 lookups per
    pixel make 32² minutes), DenseNet-121 at 32²."""
    return 32 if model == "densenet121" else 16


def estimate(bundle: Path) -> int:
    """The compile report's communication estimate (bytes, both ways; DESIGN.md §7's IKNP
    per-element anchors, so silent-OT runs come in below it)."""
    return int(json.loads((bundle / "server" / "report.json").read_text())["totals"]["comm_bytes"])


# --- end issue 17 -----------------------------------------------------------------------------


def compile_size(
    size: int,
    work: Path,
    image: str,
    model: str = "densenet121",
    reuse: bool = False,
    batch: int = 1,
    scale: int = 11,
    disabled: tuple[str, ...] = (),
) -> tuple[Path, float]:
    """Export, compile and simulate once; the bundle and the compile time (``reuse``: keep a
    bundle and simulate.json a previous run left in the work directory; compile time 0).
    ``batch`` > 1 (issue 17): the program takes N images, ``bundle/../batchN.npy``.
    ``disabled``: compiler passes to skip (the bundle goes to ``bundle_no-PASS``)."""
    d = work / (f"{model}_{size}" + (f"_b{batch}" if batch > 1 else ""))
    d.mkdir(parents=True, exist_ok=True)
    onnx_path = d / f"{model}.onnx"
    if not onnx_path.exists():
        _export(model, onnx_path, size)
    tag = "".join(f"_no-{p}" for p in disabled)
    if tag:  # its own directory: run_once reads the simulate.json beside the bundle
        d = d / tag.lstrip("_")
        d.mkdir(exist_ok=True)
    bundle = d / "bundle"
    if reuse and (d / "simulate.json").exists() and (bundle / "server").is_dir():
        return bundle, 0.0
    cal = [a for f in _demo().calibration_images(d) for a in ("--calibrate", str(f))]
    shape = []
    if batch > 1:  # issue 17: the whole batch is one program
        shape = ["--input-shape", f"{batch},3,{size},{size}"]
        image = _batch_input(d, image, size, batch)
    t = time.perf_counter()
    _check(
        subprocess.run([*TWOFOLD, "compile", str(onnx_path), "-o", str(bundle), *cal, *shape,
                        "--scale", str(scale),
                        *(a for p in disabled for a in ("--disable-pass", p))],
                       capture_output=True, text=True),
        "compile",
    )  # fmt: skip
    compile_s = time.perf_counter() - t
    _check(
        subprocess.run([*TWOFOLD, "simulate", str(bundle), "--input", image,
                        "-o", str(d / "simulate.json")], capture_output=True, text=True),
        "simulate",
    )  # fmt: skip
    return bundle, compile_s


def run_once(
    bundle: Path, linear: str, image: str, *, ot: str = "iknp", fuse: bool = True,
    transport: str = "tls", link: tuple[float, float] | None = None,
    bound: tuple[float, int] | None = None, session_timeout: float | None = None,
) -> dict:  # fmt: skip
    """One ``run server --once`` / ``run client`` pair (TLS with the pinned self-signed
    certificate, or ``--insecure-plaintext`` on both sides) and its check against simulate.
    ``link``: (bits per second, round trip s) of a shaped run through benchmarks/_relay.py,
    with ``bound`` = (max seconds, max bytes) for the relay."""
    tag = f"{ot}{'' if fuse else '_nofuse'}{'_shaped' if link else ''}-{transport}"
    plain = ["--insecure-plaintext"] if transport == "plaintext" else []
    # both sides' whole-run deadlines (a loaded machine's 224² runs)
    deadline = ["--session-timeout", str(session_timeout)] if session_timeout else []
    server = subprocess.Popen(
        [*TWOFOLD, "run", "server", str(bundle), "--listen", "127.0.0.1:0", "--once",
         "--linear", linear, "--ot", ot, "--quiet", *plain, *deadline,
         *([] if fuse else ["--no-fuse"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = server.stdout.readline()
    if "serving" not in line:
        sys.exit(f"e2e: server did not start: {server.stderr.read()[-2000:]}")
    sys.path.insert(0, str(ROOT))
    from twofold.twoparty import parse_banner

    addr, fp = parse_banner(line)
    pin = plain or ["--server-fingerprint", fp]
    relay = None
    if link is not None:
        from _relay import Relay

        max_s, max_bytes = bound or (1800.0, 64 << 30)
        port = int(addr.rpartition(":")[2])
        relay = Relay(port, link[0], link[1] / 2, max_seconds=max_s, max_bytes=max_bytes)
        addr = f"127.0.0.1:{relay.port}"
    out = bundle.parent / f"out_{tag}.json"
    t = time.perf_counter()
    try:
        cli = subprocess.run(
            # --allow-unchecked: EfficientNet has no ReLU to check; each run is compared with
            # simulate below, which does check for overflow
            [*TWOFOLD, "run", "client", str(bundle), "--connect", addr, "--input", image,
             "-o", str(out), "--quiet", "--allow-unchecked", *pin, *deadline],
            capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - t
        _, serr = server.communicate(timeout=600)
    finally:
        if relay is not None:
            relay.close()
    _check(cli, f"2PC run {tag} (server: {serr.strip()[-500:]})")
    doc = json.loads(out.read_text())
    sim = json.loads((bundle.parent / "simulate.json").read_text())
    c, s = doc["cost"], doc["cost"]["server"]
    wire = c.get("wire", {})
    r = {
        "s": round(wall, 3),
        "bytes_client_to_server": c["bytes_sent"],
        "bytes_server_to_client": c["bytes_recv"],
        "wire_bytes": wire.get("bytes_sent", 0) + wire.get("bytes_recv", 0) or None,
        "rounds": c["rounds"],
        "peak_rss_mb_server": s["peak_rss_mb"],
        "peak_rss_mb_client": c["peak_rss_mb"],
        "exact": doc["logits"] == sim["logits"],
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
        "estimated_bytes": estimate(bundle),
        "ell": json.loads((bundle / "server" / "report.json").read_text())["ell"],
        "linear": linear,
        "ot": ot,
        "fuse": fuse,
        "transport": transport,
        "load_avg": list(os.getloadavg()),
    }
    if link is None:
        r["wan_projection_s"] = {name: round(project(r, bps, rtt), 1) for name, bps, rtt in LINKS}
    else:
        r["link"] = {"rate_bps": link[0], "rtt_s": link[1], "relay_stopped_by": relay.stopped_by}
    return r


def tls_table(results: dict) -> str:
    """TLS against plaintext for each size run both ways: time ratio and TCP bytes added."""
    rows = [
        "| run | plaintext s | TLS s | TLS/plain time | plaintext wire MiB | TLS wire MiB "
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
        "| run | ℓ | time s | client→server GiB | server→client GiB | rounds | estimate GiB "
        "| RSS server MiB | RSS client MiB | exact | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for k, r in results.items():
        if k == "shaped":
            continue
        rows.append(
            f"| {k} | {r.get('ell', '')} | {r['s']:.1f} | "
            f"{r['bytes_client_to_server'] / 2**30:.3f} | "
            f"{r['bytes_server_to_client'] / 2**30:.3f} | {r['rounds']:,} | "
            f"{r.get('estimated_bytes', 0) / 2**30:.2f} | "
            f"{r['peak_rss_mb_server']:.0f} | {r['peak_rss_mb_client']:.0f} | {r['exact']} | "
            f"{r['load_avg'][0]:.1f} |"
        )
    rows += ["", "| run | kind | time s | GiB | rounds |", "| --- | --- | ---: | ---: | ---: |"]
    for k, r in results.items():
        for kind, v in r.get("by_kind", {}).items() if k != "shaped" else ():
            rows.append(
                f"| {k} | {kind} | {v['s']:.1f} | {v['bytes'] / 2**30:.3f} | {v['rounds']:,} |"
            )
    rows += ["", "| run | loopback s | " + " | ".join(f"{n} (projected) s" for n, _, _ in LINKS)
             + " |", "| --- | ---: |" + " ---: |" * len(LINKS)]  # fmt: skip
    for k, r in results.items():
        if "wan_projection_s" in r:
            proj = " | ".join(f"{r['wan_projection_s'][n]:.1f}" for n, _, _ in LINKS)
            rows.append(f"| {k} | {r['s']:.1f} | {proj} |")
    sh = results.get("shaped")
    if sh:
        rows += [
            "",
            "| shaped run | link | loopback s (before, after) | projected s | measured s "
            "| measured / projected |",
            "| --- | --- | --- | ---: | ---: | ---: |",
            f"| {sh['of']} | {sh['link']} | {sh['loopback_s'][0]:.1f}, {sh['loopback_s'][1]:.1f} "
            f"| {sh['projected_s']:.1f} | {sh['measured_s']:.1f} | {sh['ratio']:.3f} |",
            *(
                f"| {sh['of']} [{k}] | {sh['link']} | | {v['projected_s']:.1f} | "
                f"{v['measured_s']:.1f} | {v['ratio']:.3f} |"
                for k, v in sh["by_kind"].items()
            ),
        ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DenseNet-121 2PC end to end")
    ap.add_argument("--json", dest="json_path", help="write the figures as JSON here")
    ap.add_argument(
        "--quick", action="store_true", help="one small size per model (DenseNet 32², CNNs 16²)"
    )
    ap.add_argument("--sizes", type=int, nargs="+", help="input sizes (overrides --quick)")
    ap.add_argument("--linear", choices=["he", "ot", "auto"], default="auto")
    ap.add_argument("--ot", nargs="+", choices=["iknp", "silent"],
                    help="OT sources to run, each on every size, in this run "
                         "(default: the runtime's default source)")  # fmt: skip
    ap.add_argument("--unfused-too", action="store_true",
                    help="also run each size with --no-fuse (before/after)")  # fmt: skip
    ap.add_argument("--shaped", type=int, metavar="SIZE",
                    help="check the 100 Mbit/s, 40 ms projection once at this size through "
                         "a shaping relay (benchmarks/_relay.py)")  # fmt: skip
    ap.add_argument(
        "--transport",
        choices=["tls", "plaintext", "both"],
        default=None,
        help="TLS (the default of twofold run), plaintext, or both to compare "
        "(default: both; tls with --quick)",
    )
    ap.add_argument("--workdir", default=str(ROOT / "build" / "bench"))
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the bundle and simulate.json in --workdir")  # fmt: skip
    ap.add_argument("--prepare", action="store_true",
                    help="only export, compile and simulate (for a later --reuse run)")  # fmt: skip
    ap.add_argument("--models", nargs="+", choices=MODELS, default=["densenet121"])
    ap.add_argument("--batch", type=int, default=1, help="images per program (issue 17)")
    ap.add_argument("--session-timeout", type=float,
                    help="seconds each 2PC run may last (default: twofold run's)")  # fmt: skip
    ap.add_argument(
        "--scale", type=int, default=11,
        help="fractional bits (11, EzPC's DenseNet-121 setting: the checked range model's "
        "ring then fits the HE linear layers' 40 bits at 224²)",
    )  # fmt: skip
    ap.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                    help="compile with this compiler pass off (repeatable)")  # fmt: skip
    ap.add_argument("--pass-off-too", action="append", default=[], metavar="NAME",
                    help="also run each size on a bundle compiled without this pass")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.ot:
        sys.path.insert(0, str(ROOT))
        from twofold.runtime.session import OT_DEFAULT

        args.ot = [OT_DEFAULT]
    import pydicom.data

    image = pydicom.data.get_testdata_file("RG1_UNCR.dcm")
    transport = args.transport or ("tls" if args.quick else "both")
    transports = ["tls", "plaintext"] if transport == "both" else [transport]
    results: dict = {}

    def log(key: str, r: dict) -> None:
        results[key] = r
        print(json.dumps({key: r}), file=sys.stderr, flush=True)

    def own_sizes(model: str) -> list[int]:
        return args.sizes or ([quick_size(model)] if args.quick else [224, 128])

    def sizes(model: str) -> list[int]:
        own = own_sizes(model)
        return own + ([args.shaped] if args.shaped and args.shaped not in own else [])

    variants = [tuple(args.disable_pass)]
    variants += [(*args.disable_pass, p) for p in args.pass_off_too]
    runs = [(m, z, v) for m in args.models for z in sizes(m) for v in variants]
    for model, size, off in runs:
        print(f"{model} at {size}x{size} ...", file=sys.stderr, flush=True)
        bundle, compile_s = compile_size(
            size, Path(args.workdir), image, model, args.reuse, args.batch, args.scale, off
        )
        if args.prepare or (off != variants[0] and size not in own_sizes(model)):
            continue
        b = args.batch  # issue 17: N images per program
        img = str(bundle.parent / f"batch{b}.npy") if b > 1 else image
        for ot in args.ot:
            for fuse in (True, False) if args.unfused_too else (True,):
                for tr in transports:
                    key = f"{model}_{size}" + (f"_b{b}" if b > 1 else "") + f"_{ot}"
                    key += ("" if fuse else "_nofuse") + "".join(f"_no-{p}" for p in off)
                    key += f"/{tr}"
                    log(key, run_once(bundle, args.linear, img, ot=ot, fuse=fuse, transport=tr,
                                      session_timeout=args.session_timeout)
                        | {"compile_s": round(compile_s, 3), "batch": b})  # fmt: skip
        if size == args.shaped and off == variants[0]:
            # loopback, shaped, loopback again: the compute time of the projection is the mean of
            # the two loopback runs around the shaped one (other jobs' load drifts in minutes)
            ot, tr = args.ot[0], transports[0]
            key, again = f"{model}_{size}_{ot}/{tr}", f"{model}_{size}_{ot}_again/{tr}"
            name, bps, rtt = LINKS[1]
            wire = results[key]["bytes_client_to_server"] + results[key]["bytes_server_to_client"]
            bound = (3 * project(results[key], bps, rtt) + 120, 2 * wire + (64 << 20))
            r = run_once(bundle, args.linear, image, ot=ot, transport=tr, link=(bps, rtt),
                         bound=bound)  # fmt: skip
            log(again, run_once(bundle, args.linear, image, ot=ot, transport=tr))
            loop = (results[key]["s"] + results[again]["s"]) / 2
            proj = project(results[key] | {"s": loop}, bps, rtt)
            kinds = {}
            for kind, v in r["by_kind"].items():  # the same check per layer kind
                ks = [results[k]["by_kind"][kind]["s"] for k in (key, again)]
                pk = sum(ks) / 2 + v["bytes"] * 8 / bps + v["rounds"] * rtt
                if pk > 0.5:
                    kinds[kind] = {"projected_s": round(pk, 2), "measured_s": v["s"],
                                   "ratio": round(v["s"] / pk, 3)}  # fmt: skip
            log("shaped", {
                "of": key, "link": name, "loopback_s": [results[key]["s"],
                results[again]["s"]], "projected_s": round(proj, 2),
                "measured_s": r["s"], "ratio": round(r["s"] / proj, 3), "by_kind": kinds,
                "run": r,
            })  # fmt: skip
    print(table(results))
    print()
    print(tls_table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
