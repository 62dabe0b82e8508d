"""Client-side image preprocessing: radiograph file → model input tensor [1, 3, size, size].

CheXNet's pipeline (Rajpurkar et al. 2017, §3.1): grey levels in [0, 1], resize, three equal
channels, ImageNet mean/std normalisation. DICOM pixels first go through the modality LUT
(rescale slope/intercept) and the VOI window (DICOM PS3.3 C.11.2.1.2), and MONOCHROME1
images are inverted so that bone is bright, as in the PNGs CheXNet was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PREPROCESSING = ("chexnet", "none")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}


class PreprocessError(ValueError):
    """An input image that cannot be read or turned into a model input; names the file."""


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in _DICOM_SUFFIXES:
        return True
    with open(p, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _first(value: object) -> float:
    """A DICOM value that may be multi-valued (e.g. several windows): the first one."""
    try:
        return float(value[0])  # type: ignore[index]
    except TypeError:
        return float(value)  # type: ignore[arg-type]


def read_dicom(p: Path) -> np.ndarray:
    """Grey levels in [0, 1] (bright = dense) of a single-frame DICOM image."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(p))
        pixels = ds.pixel_array
    except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError) as e:
        raise PreprocessError(f"{p} is not a readable DICOM image: {e}") from None
    except RuntimeError as e:  # missing decoder for a compressed transfer syntax
        raise PreprocessError(f"{p}: cannot decode the DICOM pixel data: {e}") from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise PreprocessError(f"{p} is a multi-frame DICOM; one radiograph per file is needed")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PreprocessError(f"{p}: photometric interpretation {photometric} is not greyscale")
    x = np.asarray(apply_modality_lut(pixels, ds), np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        c, w = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        x = np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0)  # linear VOI window
    else:
        if "VOILUTSequence" in ds:
            x = np.asarray(apply_voi_lut(x, ds), np.float64)
        x = _minmax(x, p)
    return 1.0 - x if photometric == "MONOCHROME1" else x


def _minmax(x: np.ndarray, p: Path) -> np.ndarray:
    """Grey levels stretched to [0, 1]; PreprocessError for NaN/infinite or constant pixels."""
    if not np.all(np.isfinite(x)):
        raise PreprocessError(f"{p} has non-finite pixel values (NaN or infinity); not an image")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        raise PreprocessError(f"{p} has constant pixel values; not an image")
    return (x - lo) / (hi - lo)


def read_picture(p: Path) -> np.ndarray:
    """PNG/JPEG/...: [H, W] grey or [H, W, 3] RGB in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return _minmax(np.asarray(im, np.float64), p)
            if im.mode in ("L", "1", "P", "LA"):
                return np.asarray(im.convert("L"), np.float64) / 255.0
            return np.asarray(im.convert("RGB"), np.float64) / 255.0
    except PreprocessError:
        raise  # names the file already
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PreprocessError(f"{p} is not a readable image: {e}") from None


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of each channel to size × size (PIL, float mode)."""
    from PIL import Image

    chans = [img] if img.ndim == 2 else [img[..., k] for k in range(img.shape[2])]
    out = [
        np.asarray(
            Image.fromarray(c.astype(np.float32), "F").resize((size, size), Image.BILINEAR),
            np.float32,
        )
        for c in chans
    ]
    if len(out) == 1:
        out *= 3
    return np.clip(np.stack(out), 0.0, 1.0)


def load_npy(p: Path, size: int) -> np.ndarray:
    """An already preprocessed tensor: [1, 3, size, size] or [3, size, size]."""
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise PreprocessError(f"{p} is not a readable .npy array: {e}") from None
    if x.dtype.kind not in "fiu":
        raise PreprocessError(f"{p}: dtype {x.dtype} is not numeric")
    if x.shape == (3, size, size):
        x = x[None]
    if x.shape != (1, 3, size, size):
        raise PreprocessError(
            f"{p} has shape {list(x.shape)}; expected [1, 3, {size}, {size}] (preprocessed)"
        )
    if not np.all(np.isfinite(x)):
        raise PreprocessError(f"{p} contains NaN or infinite values")
    return x.astype(np.float32)


def load_image(path: str | Path, preprocess: str = "chexnet", size: int = 224) -> np.ndarray:
    """Model input float32 [1, 3, size, size] from .npy (as is), PNG/JPEG or DICOM.

    ``preprocess="chexnet"`` applies ImageNet normalisation; ``"none"`` leaves [0, 1] pixels.
    """
    if preprocess not in PREPROCESSING:
        raise PreprocessError(
            f"unknown preprocessing {preprocess!r}; known: {', '.join(PREPROCESSING)}"
        )
    if size < 1:
        raise PreprocessError(f"image size must be positive, got {size}")
    p = Path(path)
    if not p.is_file():
        raise PreprocessError(f"input file {p} does not exist")
    if p.suffix.lower() == ".npy":
        return load_npy(p, size)
    img = read_dicom(p) if _is_dicom(p) else read_picture(p)
    x = _resize(img, size)
    if preprocess == "chexnet":
        x = (x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    return x[None].astype(np.float32)
