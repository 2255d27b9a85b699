"""The NAS-Bench-201 search space: candidate ops, cell topology, genotype <-> arch_str."""
from __future__ import annotations

import re
from typing import Callable, List, Sequence, Tuple

from torch import Tensor, nn

OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
MAX_NODES = 4
# Edges i <- j for 0 <= j < i < MAX_NODES, in NAS-Bench-201's order (by destination, then source).
EDGES: Tuple[Tuple[int, int], ...] = tuple((i, j) for i in range(1, MAX_NODES) for j in range(i))
Genotype = Tuple[Tuple[Tuple[str, int], ...], ...]   # per node i: ((op, j) for j < i)


class Zero(nn.Module):
    def forward(self, x: Tensor, condition=None) -> Tensor:
        return x.mul(0.0)


class Identity(nn.Module):
    def forward(self, x: Tensor, condition=None) -> Tensor:
        return x


class AvgPool(nn.Module):
    """3x3 average pool, stride 1, count_include_pad=False (C_in == C_out inside cells: no norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x: Tensor, condition=None) -> Tensor:
        return self.pool(x)


class ReLUConvNorm(nn.Module):
    """ReLU -> conv (no bias) -> norm; the norm gets the edge's condition."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.norm = norm

    def forward(self, x: Tensor, condition=None) -> Tensor:
        return self.norm(self.conv(x.relu()), condition)


def build_op(name: str, channels: int, make_norm: Callable[[int], nn.Module]) -> nn.Module:
    """One candidate op for an edge with ``channels`` in and out, stride 1."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name == "avg_pool_3x3":
        return AvgPool()
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        return ReLUConvNorm(channels, channels, int(name[-1]), 1, make_norm(channels))
    raise ValueError(f"unknown op '{name}'; the NAS-Bench-201 ops are {', '.join(OPS)}")


def genotype_to_arch_str(genotype: Genotype) -> str:
    """((('op', 0),), (('op', 0), ('op', 1)), ...) -> '|op~0|+|op~0|op~1|+|...|'."""
    return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in genotype)


_NODE = re.compile(r"^\|(?:[a-z0-9_]+~\d+\|)+$")


def arch_str_to_genotype(arch: str) -> Genotype:
    """Parse and validate a NAS-Bench-201 architecture string."""
    nodes = arch.split("+")
    if len(nodes) != MAX_NODES - 1 or not all(_NODE.match(n) for n in nodes):
        raise ValueError(f"malformed arch_str '{arch}'; expected "
                         "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops from " + ", ".join(OPS))
    genotype = []
    for i, node in enumerate(nodes, start=1):
        entries = []
        for j, item in enumerate(node.strip("|").split("|")):
            op, src = item.rsplit("~", 1)
            if op not in OPS:
                raise ValueError(f"unknown op '{op}' in arch_str '{arch}'; ops are {', '.join(OPS)}")
            if int(src) != j:
                raise ValueError(f"arch_str '{arch}': node {i} lists input {src} where {j} was expected")
            entries.append((op, j))
        if len(entries) != i:
            raise ValueError(f"arch_str '{arch}': node {i} needs {i} inputs, has {len(entries)}")
        genotype.append(tuple(entries))
    return tuple(genotype)


def genotype_from_choices(choices: Sequence[int]) -> Genotype:
    """Op indices per edge (in EDGES order) -> genotype."""
    genotype: List[Tuple[Tuple[str, int], ...]] = []
    for i in range(1, MAX_NODES):
        genotype.append(tuple((OPS[choices[EDGES.index((i, j))]], j) for j in range(i)))
    return tuple(genotype)


def classify_cell(arch: str) -> str:
    """``disconnected`` (no path of non-``none`` edges from the input node to the output node: the cell
    outputs zeros), ``skip-heavy`` (>= 3 of its 6 edges ``skip_connect``, the DARTS collapse), else
    ``conv-rich`` (>= 3 convolutions) or ``mixed``."""
    genotype = arch_str_to_genotype(arch)
    reach = {0}
    for node, inputs in enumerate(genotype, start=1):
        if any(op != "none" and j in reach for op, j in inputs):
            reach.add(node)
    ops = [op for inputs in genotype for op, _ in inputs]
    if MAX_NODES - 1 not in reach:
        return "disconnected"
    if ops.count("skip_connect") >= 3:
        return "skip-heavy"
    return "conv-rich" if sum(op.startswith("nor_conv") for op in ops) >= 3 else "mixed"


def edge_margins(probs: Sequence[Sequence[float]]) -> list:
    """Per edge: softmax(alpha) of the winning op minus the runner-up's (how decisive the argmax is)."""
    out = []
    for row in probs:
        top = sorted(row, reverse=True)
        out.append(round(float(top[0] - top[1]), 5))
    return out
