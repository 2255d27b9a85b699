"""Registered data sets. Each loader returns uint8 images (N, C, H, W) and int64 labels in memory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from torch import Tensor

from .paths import DataNotFoundError, data_search_path


@dataclass
class ImageDataset:
    """A split held in memory: uint8 images (N, C, H, W), int64 labels, class names, origin."""

    images: Tensor
    labels: Tensor
    classes: List[str]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


# name -> (loader(place, split) -> ImageDataset or None, description of accepted layouts)
DATASETS: Dict[str, Tuple[Callable[[Path, str], Optional[ImageDataset]], str]] = {}


def register_dataset(name: str, layouts: str):
    """Decorator registering ``loader(place, split)`` that returns None when ``place`` lacks the set."""
    def wrap(loader):
        DATASETS[name] = (loader, layouts)
        return loader
    return wrap


def load_dataset(name: str, split: str, root: Optional[str] = None) -> ImageDataset:
    """Find data set ``name`` on the search path and load ``split`` ('train' or 'test') into memory."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}'; known: {', '.join(sorted(DATASETS))}")
    loader, layouts = DATASETS[name]
    places = data_search_path(root)
    for place in places:
        if place.is_dir():
            found = loader(place, split)
            if found is not None:
                return found
    searched = "\n  ".join(str(p) for p in places)
    raise DataNotFoundError(
        f"data set '{name}' ({split}) not found. Searched:\n  {searched}\n"
        f"Accepted layouts under any of these:\n{layouts}\n"
        "Set data.root=<dir> or SABN_DATA_DIR=<dir> to point at your copy.")


from . import cifar, imagenet, imagenet16  # noqa: E402,F401  (register their loaders)
