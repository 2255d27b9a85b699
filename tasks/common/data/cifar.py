"""CIFAR-10 / CIFAR-100 from torchvision's pickles, a class-folder tree, or a .tar.gz of that tree."""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from ..cache import file_fingerprint, load_entry, save_entry, tree_fingerprint
from .paths import DataError, cache_dir
from .registry import ImageDataset, register_dataset
from .safe_pickle import load_data_pickle

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
    for f in files + [meta]:
        try:
            entry = load_data_pickle(folder / f, "bytes")   # admits only what CIFAR's format holds
            if f == meta:
                classes = [c.decode() if isinstance(c, bytes) else c for c in entry[key.encode()]]
            else:
                images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(entry[label_key])
        except DataError:
            raise
        except Exception as error:  # truncated pickle, wrong file: name it instead of a traceback
            raise DataError(f"cannot read {folder / f} ({type(error).__name__}: {str(error)[:120]}); the "
                            "file is truncated or not a CIFAR pickle. Replace it with a fresh copy") from None
    return ImageDataset(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long),
                        classes, str(folder))


def _decode(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as error:  # PIL raises several types for truncated or foreign files
        raise DataError(f"cannot decode image {file} ({type(error).__name__}: {str(error)[:120]}); "
                        "replace or delete that file") from None


def _from_tree(split_dir: Path, cache_key: str, content_key: Optional[str] = None) -> Optional[ImageDataset]:
    """The images of a class-folder tree, decoded once and cached. ``content_key``: the tree is one we
    extracted from an archive, whose content key names it, so a cached copy is found without listing
    and stating its files (60 000 for CIFAR-10: seconds per run)."""
    if not split_dir.is_dir():
        return None
    if content_key is not None:
        blob = load_entry(cache_dir() / f"{cache_key}-{content_key}.pt")
        if blob is not None:
            return ImageDataset(blob["images"], blob["labels"], blob["classes"], str(split_dir))
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        return None
    files = [(index, f) for index, cls in enumerate(classes) for f in sorted((split_dir / cls).iterdir())
             if f.suffix.lower() in (".png", ".jpg", ".jpeg")]
    cached = cache_dir() / f"{cache_key}-{content_key or tree_fingerprint(split_dir, [f for _, f in files])}.pt"
    blob = load_entry(cached) if content_key is None else None
    if blob is not None:
        return ImageDataset(blob["images"], blob["labels"], blob["classes"], str(split_dir))
    images = [_decode(f) for _, f in files]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"{split_dir}: images of different sizes {sorted(shapes)[:3]}; CIFAR images are 32x32")
    data = ImageDataset(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor([i for i, _ in files], dtype=torch.long), classes, str(split_dir))
    save_entry(cached, {"images": data.images, "labels": data.labels, "classes": classes})
    return data


def _extract(archive: Path) -> Path:
    """Extract once into the cache, keyed by the archive's content (not its name).

    Extraction goes to a folder of this process and is renamed into place when complete, so runs
    started together (a sweep's parallel arms) never see, or delete, each other's partial trees.
    """
    target = cache_dir() / f"{archive.name.split('.')[0]}-{file_fingerprint(archive)}"
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot extract {archive} ({type(error).__name__}: {str(error)[:120]}); the archive "
                        "is truncated or not a .tar.gz. Replace it with a complete copy") from None
    (partial / ".complete").write_text(str(archive))
    try:
        os.rename(partial, target)
    except OSError:                             # the target exists: another run's copy, or an old partial
        if not (target / ".complete").is_file():    # only an older version of this code left these
            shutil.rmtree(target, ignore_errors=True)
            os.rename(partial, target)
    shutil.rmtree(partial, ignore_errors=True)
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
                    return _from_tree(tree, f"{name}-{split}")
                for archive in sorted(base.glob("*.tar.gz")):
                    extracted = _extract(archive)
                    tree = _find_tree(extracted, split)
                    if tree is not None:   # the extraction's name holds the archive's content key
                        return _from_tree(tree, f"{name}-{split}", content_key=extracted.name)
        return None
    return load


register_dataset("cifar10", LAYOUTS.format(d="cifar10", n=10))(_loader("cifar10"))
register_dataset("cifar100", LAYOUTS.format(d="cifar100", n=100))(_loader("cifar100"))
