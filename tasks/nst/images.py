"""Image folders for style transfer: listing, checked decoding, resizing, colour preservation."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

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
