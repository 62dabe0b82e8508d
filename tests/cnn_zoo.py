"""The CNNs vendors ship, written here (torchvision from PyPI does not import beside this
torch): ResNet-50 (He et al. 2016, bottleneck blocks [3, 4, 6, 3]), MobileNetV2 (Sandler et
al. 2018, inverted residuals, ReLU6) and EfficientNet-B0 (Tan & Le 2019, MBConv with SiLU and
squeeze-excitation). Random weights with BN statistics measured on a calibration pass
(``examples/chexnet/model.py: realistic_init``), eval mode, 1000 classes.

    build(name, size) -> nn.Module;  export(name, path, size) -> Path (input "image")
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from zoo import _one_thread, chexnet_model

NAMES = ("resnet50", "mobilenetv2", "efficientnet_b0")
SEED = {"resnet50": 50, "mobilenetv2": 2, "efficientnet_b0": 0}


def _cbn(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            *_cbn(cin, width, 1), nn.ReLU(inplace=True),
            *_cbn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_cbn(width, cout, 1),
        )  # fmt: skip
        self.down = (
            nn.Sequential(*_cbn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_cbn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_cbn(cin, hid, 1), nn.ReLU6(inplace=True)]
        layers += [*_cbn(hid, hid, 3, stride, hid), nn.ReLU6(inplace=True), *_cbn(hid, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_cbn(3, 32, 3, 2), nn.ReLU6(inplace=True)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [*_cbn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class MBConv(nn.Module):
    """Expand 1×1 (SiLU), depthwise k×k (SiLU), squeeze-excitation (SiLU, sigmoid gate),
    project 1×1; identity residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_cbn(cin, hid, 1), nn.SiLU()]
        layers += [*_cbn(hid, hid, k, stride, hid), nn.SiLU()]
        self.pre = nn.Sequential(*layers)
        sq = max(1, cin // 4)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(hid, sq, 1), nn.SiLU(), nn.Conv2d(sq, hid, 1),
            nn.Sigmoid(),
        )  # fmt: skip
        self.project = nn.Sequential(*_cbn(hid, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        y = self.project(h * self.se(h))
        return x + y if self.residual else y


class EfficientNetB0(nn.Module):
    SETTINGS = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))  # fmt: skip

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_cbn(3, 32, 3, 2), nn.SiLU()]
        cin = 32
        for t, c, n, s, k in self.SETTINGS:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
        layers += [*_cbn(cin, 1280, 1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def build(name: str, size: int = 224) -> nn.Module:
    """Model ``name`` with random weights and measured BN statistics (fixed seed), eval mode."""
    cls = {"resnet50": ResNet50, "mobilenetv2": MobileNetV2, "efficientnet_b0": EfficientNetB0}
    if name not in cls:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
    with _one_thread():
        torch.manual_seed(SEED[name])
        model = cls[name]()
        return chexnet_model().realistic_init(model, SEED[name], size=max(size, 32), batch=16)


def export(name: str, path: str | Path, size: int = 224, opset: int = 17) -> Path:
    """ONNX export (legacy exporter) with input "image" [1, 3, size, size], output "logits"."""
    path = Path(path)
    model = build(name, size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), _one_thread():
        torch.onnx.export(model, (x,), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=opset, dynamo=False)  # fmt: skip
    return path
