"""Preprocessing of a real radiograph (pydicom-data's RG1_UNCR, MONOCHROME1) and of PNG/npy."""

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from twofold.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessError, load_image

RG1 = get_testdata_file("RG1_UNCR.dcm")


def _pixels(x: np.ndarray) -> np.ndarray:
    """Undo the ImageNet normalisation: [3, H, W] grey levels in [0, 1]."""
    return x[0] * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]


def test_dicom_radiograph_chexnet():
    x = load_image(RG1, "chexnet", 224)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    px = _pixels(x)
    assert px.min() >= -1e-6 and px.max() <= 1 + 1e-6
    np.testing.assert_allclose(px[0], px[1], atol=1e-6)  # three equal grey channels
    np.testing.assert_allclose(px[1], px[2], atol=1e-6)
    assert px.std() > 0.05  # a real image, not a constant
    raw = load_image(RG1, "none", 64)
    assert raw.shape == (1, 3, 64, 64) and 0 <= raw.min() and raw.max() <= 1


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(RG1)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    ds.PhotometricInterpretation = "MONOCHROME2"
    flipped = tmp_path / "m2.dcm"
    ds.save_as(flipped)
    a = load_image(RG1, "none", 32)
    b = load_image(flipped, "none", 32)
    np.testing.assert_allclose(a, 1.0 - b, atol=1e-6)
    # In the displayed (inverted) PA film the image border outside the body is dark.
    assert a[0, 0, :3, :].mean() < a[0, 0, 12:20, 12:20].mean()


def test_png_grey_and_rgb(tmp_path):
    grey = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(grey).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", "none", 16)
    assert x.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(x[0, 0], x[0, 2])
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    y = _pixels(load_image(tmp_path / "c.jpg", "chexnet", 8))
    assert y[0].mean() > 0.95 and y[1].mean() < 0.05


def test_npy_passthrough_and_shape_check(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_array_equal(load_image(tmp_path / "x.npy", "chexnet", 8)[0], x)
    with pytest.raises(PreprocessError, match=r"shape \[3, 8, 8\]; expected \[1, 3, 16, 16\]"):
        load_image(tmp_path / "x.npy", "chexnet", 16)


def test_unreadable_files(tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(PreprocessError, match="scan.png is not a readable image"):
        load_image(bad)
    dcm = tmp_path / "scan.dcm"
    dcm.write_bytes(b"\x00" * 200)
    with pytest.raises(PreprocessError, match="scan.dcm is not a readable DICOM image"):
        load_image(dcm)
    with pytest.raises(PreprocessError, match="does not exist"):
        load_image(tmp_path / "missing.dcm")
    with pytest.raises(PreprocessError, match="unknown preprocessing 'imagenet'"):
        load_image(RG1, "imagenet")
