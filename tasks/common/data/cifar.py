"""CIFAR-10 / CIFAR-100 from torchvision's pickles, a class-folder tree, or a .tar.gz of that tree."""
from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from .paths import cache_dir
from .registry import ImageDataset, register_dataset

LAYOUTS = """  {d}/cifar-{n}-batches-py/ or cifar-{n}-python/  (torchvision's pickle files)
  {d}/{{train,test}}/<class name>/*.png|jpg       (class-folder image tree)
  {d}/*.tar.gz holding such a tree                 (extracted once into the cache directory)"""

_PICKLE_DIRS = {"cifar10": ["cifar-10-batches-py"], "cifar100": ["cifar-100-python"]}


def _from_pickles(folder: Path, name: str, split: str) -> Optional[ImageDataset]:
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, key, label_key = "batches.meta", "label_names", b"labels"
    else:
        files, meta, key, label_key = [split], "meta", "fine_label_names", b"fine_labels"
    if not all((folder / f).is_file() for f in files):
        return None
    images, labels = [], []
    for f in files:
        with open(folder / f, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")  # CIFAR's own format; trusted local file
        images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    with open(folder / meta, "rb") as handle:
        classes = [c.decode() if isinstance(c, bytes) else c for c in pickle.load(handle, encoding="bytes")[key.encode()]]
    return ImageDataset(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long),
                        classes, str(folder))


def _from_tree(split_dir: Path, cache_key: str) -> Optional[ImageDataset]:
    if not split_dir.is_dir():
        return None
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        return None
    cached = cache_dir() / f"{cache_key}.pt"
    if cached.is_file():
        blob = torch.load(cached, weights_only=True)
        return ImageDataset(blob["images"], blob["labels"], blob["classes"], str(split_dir))
    images: List[np.ndarray] = []
    labels: List[int] = []
    for index, cls in enumerate(classes):
        for file in sorted((split_dir / cls).iterdir()):
            if file.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            with Image.open(file) as img:
                images.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            labels.append(index)
    data = ImageDataset(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor(labels, dtype=torch.long), classes, str(split_dir))
    tmp = cached.with_suffix(".tmp")
    torch.save({"images": data.images, "labels": data.labels, "classes": classes}, tmp)
    tmp.replace(cached)
    return data


def _extract(archive: Path) -> Path:
    digest = hashlib.sha1(f"{archive.resolve()}:{archive.stat().st_size}".encode()).hexdigest()[:10]
    target = cache_dir() / f"{archive.name.split('.')[0]}-{digest}"
    if not (target / ".complete").is_file():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        (target / ".complete").write_text(str(archive))
    return target


def _find_tree(root: Path, split: str) -> Optional[Path]:
    for candidate in (root / split, *(p / split for p in root.iterdir() if p.is_dir())):
        if candidate.is_dir():
            return candidate
    return None


def _loader(name: str):
    def load(place: Path, split: str) -> Optional[ImageDataset]:
        for base in (place / name, place):
            if not base.is_dir():
                continue
            for sub in _PICKLE_DIRS[name]:
                if (base / sub).is_dir():
                    found = _from_pickles(base / sub, name, split)
                    if found is not None:
                        return found
            if base != place:
                tree = _find_tree(base, split)
                if tree is not None:
                    key = hashlib.sha1(str(tree.resolve()).encode()).hexdigest()[:10]
                    return _from_tree(tree, f"{name}-{split}-{key}")
                for archive in sorted(base.glob("*.tar.gz")):
                    tree = _find_tree(_extract(archive), split)
                    if tree is not None:
                        return _from_tree(tree, f"{name}-{split}-{archive.name.split('.')[0]}")
        return None
    return load


register_dataset("cifar10", LAYOUTS.format(d="cifar10", n=10))(_loader("cifar10"))
register_dataset("cifar100", LAYOUTS.format(d="cifar100", n=100))(_loader("cifar100"))
