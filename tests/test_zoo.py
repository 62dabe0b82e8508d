"""The test zoo exports real torch models whose ONNX graphs onnxruntime agrees with."""

import numpy as np
import onnx
import pytest
import torch
import zoo

from twofold.backends.onnxruntime_ref import run_onnxruntime


@pytest.mark.parametrize("name", ["resnet", "mobilenet", "squeezenet", "vgg"])
def test_small_models_export_and_match_torch(zoo_onnx, name):
    path = zoo_onnx(name, 32)
    m = onnx.load(str(path))
    assert [i.name for i in m.graph.input] == ["image"]
    assert [o.name for o in m.graph.output] == ["logits"]
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = run_onnxruntime(path, {"image": x})["logits"]
    with torch.no_grad():
        want = zoo.build(name, size=32)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.std(got) > 1e-3  # not a degenerate (constant) model


def test_bn_statistics_are_nontrivial():
    model = zoo.build("resnet")
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not model.training


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown zoo model 'lenet'"):
        zoo.build("lenet")
