"""ImageNet-style class folders with a class subset: the SNGAN-128 'dogs and cats' set.

Classes 151..293 of ImageNet-1k (wnid folders in sorted order, as torchvision's ImageFolder and the
official class index), remapped to 0..142; each image centre-cropped to a square on its short side
and resized to 128 px, decoded once into a cached uint8 tensor.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .paths import cache_dir
from ..cache import load_entry, save_entry
from .registry import ImageDataset, register_dataset

FIRST, LAST, SIZE = 151, 293, 128
LAYOUT = """  imagenet/train/<wnid>/*.JPEG (and imagenet/val/<wnid>/*.JPEG): the 1000 ILSVRC-2012 class folders
  (classes 151..293 in sorted wnid order are used)"""


def centre_crop_resize(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # bilinear, as the official loader (torchvision's Resize on a PIL image: PIL's antialiased bilinear)
    return np.asarray(img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))


@register_dataset("imagenet-dogs-cats", LAYOUT)
def load_dogs_and_cats(place: Path, split: str) -> Optional[ImageDataset]:
    root = place / "imagenet" / ("train" if split == "train" else "val")
    if not root.is_dir():
        return None
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(wnids) != 1000:
        raise ValueError(f"{root} has {len(wnids)} class folders; the dogs-and-cats subset needs all 1000 "
                         "ILSVRC-2012 classes to find indices 151..293")
    chosen = wnids[FIRST:LAST + 1]
    key = hashlib.sha1(f"{root.resolve()}:{SIZE}:bilinear".encode()).hexdigest()[:10]
    cached = cache_dir() / f"imagenet-dogs-cats-{split}-{key}.pt"
    blob = load_entry(cached)
    if blob is not None:
        return ImageDataset(blob["images"], blob["labels"], chosen, str(root))
    images, labels = [], []
    for index, wnid in enumerate(chosen):
        for file in sorted((root / wnid).iterdir()):
            with Image.open(file) as img:
                images.append(centre_crop_resize(img.convert("RGB"), SIZE))
            labels.append(index)
    data = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    target = torch.tensor(labels, dtype=torch.long)
    save_entry(cached, {"images": data, "labels": target})
    return ImageDataset(data, target, chosen, str(root))
