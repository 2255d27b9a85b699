"""Residual blocks of SNGAN / AutoGAN (spec sections 2.2-2.3), norms from the registry."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

NormLayer = Callable[[int], nn.Module]


class _Upsample2xNearest(torch.autograd.Function):
    """Nearest x2 upsampling of an NCHW tensor: forward by two repeat_interleaves, backward by ATen's
    own kernel. On CPU, F.interpolate's NCHW forward goes through channels_last copies and took 4-6x
    as long (scripts/bench_step.py --profile, cpu-tier SNGAN step); the result is identical."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.input_size = list(x.shape)
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        h, w = ctx.input_size[-2:]
        return torch.ops.aten.upsample_nearest2d_backward(grad.contiguous(), [2 * h, 2 * w], ctx.input_size, 2.0, 2.0)


def upsample2x(x: Tensor) -> Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")``, without the CPU detour."""
    if x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous() and not torch.compiler.is_compiling():
        return _Upsample2xNearest.apply(x)
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GenBlock(nn.Module):
    """CN1(x, y) -> ReLU -> up x2 -> conv3 -> CN2(., y) -> ReLU -> conv3, plus up x2 -> conv1x1."""

    def __init__(self, c_in: int, c_out: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.b1, self.c1 = norm_layer(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.b2, self.c2 = norm_layer(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.c_sc = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, y) -> Tensor:
        h = upsample2x(F.relu(self.b1(x, y)))
        h = self.c2(F.relu(self.b2(self.c1(h), y)))
        return h + self.c_sc(upsample2x(x))


class OptimizedDisBlock(nn.Module):
    """conv3 -> ReLU -> conv3 -> avgpool2, plus avgpool2 -> conv1x1 (the first D block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.c_sc = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DisBlock(nn.Module):
    """ReLU -> conv3 -> ReLU -> conv3 [-> avgpool2], plus a learnable 1x1 shortcut when needed.

    The hidden width (conv1's output) is the input width unless given, as the official SNGAN
    ``DisBlock`` (it matters where a block widens: SNGAN-128's blocks 2-4)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, hidden: Optional[int] = None) -> None:
        super().__init__()
        self.downsample = downsample
        hidden = c_in if hidden is None else hidden
        self.c1, self.c2 = nn.Conv2d(c_in, hidden, 3, 1, 1), nn.Conv2d(hidden, c_out, 3, 1, 1)
        self.c_sc = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or downsample) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = x
        if self.c_sc is not None:
            sc = self.c_sc(x)
            if self.downsample:
                sc = F.avg_pool2d(sc, 2)
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + sc


class AutoGANCell(nn.Module):
    """AutoGAN-a cell with a norm in it (the paper's change): see spec section 2.3.

    The skip additions go *in place* into the tensor returned as the skip output, as upstream does,
    so a later cell's skip input already contains the earlier skips.
    """

    def __init__(self, c_in: int, c_out: int, up_mode: str, num_skip_in: int, short_cut: bool,
                 norm_layer: NormLayer) -> None:
        super().__init__()
        self.up_mode = up_mode
        self.n1, self.c1 = norm_layer(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.n2, self.c2 = norm_layer(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip_in_ops = nn.ModuleList(nn.Conv2d(c_out, c_out, 1) for _ in range(num_skip_in))
        self.c_sc = nn.Conv2d(c_in, c_out, 1) if short_cut else None

    def _up(self, x: Tensor, size=None) -> Tensor:
        kwargs = {"align_corners": False} if self.up_mode == "bilinear" else {}
        if size is None and self.up_mode == "nearest":
            return upsample2x(x)
        if size is None:
            return F.interpolate(x, scale_factor=2, mode=self.up_mode, **kwargs)
        return F.interpolate(x, size=size, mode=self.up_mode, **kwargs)

    def forward(self, x: Tensor, y, skips: Optional[Sequence[Tensor]] = None):
        h = self.c1(self._up(F.relu(self.n1(x, y))))
        for skip, conv in zip(skips or (), self.skip_in_ops):
            h += conv(self._up(skip, size=h.shape[-2:]))
        out = self.c2(F.relu(self.n2(h, y)))
        if self.c_sc is not None:
            out = out + self.c_sc(self._up(x))
        return h, out
