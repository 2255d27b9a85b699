"""ImageNet16-120 (NAS-Bench-201): the down-sampled ImageNet batch files, classes 1..120 kept."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .paths import DataError
from .registry import ImageDataset, register_dataset
from .safe_pickle import load_data_pickle

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
        try:
            entry = load_data_pickle(folder / f, "latin1")   # admits only what the batch format holds
        except DataError:
            raise
        except Exception as error:  # truncated pickle, wrong file: name it instead of a traceback
            raise DataError(f"cannot read {folder / f} ({type(error).__name__}: {str(error)[:120]}); the file "
                            "is truncated or not an ImageNet16 batch file. Replace it with a fresh copy") from None
        lab = np.asarray(entry["labels"])
        keep = (lab >= 1) & (lab <= 120)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)[keep])
        labels.append(lab[keep] - 1)
    return ImageDataset(torch.from_numpy(np.concatenate(images)),
                        torch.from_numpy(np.concatenate(labels)).long(),
                        [str(i) for i in range(120)], str(folder))
