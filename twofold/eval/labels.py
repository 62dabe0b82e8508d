"""Label names: the 14 CheXNet outputs and the mapping of dataset label names onto them.

CheXNet (Rajpurkar et al. 2017) predicts the 14 NIH ChestX-ray14 findings (Wang et al. 2017) in
this order; CheXpert (Irvin et al. 2019) names some of them differently ("Pleural Effusion").
Names are matched after normalisation (case, spaces, underscores, hyphens).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

CHEXNET_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

NIH_NO_FINDING = "No Finding"

# The 14 CheXpert observation columns, in the order of the CheXpert CSVs.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Dataset spellings -> CheXNet name (keys normalised).
ALIASES: dict[str, str] = {
    "pleural effusion": "Effusion",
    "effusion": "Effusion",
    "infiltrate": "Infiltration",
    "infiltrates": "Infiltration",
    "pleural thickening": "Pleural_Thickening",
    "pneumothorax": "Pneumothorax",
    "edema": "Edema",
    "oedema": "Edema",
}


def normalise(name: str) -> str:
    """Case-, space-, underscore- and hyphen-insensitive key of a label name."""
    return re.sub(r"[\s_\-]+", " ", name.strip()).lower()


class LabelMap:
    """Maps dataset label names onto model output indices.

    ``model_labels`` names the model's outputs in order; ``extra`` adds or overrides
    ``dataset name -> model label`` pairs. ``index(name)`` is None for a name the model
    does not predict (e.g. CheXpert's "Support Devices").
    """

    def __init__(self, model_labels: Sequence[str], extra: dict[str, str] | None = None):
        if len(set(map(normalise, model_labels))) != len(model_labels):
            raise ValueError(f"model labels are not unique: {list(model_labels)}")
        self.model_labels = tuple(model_labels)
        self._key = {normalise(m): i for i, m in enumerate(self.model_labels)}
        self._alias: dict[str, int] = {}
        for src, dst in ALIASES.items():
            if normalise(dst) in self._key:
                self._alias[src] = self._key[normalise(dst)]
        for src, dst in (extra or {}).items():
            if normalise(dst) not in self._key:
                raise ValueError(
                    f"label map {src!r} -> {dst!r}: {dst!r} is not a model output "
                    f"(outputs: {', '.join(self.model_labels)})"
                )
            self._alias[normalise(src)] = self._key[normalise(dst)]

    def index(self, name: str) -> int | None:
        key = normalise(name)
        if key in self._alias:
            return self._alias[key]
        return self._key.get(key)

    def model_name(self, name: str) -> str | None:
        i = self.index(name)
        return None if i is None else self.model_labels[i]

    def mapped(self, names: Iterable[str]) -> dict[str, str]:
        """Dataset names that map to a model output, as ``{dataset name: model name}``."""
        out = {}
        for n in names:
            m = self.model_name(n)
            if m is not None:
                out[n] = m
        return out


def parse_label_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["Lung Opacity=Infiltration", ...]`` -> dict; raises ValueError naming a bad pair."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ValueError(f"label map entry {p!r} must look like DATASET_LABEL=MODEL_LABEL")
        src, dst = (s.strip() for s in p.split("=", 1))
        if not src or not dst:
            raise ValueError(f"label map entry {p!r} has an empty side")
        out[src] = dst
    return out
