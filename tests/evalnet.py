"""The small network the eval tests run: Conv-ReLU-GAP-FC-sigmoid with 14 outputs (one per
CheXNet finding), exported by torch with fixed weights (seed 0)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def export_eval_net(path: Path, size: int) -> tuple[torch.nn.Conv2d, torch.nn.Linear]:
    """Write the network's ONNX (input ``image``, output ``prob``, 1x3xSIZExSIZE) to ``path``;
    its conv and FC layers, for tests that rebuild it as IR."""
    torch.manual_seed(0)
    conv, fc = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4, 14)
    net = torch.nn.Sequential(
        conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc,
        torch.nn.Sigmoid(),
    ).eval()  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, size, size), str(path),
                          input_names=["image"], output_names=["prob"], dynamo=False)  # fmt: skip
    return conv, fc
