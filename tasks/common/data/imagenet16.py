"""ImageNet16-120 (NAS-Bench-201): the down-sampled ImageNet batch files, classes 1..120 kept."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .registry import ImageDataset, register_dataset

LAYOUT = """  ImageNet16/train_data_batch_1 ... train_data_batch_10 and ImageNet16/valid_data
  (the pickled batch files of Chrabaszcz et al., as NAS-Bench-201 uses them)"""


@register_dataset("imagenet16-120", LAYOUT)
def load_imagenet16(place: Path, split: str) -> Optional[ImageDataset]:
    folder = place / "ImageNet16"
    files = [f"train_data_batch_{i}" for i in range(1, 11)] if split == "train" else ["valid_data"]
    if not all((folder / f).is_file() for f in files):
        return None
    images, labels = [], []
    for f in files:
        with open(folder / f, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")  # the data set's own format; local file
        lab = np.asarray(entry["labels"])
        keep = (lab >= 1) & (lab <= 120)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)[keep])
        labels.append(lab[keep] - 1)
    return ImageDataset(torch.from_numpy(np.concatenate(images)),
                        torch.from_numpy(np.concatenate(labels)).long(),
                        [str(i) for i in range(120)], str(folder))
