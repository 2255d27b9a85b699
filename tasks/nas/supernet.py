"""The NAS-Bench-201 supernet with conditional norms inside the conv ops (spec section 3.2).

For an op on edge i <- j the norm has K = 5^j conditions; the condition is the mixed-radix code of
the ops sampled on node j's incoming edges, sum_m 5^m * a_{j<-m}, one code for the whole batch,
resampled at every cell forward.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .space import EDGES, MAX_NODES, OPS, build_op


class MixedEdge(nn.Module):
    def __init__(self, channels: int, make_norm: Callable[[int, int], nn.Module], source: int) -> None:
        super().__init__()
        k = len(OPS) ** source
        self.ops = nn.ModuleList(build_op(name, channels, lambda c: make_norm(c, k)) for name in OPS)

    def forward(self, x: Tensor, weights: Tensor, condition: int, hard_index: Optional[int] = None) -> Tensor:
        if hard_index is not None:
            # GDAS: only the sampled op runs. The other (zero-valued, straight-through) weights are
            # added as scalars, as in the reference, so that every alpha of the edge gets a gradient.
            others = weights.sum() - weights[hard_index]
            return self.ops[hard_index](x, condition) * weights[hard_index] + others
        return sum(w * op(x, condition) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    def __init__(self, channels: int, make_norm: Callable[[int, int], nn.Module]) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(channels, make_norm, j) for (_, j) in EDGES)

    def forward(self, x: Tensor, weights: Tensor, sampled: Tensor, hard: bool = False) -> Tensor:
        """``weights`` (6, 5) op weights; ``sampled`` (6,) op indices that set the conditions."""
        codes = [0] * MAX_NODES
        picks = sampled.tolist()
        for i in range(1, MAX_NODES):
            codes[i] = sum(len(OPS) ** m * picks[EDGES.index((i, m))] for m in range(i))
        nodes: List[Tensor] = [x]
        for i in range(1, MAX_NODES):
            total = 0
            for j in range(i):
                e = EDGES.index((i, j))
                total = total + self.edges[e](nodes[j], weights[e], codes[j], picks[e] if hard else None)
            nodes.append(total)
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's ResNet basic block (stride 2) between stages, with plain affine BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out))
        self.b = nn.Sequential(nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class SuperNet(nn.Module):
    """Stem -> N cells -> reduce -> N cells -> reduce -> N cells -> BN-ReLU -> GAP -> linear.

    ``alphas`` (6 x 5, shared by all cells) start at 1e-3 * N(0, 1).
    """

    def __init__(self, make_norm: Callable[[int, int], nn.Module], channels: int = 16, cells: int = 5,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: List[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, c * 2))
                c *= 2
            layers += [SearchCell(c, make_norm) for _ in range(cells)]
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.classifier = nn.Linear(c, num_classes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def forward(self, x: Tensor, mode: str = "darts", tau: float = 1.0, sampled: Optional[Tensor] = None) -> Tensor:
        """``mode`` 'darts' (softmax mixture, multinomial samples as conditions) or 'gdas' (hard
        Gumbel-softmax with temperature ``tau``; the sampled ops are the conditions). ``sampled``
        (6,) fixes the DARTS conditions of every cell instead of drawing them (for analyses)."""
        out = self.stem(x)
        for layer in self.layers:
            if isinstance(layer, SearchCell):
                if mode == "gdas":
                    weights = F.gumbel_softmax(self.alphas, tau=tau, hard=True)
                    sampled = weights.argmax(-1)
                    out = layer(out, weights, sampled, hard=True)
                else:
                    weights = self.alphas.softmax(-1)
                    picks = torch.multinomial(weights.detach(), 1).squeeze(1) if sampled is None else sampled
                    out = layer(out, weights, picks)
            else:
                out = layer(out)
        out = self.lastact(out)
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))

    def genotype_choices(self) -> List[int]:
        """Argmax op per edge ('none' allowed), as NAS-Bench-201's DARTS derives the genotype."""
        return self.alphas.argmax(-1).tolist()
