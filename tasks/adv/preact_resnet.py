"""Pre-activation ResNet (kuangliu style) with its norm from the registry and a branch flag.

As the paper's adversarial-training model: ImageNet mean/std normalisation inside the model (inputs
in [0, 1]), no BN after conv1, no final BN before pooling, and the branch (0 clean, 1 adversarial)
passed to every norm layer.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norm1 = norm_layer(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.norm2 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: Tensor, branch) -> Tensor:
        out = F.relu(self.norm1(x, branch))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out, branch)))
        return out + shortcut


class PreActResNet(nn.Module):
    """PreAct-ResNet; ``blocks=(2, 2, 2, 2), width=64`` is the paper's PreAct-ResNet-18."""

    def __init__(self, norm_layer: Callable[[int], nn.Module], blocks: Sequence[int] = (2, 2, 2, 2),
                 width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        layers, in_planes = [], width
        for stage, count in enumerate(blocks):
            planes = width * 2 ** stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride, norm_layer))
                in_planes = planes
        self.layers = nn.ModuleList(layers)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor, branch=0) -> Tensor:
        """``x`` in [0, 1]; ``branch`` 0 (clean) or 1 (adversarial), ignored by plain BN."""
        out = self.conv1((x - self.mean) / self.std)
        for layer in self.layers:
            out = layer(out, branch)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # 4x4 average pool at 32 px input
        return self.linear(out)
