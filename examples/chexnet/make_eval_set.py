"""Build a small labelled chest X-ray set from the real radiograph in pydicom-data and run
``twofold eval`` on it (simulate mode; 2PC too with ``--mode both``).

PIPELINE CHECK, NOT A CLINICAL RESULT: the images are one radiograph (RG1_UNCR.dcm) and
crops / rotations / contrast and gamma variants of it; the model is DenseNet-121 with random
(realistically initialised) weights; the labels are synthetic — for each finding, 1 when the
plaintext model's probability is above that finding's median, with 20% of labels flipped, so
AUROCs land away from 0.5 and every part of the report has something to show. The numbers say
whether secure inference reproduces plaintext inference, nothing about diagnosis.

    python examples/chexnet/make_eval_set.py [--size 64] [--n 24] [--mode simulate|both]
        [--workdir build/eval] [--report-dir docs/example-report]

With real weights and a real labelled set instead (CheXpert, NIH ChestX-ray14 or a plain CSV;
no synthetic labels, no kill/resume demonstration, calibration on the set's first images):

    python examples/chexnet/make_eval_set.py --size 224 --weights chexnet.pth.tar \
        --dataset CheXpert-v1.0-small/valid.csv --format chexpert --images DATA_ROOT

The CSV uses the CheXpert layout (with a few uncertain -1 labels, a column the model does
not predict, a "Site" column with two sites A and B, and four bad rows: a missing file, a
corrupt PNG, an invalid label value and a short row), so the loader, the --uncertain policy,
the per-site report (--group-column Site) and the bad-row report are all exercised.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TWOFOLD = [sys.executable, "-m", "twofold.cli"]
NOTE = (
    "Pipeline check, not a clinical result: one real radiograph (pydicom-data RG1_UNCR.dcm) "
    "and augmented variants of it, DenseNet-121 with random weights, synthetic labels "
    "(plaintext probability above the per-finding median, 20% flipped)."
)
# Fractional bits: at s = 12 the secure-vs-plaintext differences reach 0.025 and a finding
# can fail TOST at ±0.01; s = 14 keeps them near 0.004 (issue 13). The checked range model
# then needs a ring above 40 bits at 64², so 2PC linear layers go by OT (--mode both is slow).
SCALE = 14
# CheXpert columns; those the model predicts get synthetic labels, the rest stay blank.
CHEXPERT = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip


def _module(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"chexnet_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(cmd: list[str]) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"make_eval_set: command failed: {' '.join(map(str, cmd))}")


def radiograph() -> tuple[np.ndarray, str]:
    """RG1_UNCR.dcm as 8-bit grayscale (MONOCHROME1 inverted), and its path."""
    import pydicom
    import pydicom.data

    path = pydicom.data.get_testdata_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    a = ds.pixel_array.astype(np.float64)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        a = a.max() - a
    lo, hi = np.percentile(a, [0.5, 99.5])
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8), path


def variants(img: np.ndarray, n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Deterministic augmentations: crops, small rotations, contrast, gamma, noise, blur."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)  # data augmentation, nothing secret
    base = Image.fromarray(img)
    w, h = base.size
    out = []
    for i in range(n):
        kind = ("crop", "rotate", "contrast", "gamma", "noise", "blur")[i % 6]
        im = base
        f = rng.uniform(0.6, 0.95)
        cw, ch = int(w * f), int(h * f)
        x0, y0 = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
        a = np.asarray(im, np.float64) / 255
        if kind == "rotate":
            im = Image.fromarray((a * 255).astype(np.uint8)).rotate(rng.uniform(-12, 12))
            a = np.asarray(im, np.float64) / 255
        elif kind == "contrast":
            a = np.clip((a - 0.5) * rng.uniform(0.6, 1.6) + 0.5 + rng.uniform(-0.1, 0.1), 0, 1)
        elif kind == "gamma":
            a = a ** rng.uniform(0.5, 2.0)
        elif kind == "noise":
            a = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
        elif kind == "blur":
            im = Image.fromarray((a * 255).astype(np.uint8))
            a = np.asarray(im.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4))), np.float64) / 255
        out.append((f"{i:03d}_{kind}", (a * 255).astype(np.uint8)))
    return out


def make_images(root: Path, n: int) -> list[str]:
    """The original DICOM and ``n - 1`` variants as PNG/JPEG; paths relative to ``root``."""
    from PIL import Image

    img, dcm = radiograph()
    (root / "images").mkdir(parents=True, exist_ok=True)
    paths = ["images/000_original.dcm"]
    shutil.copy(dcm, root / paths[0])
    for i, (name, a) in enumerate(variants(img, n - 1)):
        ext = "jpg" if i % 4 == 3 else "png"
        Image.fromarray(a).save(root / "images" / f"{name}.{ext}")
        paths.append(f"images/{name}.{ext}")
    return paths


def write_labels(root: Path, paths: list[str], onnx_path: Path, bundle: Path) -> Path:
    """A CheXpert-layout CSV with synthetic labels (see the module docstring) and bad rows."""
    sys.path.insert(0, str(ROOT))
    from twofold.compiler.bundle import read_bundle
    from twofold.eval.engines import Plaintext
    from twofold.eval.labels import CHEXNET_LABELS, LabelMap
    from twofold.toolchain import input_meta, load_input

    meta = input_meta(read_bundle(bundle, weights=False))
    plain = Plaintext(onnx_path)
    probs = np.array([plain(load_input(root / p, meta)).values for p in paths])
    lmap = LabelMap(CHEXNET_LABELS)
    rng = np.random.default_rng(1)  # synthetic labels, nothing secret
    csv_path = root / "labels.csv"
    with csv_path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT, "Site"])
        cols = {c: lmap.index(c) for c in CHEXPERT}
        med = np.median(probs, axis=0)
        for k, p in enumerate(paths):
            row = []
            for c in CHEXPERT:
                j = cols[c]
                if j is None:
                    row.append("1.0" if c == "Support Devices" and k % 3 == 0 else "")
                    continue
                y = float(probs[k, j] > med[j])
                if rng.random() < 0.2:
                    y = 1.0 - y
                row.append("-1.0" if rng.random() < 0.05 else f"{y:.1f}")
            wr.writerow([p, "Unknown", "", "Frontal", "PA", *row, "AB"[k % 2]])
        # Bad rows the report must list: missing file, corrupt image, invalid label value,
        # a row with fewer fields than the header.
        blank = [""] * len(CHEXPERT)
        wr.writerow(["images/999_missing.png", "Unknown", "", "Frontal", "PA", *blank, "A"])
        (root / "images" / "998_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        wr.writerow(["images/998_corrupt.png", "Unknown", "", "Frontal", "PA", *blank, "B"])
        bad = list(blank)
        bad[CHEXPERT.index("Cardiomegaly")] = "2.0"
        shutil.copy(root / paths[1], root / "images" / "997_badlabel.png")
        wr.writerow(["images/997_badlabel.png", "Unknown", "", "Frontal", "PA", *bad, "A"])
        wr.writerow(["images/996_short.png", "Unknown", "", "Frontal"])
    return csv_path


def export(path: Path, size: int, weights: str | None) -> None:
    """DenseNet-121 + CheXNet head to ONNX: random realistic weights, or a checkpoint's."""
    if weights is None:
        _module("demo").export(path, size)
        return
    import torch

    cx = _module("model")
    model = cx.load_weights(cx.DenseNet121(14, sigmoid=True), weights).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path),
                          input_names=["image"], output_names=["probabilities"],
                          opset_version=17, dynamo=False)  # fmt: skip


