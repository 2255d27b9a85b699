"""Image folders for style transfer: listing, checked decoding, resizing, colour preservation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..common.data.tensors import epoch_seed

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(paths: Sequence[str]) -> List[Path]:
    """Files given directly, plus the images inside given folders (sorted); errors name the path."""
    files: List[Path] = []
    for item in paths:
        p = Path(item).expanduser()
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"no image file or folder at {p}")
    if not files:
        raise ValueError(f"no images ({', '.join(EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return files


def read_image(path: Path, min_size: int = 32) -> Image.Image:
    """Open an image as RGB (grayscale and palette images are converted); unreadable or tiny ones
    are rejected with the file name."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except Image.DecompressionBombError as error:
        raise ValueError(f"refusing image {path}: {error} (a decompression bomb, or a genuinely huge "
                         "image: downscale it first)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    if min(rgb.size) < min_size:
        raise ValueError(f"image {path} is {rgb.size[0]}x{rgb.size[1]} px; at least {min_size} px a side is needed")
    return rgb


def to_tensor(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def load_resized(files: Sequence[Path], size: int, min_size: int = 32) -> Tensor:
    """uint8 (N, 3, size, size): each image resized to a square (aspect not kept, as the reference)."""
    return torch.stack([to_tensor(read_image(f, min_size).resize((size, size), Image.BILINEAR)) for f in files])


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    if size <= 0:
        return img
    w, h = img.size
    scale = size / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


def coral(source: Tensor, target: Tensor) -> Tensor:
    """Match the colour mean and covariance of ``source`` (3, H, W) to ``target`` (3, H', W')."""
    def stats(x):
        flat = x.reshape(3, -1)
        mean = flat.mean(1, keepdim=True)
        cov = torch.cov(flat) + 1e-5 * torch.eye(3)
        return flat - mean, mean, cov

    def sqrtm(m, inverse=False):
        vals, vecs = torch.linalg.eigh(m)
        vals = vals.clamp_min(1e-8).pow(-0.5 if inverse else 0.5)
        return vecs @ torch.diag(vals) @ vecs.T
    centred, _, cov_s = stats(source.double())
    _, mean_t, cov_t = stats(target.double())
    out = sqrtm(cov_t) @ sqrtm(cov_s, inverse=True) @ centred + mean_t
    return out.reshape(source.shape).clamp(0, 1).to(source.dtype)


class ImageStream:
    """Mini-batches of images read from disk when needed (COCO / WikiArt do not fit in memory).

    Each epoch visits the files in a permutation seeded by ``epoch_seed(seed, stream, epoch, order)``
    (its legacy stride 1_000_003 is this stream's scheme before ``data.order``); an image is
    decoded and resized to ``size`` x ``size`` when its batch is asked for (``workers`` threads decode
    one batch in parallel; PIL releases the GIL). ``state_dict()`` is the (epoch, position) pair, so a
    resumed run reads the same files in the same order. Returns ``(uint8 (n, 3, size, size),)`` like
    :class:`~tasks.common.data.TensorBatches`.
    """

    def __init__(self, files: Sequence[Path], batch_size: int, seed: int, size: int, min_size: int = 32,
                 workers: int = 0, stream: int = 0, order: str = "independent") -> None:
        if not files:
            raise ValueError("ImageStream needs at least one file")
        epoch_seed(seed, stream, 0, order)   # an unknown order fails here
        self.files, self.batch_size, self.seed, self.stream, self.order = list(files), batch_size, seed, stream, order
        self.size, self.min_size, self.workers = size, min_size, workers
        self.epoch, self.position = 0, 0
        self.batches_per_epoch = -(-len(self.files) // batch_size)
        self._order: tuple = (-1, None)
        self._pool = None

    def _load(self, path: Path) -> Tensor:
        return to_tensor(read_image(path, self.min_size).resize((self.size, self.size), Image.BILINEAR))

    def load(self, paths: Sequence[Path]) -> Tensor:
        """The given files decoded and resized, in order."""
        if self.workers > 0:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(self.workers)
            return torch.stack(list(self._pool.map(self._load, paths)))
        return torch.stack([self._load(p) for p in paths])

    def __iter__(self):
        return self

    def __next__(self):
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order[0] != self.epoch:
            seed = epoch_seed(self.seed, self.stream, self.epoch, self.order, legacy_stride=1_000_003)
            generator = torch.Generator().manual_seed(seed)
            self._order = (self.epoch, torch.randperm(len(self.files), generator=generator).tolist())
        index = self._order[1][self.position * self.batch_size:(self.position + 1) * self.batch_size]
        self.position += 1
        return (self.load([self.files[i] for i in index]),)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
