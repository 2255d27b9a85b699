"""Residual generators and projection discriminators: SNGAN (32 px CIFAR-10, 128 px ImageNet subset),
AutoGAN-a, and BigGAN-32 (the same residual layout with BigGAN's init and spectral norm in G too)."""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
from torch import Tensor, nn

from sabn import ConditionalBatchNorm2d

from ...common.seeding import own_stream
from .blocks import AutoGANCell, DisBlock, GenBlock, NormLayer, OptimizedDisBlock
from .spectral import apply_spectral_norm


def init_weights(module: nn.Module) -> None:
    """The official init: Xavier-uniform conv weights; every '*BatchNorm2d' weight ~ N(1, 0.02), bias 0.

    Apply before spectral norm is added (afterwards, ``weight`` is recomputed from ``original``).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight, 1.0)
        elif "BatchNorm2d" in type(m).__name__ and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, 0.02, generator=own_stream(m))
            nn.init.zeros_(m.bias)


def init_n02(module: nn.Module) -> None:
    """BigGAN-PyTorch's ``N02`` init: Conv2d / Linear / Embedding weights ~ N(0, 0.02), biases default.

    BigGAN's ccbn scales by ``1 + gain(y)`` with ``gain`` an N02 embedding, which is a conditional gamma
    ~ N(1, 0.02) (the layer's own default, and the same function and Adam trajectory); its ``bias(y)``
    embedding is N02 too, so the conditional betas are drawn here. Plain BatchNorm2d keeps 1 / 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, ConditionalBatchNorm2d) and m.condition_bias is not None:
            nn.init.normal_(m.condition_bias, 0.0, 0.02, generator=own_stream(m))


INITS: Dict[str, Callable[[nn.Module], None]] = {"xavier": init_weights, "n02": init_n02}


class _ToRGB(nn.Sequential):
    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 3, 3, 1, 1), nn.Tanh())


class SNGANGenerator(nn.Module):
    """z (N, z_dim), y (N,) -> images in [-1, 1]. ``channels`` lists block widths (first = bottom)."""

    def __init__(self, norm_layer: NormLayer, channels: Sequence[int] = (256, 256, 256, 256),
                 z_dim: int = 128, bottom: int = 4, init: str = "xavier", spectral: bool = False,
                 sn_update: str = "torch") -> None:
        super().__init__()
        self.z_dim, self.bottom, self.ch0 = z_dim, bottom, channels[0]
        self.l1 = nn.Linear(z_dim, bottom * bottom * channels[0])
        self.blocks = nn.ModuleList(GenBlock(a, b, norm_layer) for a, b in zip(channels[:-1], channels[1:]))
        self.to_rgb = _ToRGB(channels[-1])  # plain, unconditional BN
        INITS[init](self)
        if spectral:   # BigGAN: SN on G's convs and linear, never on the norm's class tables
            apply_spectral_norm(self, (nn.Conv2d, nn.Linear), sn_update)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.l1(z).view(-1, self.ch0, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, y)
        return self.to_rgb(h)


class AutoGANGenerator(nn.Module):
    """AutoGAN 'a' topology with a norm in every cell (spec 2.3), 4 -> 32 px."""

    def __init__(self, norm_layer: NormLayer, channels: int = 256, z_dim: int = 128, bottom: int = 4) -> None:
        super().__init__()
        self.z_dim, self.bottom, self.ch = z_dim, bottom, channels
        self.l1 = nn.Linear(z_dim, bottom * bottom * channels)
        self.cell1 = AutoGANCell(channels, channels, "nearest", 0, True, norm_layer)
        self.cell2 = AutoGANCell(channels, channels, "bilinear", 1, True, norm_layer)
        self.cell3 = AutoGANCell(channels, channels, "nearest", 2, False, norm_layer)
        self.to_rgb = _ToRGB(channels)
        init_weights(self)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.l1(z).view(-1, self.ch, self.bottom, self.bottom)
        skip1, h1 = self.cell1(h, y)
        skip2, h2 = self.cell2(h1, y, (skip1,))
        _, h3 = self.cell3(h2, y, (skip1, skip2))
        return self.to_rgb(h3)


class ProjectionDiscriminator(nn.Module):
    """Spectral-norm residual D with global SUM pooling and a class-projection head.

    ``channels``: widths after each block; ``downsample``: which blocks halve the resolution.
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = (128, 128, 128, 128),
                 downsample: Sequence[bool] = (True, True, False, False), init: str = "xavier",
                 linear_bias: bool = False, sn_update: str = "torch") -> None:
        super().__init__()
        blocks = [OptimizedDisBlock(3, channels[0])]
        for a, b, down in zip(channels[:-1], channels[1:], downsample[1:]):
            blocks.append(DisBlock(a, b, down))
        self.blocks = nn.Sequential(*blocks)
        self.l5 = nn.Linear(channels[-1], 1, bias=linear_bias)
        self.l_y = nn.Embedding(num_classes, channels[-1])
        INITS[init](self)
        apply_spectral_norm(self, update=sn_update)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = torch.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.l5(h).squeeze(1) + (self.l_y(y) * h).sum(1)