def real_paths(csv_path: Path, fmt: str, root: Path, k: int) -> list[str]:
    """The first ``k`` usable images of a real dataset (for calibration)."""
    sys.path.insert(0, str(ROOT))
    from twofold.eval.datasets import load_dataset
    from twofold.eval.labels import CHEXNET_LABELS, LabelMap

    ds = load_dataset(csv_path, fmt, root, LabelMap(CHEXNET_LABELS))
    return [str(s.path.relative_to(root)) for s in ds.samples[:k]]


def eval_cmd(bundle: Path, onnx_path: Path, csv_path: Path, root: Path, out: Path,
             fmt: str = "chexpert", note: str = NOTE, group: str | None = "Site",
             ) -> list[str]:  # fmt: skip
    return [*TWOFOLD, "eval", str(bundle), "--model", str(onnx_path), "--dataset", str(csv_path),
            "--format", fmt, "--images", str(root), "--uncertain", "ignore",
            "--auroc-margin", "0.05", *(["--group-column", group] if group else []),
            "-o", str(out), *(["--note", note] if note else [])]  # fmt: skip


def killed_then_resumed(cmd: list[str], out: Path, after: int) -> None:
    """Run ``cmd``, SIGKILL it once ``after`` images are in results.jsonl, then --resume."""
    print(f"$ {' '.join(cmd)}   # killed after {after} images, then resumed", flush=True)
    proc = subprocess.Popen([*cmd, "--quiet"])
    res = out / "results.jsonl"
    while proc.poll() is None:
        if res.exists() and len(res.read_text().splitlines()) > after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            print(f"   killed with {len(res.read_text().splitlines()) - 1} images done", flush=True)
            break
        time.sleep(0.05)
    run([*cmd, "--resume"])


