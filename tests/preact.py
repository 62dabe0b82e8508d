"""A small pre-activation CNN (DenseNet's BN → ReLU → linear pattern) with BatchNorm scales of
both signs, tiny and zero, exported by torch: the test model of the ``bn_forward`` pass.

BatchNorms that cannot fold backward (their input is a concat) and what reads their ReLU:
``bn1`` → 1×1 conv; ``bn2`` → padded 3×3 conv (not rewritten: the border would cut a
compensated constant); ``bn3`` → strided grouped 1×1 conv with a bias; ``bn4`` → global average
pool → flatten → linear (DenseNet's norm5 head)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class PreAct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1, self.conv1 = nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(16), nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(24), nn.Conv2d(24, 12, 1, stride=2, groups=2)
        self.bn4, self.fc = nn.BatchNorm2d(36), nn.Linear(36, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        s = self.conv0(x)
        a = torch.cat([s, self.conv1(F.relu(self.bn1(s)))], 1)
        c = torch.cat([a, self.conv2(F.relu(self.bn2(a)))], 1)
        d = torch.cat([self.conv3(F.relu(self.bn3(c))), F.avg_pool2d(c, 2)], 1)
        h = F.adaptive_avg_pool2d(F.relu(self.bn4(d)), 1)
        return self.fc(torch.flatten(h, 1))


def build(seed: int = 5, flip: bool = True) -> PreAct:
    """Random weights; with ``flip`` the BN scales have both signs, and each BN has a tiny
    (1e-5) and a zero scale, with shifts of both signs (dead and always-on channels)."""
    gen = torch.Generator().manual_seed(seed)
    m = PreAct()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d | nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.4)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.1)
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                g = 0.5 + torch.rand(n, generator=gen)
                if flip:
                    g = g * torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
                    g[0], g[1], g[2] = 1e-5, -1e-5, 0.0
                mod.weight.copy_(g)
                mod.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                if flip:
                    mod.bias[0], mod.bias[1], mod.bias[2] = 0.7, -0.6, 0.4
                mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                mod.running_var.copy_(0.2 + torch.rand(n, generator=gen))
    return m.eval()


def export(path: str | Path, size: int = 8, seed: int = 5, flip: bool = True) -> Path:
    path = Path(path)
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(
            build(seed, flip), (x,), str(path), input_names=["image"],
            output_names=["logits"], opset_version=17, dynamo=False,
        )  # fmt: skip
    return path
