"""DenseNet-121 with the CheXNet head, in plain torch (no torchvision).

Architecture of Huang et al. 2017 (growth 32, blocks 6/12/24/16, bottleneck 4k, compression
0.5) with a 14-way classifier and a sigmoid, as in CheXNet (Rajpurkar et al. 2017, §2.2).
``state_dict`` keys match torchvision's ``densenet121`` so its checkpoints and CheXNet /
torchxrayvision ones load after key renaming (``load_weights``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch convention

# The 14 ChestX-ray14 findings in CheXNet's output order: one definition, in the package.
from twofold.eval.labels import CHEXNET_LABELS

# torchxrayvision's 18-output order (xrv.datasets.default_pathologies), for its checkpoints.
XRV_PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)

DEFAULT_SEED = 121


class WeightsError(ValueError):
    """A checkpoint that cannot be loaded into DenseNet-121; says which keys are at fault."""


class _DenseLayer(nn.Sequential):
    """BN-ReLU-Conv1×1 (4k) then BN-ReLU-Conv3×3 (k); output concatenated to the input."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(cin))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(cin, bn_size * growth, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.cat([x, super().forward(x)], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(cin + i * growth, growth, bn_size))


class _Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, 2))


class DenseNet121(nn.Module):
    """DenseNet-121; ``forward`` returns sigmoid probabilities when ``sigmoid`` is set."""

    def __init__(
        self,
        num_classes: int = 14,
        sigmoid: bool = True,
        growth: int = 32,
        blocks: tuple[int, ...] = (6, 12, 24, 16),
        init_features: int = 64,
        bn_size: int = 4,
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, init_features, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        c = init_features
        for i, n in enumerate(blocks):
            layers[f"denseblock{i + 1}"] = _DenseBlock(n, c, growth, bn_size)
            c += n * growth
            if i != len(blocks) - 1:
                layers[f"transition{i + 1}"] = _Transition(c, c // 2)
                c //= 2
        layers["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(c, num_classes)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = F.relu(self.features(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.classifier(x)
        return torch.sigmoid(x) if self.sigmoid else x


def realistic_init(
    model: nn.Module, seed: int = DEFAULT_SEED, size: int = 224, batch: int = 1
) -> nn.Module:
    """Random weights with BN statistics measured, not invented (so activations stay O(1)).

    Kaiming conv weights, BN affine γ∈U(0.7,1.3), β∈N(0,0.1); running mean/var are then the
    statistics of a forward pass on ``batch`` N(0,1) images (cumulative average), as training
    would leave them. Deterministic for a given seed. Leaves the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.7 + 0.6 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
                bns.append(m)
        model.train()
        model(torch.randn((batch, 3, size, size), generator=gen))
        for m in bns:
            m.momentum = 0.1
    return model.eval()


def build(num_classes: int = 14, sigmoid: bool = True, seed: int = DEFAULT_SEED) -> DenseNet121:
    """DenseNet-121 with realistic random weights, eval mode."""
    torch.manual_seed(seed)
    return realistic_init(DenseNet121(num_classes, sigmoid), seed, size=128)


_OLD_KEY = re.compile(r"\.(norm|relu|conv)\.(\d+)\.")
_PREFIXES = ("module.", "densenet121.", "model.", "net.")


def rename_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CheXNet / old torchvision / torchxrayvision keys → this model's (torchvision) keys.

    ``module.densenet121.features.denseblock1.denselayer1.norm.1.weight`` →
    ``features.denseblock1.denselayer1.norm1.weight``; ``classifier.0.*`` → ``classifier.*``;
    torchxrayvision's non-parameter buffers (``op_threshs``, ...) are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        k = _OLD_KEY.sub(lambda m: f".{m.group(1)}{m.group(2)}.", k)
        k = re.sub(r"^classifier\.0\.", "classifier.", k)
        if not (k.startswith("features.") or k.startswith("classifier.")):
            continue
        out[k] = value
    return out


def _adapt_xrv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchxrayvision: 1-channel stem → 3 equal channels (w/3), 18 outputs → CheXNet's 14."""
    w0 = state.get("features.conv0.weight")
    if w0 is not None and w0.shape[1] == 1:
        state["features.conv0.weight"] = w0.repeat(1, 3, 1, 1) / 3.0
    cw = state.get("classifier.weight")
    if cw is not None and cw.shape[0] == len(XRV_PATHOLOGIES):
        rows = [XRV_PATHOLOGIES.index(lbl) for lbl in CHEXNET_LABELS]
        state["classifier.weight"] = cw[rows]
        if "classifier.bias" in state:
            state["classifier.bias"] = state["classifier.bias"][rows]
    return state


def load_weights(model: DenseNet121, path: str | Path) -> DenseNet121:
    """Load a torchvision-, CheXNet- or torchxrayvision-style checkpoint into ``model``.

    Accepts a bare ``state_dict`` or a dict holding one under ``state_dict``/``model``.
    Files are loaded with ``weights_only=True`` (no pickled code runs).
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign files
        raise WeightsError(
            f"{p} is not a loadable torch checkpoint of tensors (save model.state_dict(), "
            f"not the whole model): {str(e).splitlines()[0]}"
        ) from None
    if isinstance(obj, dict):
        for k in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{p} does not hold a state_dict of tensors")
    state = _adapt_xrv(rename_keys(obj))
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise WeightsError(
            f"{p}: {len(missing)} DenseNet-121 parameters missing after key renaming, "
            f"e.g. {missing[:3]}"
        )
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise WeightsError(
            f"{p}: {k} has shape {list(state[k].shape)}, the model expects {list(own[k].shape)}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model.eval()