def start_server(bundle: Path, sessions: int) -> tuple[subprocess.Popen, str, str]:
    """A ``twofold run server`` on a free port: (process, HOST:PORT, certificate fingerprint)."""
    server = subprocess.Popen(
        [*TWOFOLD, "run", "server", str(bundle), "--listen", "127.0.0.1:0",
         "--max-sessions", str(sessions), "--quiet"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = server.stdout.readline()
    if "serving" not in line:
        server.kill()
        sys.exit(f"make_eval_set: the server did not start: {line!r}")
    sys.path.insert(0, str(ROOT))
    from twofold.twoparty import parse_banner

    addr, fingerprint = parse_banner(line)
    return server, addr, fingerprint


def publish(src: Path, dst: Path) -> None:
    """Copy report.md, report.html (figures inlined), summary.json and the PNGs."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.suffix in (".md", ".png", ".html") or p.name == "summary.json":
            shutil.copy(p, dst / p.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input side (224 = full CheXNet)")
    ap.add_argument(
        "--scale", type=int, default=SCALE, help="fractional bits s (14 meets TOST ±0.01)"
    )
    ap.add_argument("--n", type=int, default=24, help="number of images (>= 8)")
    ap.add_argument("--mode", choices=["simulate", "both"], default="simulate")
    ap.add_argument("--n-2pc", type=int, default=4, help="images run in 2PC with --mode both")
    ap.add_argument("--jobs", type=int, default=2, help="parallel 2PC sessions")
    ap.add_argument("--workdir", default=str(ROOT / "build" / "eval"))
    ap.add_argument("--report-dir", help="copy the report(s) here (e.g. docs/example-report)")
    ap.add_argument("--weights", help="DenseNet-121 checkpoint (CheXNet/torchvision/xrv keys)")
    ap.add_argument("--dataset", help="a real labels CSV instead of the synthetic set")
    ap.add_argument("--format", default="chexpert", choices=["chexpert", "nih", "plain"])
    ap.add_argument("--images", help="image root of --dataset")
    ap.add_argument("--group-column", help="per-group column of --dataset (e.g. a site)")
    args = ap.parse_args(argv)
    if args.n < 8:
        ap.error("--n must be at least 8")
    if bool(args.dataset) != bool(args.images):
        ap.error("--dataset and --images go together")
    tag = "real" if args.weights else "random"
    work = Path(args.workdir) / f"densenet121_{args.size}_{tag}"
    work.mkdir(parents=True, exist_ok=True)
    onnx_path, bundle = work / "densenet121.onnx", work / "bundle"
    if not onnx_path.exists():
        print(f"== export DenseNet-121 ({args.size}x{args.size}) -> {onnx_path}", flush=True)
        export(onnx_path, args.size, args.weights)
    if args.dataset:
        root, csv_path, fmt, note = Path(args.images), Path(args.dataset), args.format, ""
        group = args.group_column
        paths = real_paths(csv_path, fmt, root, 6)
    else:
        print("== build the image set", flush=True)
        root, fmt, note, group = work / "data", "chexpert", NOTE, "Site"
        paths = make_images(root, args.n)
    if not (bundle / "server" / "manifest.json").exists():
        cal = [str(root / p) for p in paths[:: max(1, len(paths) // 6)]]
        cal_args = [a for c in cal for a in ("--calibrate", c)]
        run([*TWOFOLD, "compile", str(onnx_path), "-o", str(bundle), "--preprocess", "chexnet",
             "--scale", str(args.scale), *cal_args])  # fmt: skip
    if not args.dataset:
        csv_path = write_labels(root, paths, onnx_path, bundle)

    out = work / "report-simulate"
    cmd = [*eval_cmd(bundle, onnx_path, csv_path, root, out, fmt, note, group),
           "--title", "twofold eval (simulate)"]  # fmt: skip
    if args.dataset:
        run([*cmd, "--resume"])  # a long real run continues where it stopped
    else:
        shutil.rmtree(out, ignore_errors=True)
        killed_then_resumed(cmd, out, after=3)
    if args.report_dir:
        publish(out, Path(args.report_dir))
    if args.mode == "both":
        out2 = work / "report-2pc"
        if not args.dataset:
            shutil.rmtree(out2, ignore_errors=True)
        server, addr, fingerprint = start_server(bundle, args.jobs)
        resume = ["--resume"] if args.dataset else []
        try:
            note2 = note and (f"{note} Only the first {args.n_2pc} images were run in 2PC; "
                              "the rest of the set is pending.")  # fmt: skip
            run([*eval_cmd(bundle, onnx_path, csv_path, root, out2, fmt, note2, group),
                 "--mode", "2pc", "--connect", addr, "--server-fingerprint", fingerprint,
                 "--jobs", str(args.jobs), "--limit", str(args.n_2pc),
                 "--title", "twofold eval (2PC)", *resume])  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
        if args.report_dir:
            publish(out2, Path(args.report_dir) / "2pc")
    summary = json.loads((out / "summary.json").read_text())
    print(f"\nreport: {out / 'report.md'} ({summary['dataset']['evaluated']} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
