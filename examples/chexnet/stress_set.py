"""A stress set of chest radiograph variants for the fixed-point headroom (issue 13).

Built from the real radiograph shipped offline in pydicom-data (RG1_UNCR.dcm, a CR chest PA;
the package's other radiographs, RG2/RG3, are an extremity and not chest films), by
deterministic, seeded transforms on the raw detector values: DICOM window changes (centre and
width), crops, flips, rotations (small angles and 90°), contrast and gamma changes, Gaussian
and Poisson-like noise, blur, and resizes from other resolutions (down to 64 px and back), and
combinations of two of them. Images are written as 8-bit PNG (at most 512 px a side); the
same ``--seed`` gives the same files. Nothing secret: numpy's RNG is fine for augmentation.

    python examples/chexnet/stress_set.py OUT_DIR [--n 240] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

MAX_SIDE = 512
KINDS = (
    "window", "crop", "flip", "rotate", "rot90", "contrast", "gamma", "noise", "poisson",
    "blur", "resize", "combo",
)  # fmt: skip


def raw_radiograph() -> np.ndarray:
    """RG1_UNCR.dcm as modality values, inverted so that bone is bright (MONOCHROME1)."""
    import pydicom
    import pydicom.data
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(pydicom.data.get_testdata_file("RG1_UNCR.dcm"))
    a = np.asarray(apply_modality_lut(ds.pixel_array, ds), np.float64)
    return a.max() - a if ds.PhotometricInterpretation == "MONOCHROME1" else a


def _window(raw: np.ndarray, centre_q: float, width_q: float) -> np.ndarray:
    """A linear VOI window given as quantiles of the raw values: grey levels in [0, 1]."""
    lo, hi = np.quantile(raw, [0.005, 0.995])
    c, w = lo + centre_q * (hi - lo), max(width_q * (hi - lo), 1.0)
    return np.clip((raw - c) / w + 0.5, 0.0, 1.0)


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a * 255.0, 0, 255).astype(np.uint8))


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, np.float64) / 255.0


def _transforms(rng: np.random.Generator) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    def crop(a: np.ndarray) -> np.ndarray:
        h, w = a.shape
        f = rng.uniform(0.5, 0.95)
        ch, cw = int(h * f), int(w * rng.uniform(max(0.5, f - 0.15), min(1.0, f + 0.15)))
        y, x = int(rng.uniform(0, h - ch)), int(rng.uniform(0, w - cw))
        return a[y : y + ch, x : x + cw]

    def rotate(a: np.ndarray) -> np.ndarray:
        return _arr(_pil(a).rotate(rng.uniform(-20, 20), resample=Image.BILINEAR))

    def resize(a: np.ndarray) -> np.ndarray:
        side = int(rng.choice([64, 96, 128, 160, 200, 256, 300, 384]))
        h, w = a.shape
        small = _pil(a).resize((side, max(8, int(side * h / w))), Image.BILINEAR)
        return _arr(small.resize((w, h), Image.NEAREST if rng.random() < 0.3 else Image.BICUBIC))

    return {
        "crop": crop,
        "flip": lambda a: a[:, ::-1] if rng.random() < 0.7 else a[::-1, :],
        "rotate": rotate,
        "rot90": lambda a: np.rot90(a, int(rng.integers(1, 4))),
        "contrast": lambda a: np.clip(
            (a - 0.5) * rng.uniform(0.4, 2.0) + 0.5 + rng.uniform(-0.2, 0.2), 0, 1
        ),  # fmt: skip
        "gamma": lambda a: a ** rng.uniform(0.35, 2.8),
        "noise": lambda a: np.clip(a + rng.normal(0, rng.uniform(0.01, 0.12), a.shape), 0, 1),
        "poisson": lambda a: np.clip(rng.poisson(a * (k := rng.uniform(20, 200))) / k, 0, 1),
        "blur": lambda a: _arr(_pil(a).filter(ImageFilter.GaussianBlur(rng.uniform(1, 8)))),
        "resize": resize,
    }


def generate(out: str | Path, n: int = 240, seed: int = 0) -> list[Path]:
    """Write ``n`` variants as OUT/NNN_KIND.png; returns their paths in order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    raw = raw_radiograph()
    h, w = raw.shape
    step = max(1, int(np.ceil(max(h, w) / (2 * MAX_SIDE))))
    raw = raw[::step, ::step]  # ~980 px: transforms at twice the stored resolution
    tf = _transforms(rng)
    paths = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        # every image gets its own window (the DICOM default one for the first variants)
        a = _window(raw, rng.uniform(0.35, 0.65), rng.uniform(0.6, 1.4))
        if kind == "window":
            a = _window(raw, rng.uniform(0.15, 0.85), rng.uniform(0.2, 2.5))
        elif kind == "combo":
            for k in rng.choice(sorted(tf), size=2, replace=False):
                a = tf[str(k)](a)
        else:
            a = tf[kind](a)
        im = _pil(np.ascontiguousarray(a))
        if max(im.size) > MAX_SIDE:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BILINEAR)
        p = out / f"{i:03d}_{kind}.png"
        im.save(p)
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="directory for the PNG files")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    paths = generate(a.out, a.n, a.seed)
    print(f"{len(paths)} variants of RG1_UNCR.dcm in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
