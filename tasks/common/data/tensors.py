"""In-memory batches with resumable order, and augmentation on tensors (no per-image Python)."""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np
import torch
from torch import Tensor


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding and random horizontal flip of a batch (N, C, H, W), vectorised."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cols = dx[:, None] + torch.arange(w)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :].expand(n, c, h, w)
    return torch.gather(torch.gather(padded, 2, rows), 3, cols)


ORDERS = ("independent", "legacy")


def epoch_seed(seed: int, stream: int, epoch: int, order: str = "independent", legacy_stride: int = 1) -> int:
    """The seed of one epoch's permutation of one iterator (``stream``) of a run seeded ``seed``.

    ``independent``: a SeedSequence of (seed, stream, epoch): no two (seed, stream, epoch) share an
    order. ``legacy``: ``(seed + stream) * legacy_stride + epoch``, the scheme of runs before it
    (TensorBatches: stride 1, so seed s's epoch e + 1 was seed s + 1's epoch e, and a run's second
    iterator replayed its first one epoch ahead; the NST disk stream: stride 1_000_003); kept so that
    the committed results' commands reproduce their numbers (``data.order=legacy``).
    """
    if order == "legacy":
        return (int(seed) + int(stream)) * int(legacy_stride) + int(epoch)
    if order != "independent":
        raise ValueError(f"data order '{order}' is not one of {ORDERS}")
    return int(np.random.SeedSequence([int(seed), int(stream), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


class TensorBatches:
    """Shuffled mini-batches over in-memory tensors, epoch after epoch, with a saveable position.

    The permutation of each epoch comes from a private generator seeded by ``epoch_seed(seed, stream,
    epoch, order)``, so the order depends only on (seed, stream, epoch, position) and resumes exactly
    from ``state_dict()``; a run's iterators take different ``stream`` numbers.
    With ``world_size > 1`` each rank takes its own strided share (a distributed sampler).
    """

    def __init__(self, tensors: Tuple[Tensor, ...], batch_size: int, seed: int, drop_last: bool = True,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, stream: int = 0,
                 order: str = "independent") -> None:
        epoch_seed(seed, stream, 0, order)   # an unknown order fails here, not at the first batch
        self.tensors, self.batch_size, self.seed, self.stream, self.order = tensors, batch_size, seed, stream, order
        self.drop_last, self.shuffle, self.rank, self.world_size = drop_last, shuffle, rank, world_size
        self.epoch, self.position = 0, 0
        n = len(tensors[0]) // world_size
        self.batches_per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"batch size {batch_size} is larger than the {n} examples per rank")

    def _order(self) -> Tensor:
        n = len(self.tensors[0])
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.stream, self.epoch, self.order))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return order[self.rank: n - n % self.world_size: self.world_size]

    def __iter__(self) -> Iterator[Tuple[Tensor, ...]]:
        return self

    def __next__(self) -> Tuple[Tensor, ...]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self.position == 0 or not hasattr(self, "_cached") or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._order())
        idx = self._cached[1][self.position * self.batch_size:(self.position + 1) * self.batch_size]
        self.position += 1
        return tuple(t[idx] for t in self.tensors)

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
