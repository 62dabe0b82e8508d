"""Float reference vs onnxruntime on the zoo: max relative error ≤ 1e-4 on the outputs."""

import numpy as np
import pytest

from twofold.backends.float_ref import FloatReference, run_float
from twofold.backends.onnxruntime_ref import run_onnxruntime
from twofold.frontends.onnx import load_onnx


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize(
    "name,size",
    [("resnet", 32), ("mobilenet", 32), ("squeezenet", 35), ("vgg", 32), ("densenet121", 224)],
)
def test_agrees_with_onnxruntime(zoo_onnx, name, size):
    path = zoo_onnx(name, size)
    g = load_onnx(path)
    x = np.random.default_rng(3).standard_normal((1, 3, size, size)).astype(np.float32)
    ref = run_onnxruntime(path, {"image": x})["logits"]
    ours = run_float(g, {"image": x})["logits"]
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert _rel_err(ours, ref) <= 1e-4
    assert np.std(ref) > 1e-4  # the comparison is not between constants


def test_float64_mode_and_freeing(zoo_onnx):
    g = load_onnx(zoo_onnx("resnet", 32))
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32))
    it = FloatReference(g, dtype=np.float64)
    out = it.run({"image": x})["logits"]
    assert out.dtype == np.float64
    assert list(it.env) == ["logits"]
    f32 = run_float(g, {"image": x})["logits"]
    assert _rel_err(f32, out) <= 1e-5
