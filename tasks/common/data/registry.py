"""Registered data sets. Each loader returns uint8 images (N, C, H, W) and int64 labels in memory."""
from __future__ import annotations

import os
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


# Class counts of the registered sets, known before loading (configs are checked against them first).
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120, "imagenet-dogs-cats": 143}

# Data sets torchvision can download, and the folder (under the first search place) they go to.
DOWNLOADABLE = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _download(name: str, target: Path) -> Optional[str]:
    """Fetch a data set with torchvision; returns why it failed, or None."""
    import torchvision
    try:
        getattr(torchvision.datasets, DOWNLOADABLE[name])(str(target / name), train=True, download=True)
        getattr(torchvision.datasets, DOWNLOADABLE[name])(str(target / name), train=False, download=True)
    except Exception as error:  # no network, proxy, disk full: all end in the same clear message
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def load_dataset(name: str, split: str, root: Optional[str] = None, download: bool = False) -> ImageDataset:
    """Find data set ``name`` on the search path and load ``split`` ('train' or 'test') into memory.

    With ``download`` (and $SABN_OFFLINE unset) a missing CIFAR set is fetched by torchvision into
    the first search place (``data.root``, else $SABN_DATA_DIR, else ./data).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}'; known: {', '.join(sorted(DATASETS))}")
    loader, layouts = DATASETS[name]
    offline = os.environ.get("SABN_OFFLINE") == "1"
    if root and not Path(root).expanduser().is_dir() and download and not offline and name in DOWNLOADABLE:
        places = [Path(root).expanduser()]   # a new folder to download into; never a silent fall-back elsewhere
    else:
        places = data_search_path(root)   # an explicit root that does not exist is an error there
    for place in places:
        if place.is_dir():
            found = loader(place, split)
            if found is not None:
                return found
    failure = "download is off (data.download=false or SABN_OFFLINE=1)"
    if download and name in DOWNLOADABLE and os.environ.get("SABN_OFFLINE") != "1":
        failure = _download(name, places[0])
        if failure is None:
            return load_dataset(name, split, root, download=False)
        failure = f"download failed ({failure})"
    searched = "\n  ".join(str(p) for p in places)
    raise DataNotFoundError(
        f"data set '{name}' ({split}) not found. Searched:\n  {searched}\n"
        f"Accepted layouts under any of these:\n{layouts}\n"
        f"Set data.root=<dir> or SABN_DATA_DIR=<dir> to point at your copy; {failure}.")


from . import cifar, imagenet, imagenet16  # noqa: E402,F401  (register their loaders)
