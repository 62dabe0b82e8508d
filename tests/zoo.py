"""Torch model zoo for the tests: DenseNet-121 (CheXNet) and four small CNNs, plus ONNX export.

Every model has random weights from a fixed seed, is in eval mode, and has BatchNorm running
statistics measured on a calibration pass (realistic, non-trivial). The small ones stay small
(≤ 32 channels, a few layers) so that they also run quickly in 2PC.

    zoo.build(name, num_outputs=None, size=32) -> torch.nn.Module
    zoo.export(name, path, size=32, opset=17) -> Path   # input "image", output "logits"
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("densenet121", "resnet", "mobilenet", "squeezenet", "vgg")
# Which output function ends each model's graph (None: plain logits).
OUTPUT_FUNCTION = {
    "densenet121": "sigmoid",
    "resnet": None,
    "mobilenet": None,
    "squeezenet": "softmax",
    "vgg": None,
}


def chexnet_model():
    """``examples/chexnet/model.py`` as a module (examples/ is not a package)."""
    name = "twofold_examples_chexnet_model"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples/chexnet/model.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def _conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv-BN, identity or 1×1 projection, residual Add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout)
        )
        self.down = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class ResNet(nn.Module):
    """ResNet-18-style: stem, max pool, three basic blocks (one projecting), GAP, FC logits."""

    def __init__(self, num_outputs: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16, 3, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(
            _BasicBlock(16, 16, 1), _BasicBlock(16, 32, 2), _BasicBlock(32, 32, 1)
        )
        self.fc = nn.Linear(32, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand, 3×3 depthwise, 1×1 project (ReLU6), residual if same shape."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 2) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            *_conv_bn(cin, mid, 1),
            nn.ReLU6(inplace=True),
            *_conv_bn(mid, mid, 3, stride, groups=mid),
            nn.ReLU6(inplace=True),
            *_conv_bn(mid, cout, 1),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """MobileNet-style: depthwise-separable convs with ReLU6, an inverted residual, GAP, FC."""

    def __init__(self, num_outputs: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 16, 3, 2),
            nn.ReLU6(inplace=True),
            *_conv_bn(16, 16, 3, 1, groups=16),
            nn.ReLU6(inplace=True),
            *_conv_bn(16, 24, 1),
            nn.ReLU6(inplace=True),
            _InvertedResidual(24, 24, 1),
            _InvertedResidual(24, 32, 2),
        )
        self.fc = nn.Linear(32, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.fc(x)


class _Fire(nn.Module):
    """SqueezeNet Fire module: 1×1 squeeze, then Concat of 1×1 and 3×3 expands (ReLU each)."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet-style: conv, ceil-mode max pool, two Fire modules, 1×1 conv head, softmax."""

    def __init__(self, num_outputs: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(16, 4, 8),
            _Fire(16, 8, 16),
        )
        self.head = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(32, num_outputs, 1), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.softmax(x, 1)


class VGG(nn.Module):
    """Small VGG-style net: 3×3 conv-ReLU stacks, max pools, flatten, two FC layers (Gemm)."""

    def __init__(self, num_outputs: int = 10, size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        side = size // 4
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 32),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(32, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread: on a shared 2-core machine its thread pool is 5x slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


SEED = {"densenet121": 121, "resnet": 18, "mobilenet": 2, "squeezenet": 11, "vgg": 16}


def build(name: str, num_outputs: int | None = None, size: int = 32) -> nn.Module:
    """Model ``name`` with realistic random weights (fixed seed), eval mode.

    ``size`` matters only for ``vgg`` (its first FC layer sees the flattened map) and for the
    BN calibration pass of the small models.
    """
    if name not in NAMES:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(NAMES)}")
    with _one_thread():
        return _build(name, num_outputs, size)


def _build(name: str, num_outputs: int | None, size: int) -> nn.Module:
    cx = chexnet_model()
    torch.manual_seed(SEED[name])
    if name == "densenet121":
        return cx.build(num_outputs or 14, sigmoid=True, seed=SEED[name])
    n = num_outputs or 10
    model = {
        "resnet": lambda: ResNet(n),
        "mobilenet": lambda: MobileNet(n),
        "squeezenet": lambda: SqueezeNet(n),
        "vgg": lambda: VGG(n, size),
    }[name]()
    return cx.realistic_init(model, SEED[name], size=max(size, 16), batch=2)


def export(name: str, path: str | Path, size: int = 32, opset: int = 17) -> Path:
    """Export zoo model ``name`` at ``size``×``size`` to ONNX (legacy exporter, symbolic batch)."""
    path = Path(path)
    model = build(name, size=size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), _one_thread():
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return path
