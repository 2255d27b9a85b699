"""L-inf PGD in [0, 1] pixel space, and a branch-select wrapper for external attack libraries."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BRANCHES = {"clean": 0, "adv": 1, "adversarial": 1}


def check_eps(eps: float, name: str = "eps") -> float:
    """Attack radii are in [0, 1] pixel units; a value like 8 (pixels out of 255) is refused."""
    if not 0 <= eps <= 1:
        raise ValueError(f"{name}={eps} looks like a pixel value; radii are in [0, 1] units "
                         f"(8/255 = {8 / 255:.5f}), so write {eps}/255")
    return eps


def branch_index(branch) -> int:
    """0/1 or 'clean'/'adv'; anything else is an error naming the choices."""
    if isinstance(branch, str):
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch '{branch}'; use 'clean' (0) or 'adv' (1)")
        return BRANCHES[branch]
    if branch not in (0, 1):
        raise ValueError(f"unknown branch {branch!r}; use 0 / 'clean' or 1 / 'adv'")
    return int(branch)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int, branch=1,
        random_start: bool = True, generator: Optional[torch.Generator] = None) -> Tensor:
    """PGD-``steps`` against ``model(x, branch)`` in the mode the model is in (left unchanged).

    Random start x + U(-eps, eps), not clamped before the first step (as the reference code); each
    step ascends the sign of the gradient, projects onto the eps-ball and clamps to [0, 1].
    """
    check_eps(eps), check_eps(step_size, "step_size")
    branch = branch_index(branch)
    x = x.detach()
    delta = torch.zeros_like(x)
    if random_start:
        device = generator.device if generator is not None else x.device
        noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        delta = (noise * 2 - 1) * eps
    x_adv = x + delta
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x_adv, branch), y)
            grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0, 1)
    return x_adv.detach()


class BranchSelect(nn.Module):
    """``forward(x) -> logits`` through one branch, for torchattacks / AutoAttack.

    The wrapper has no mode of its own: ``training`` is the wrapped model's, so an attack library
    that saves and restores the mode (torchattacks does) sees and restores the model's real mode.
    Put the model in eval mode for evaluation, as with any model.
    """

    def __init__(self, model: nn.Module, branch="adv") -> None:
        super().__init__()
        self.model, self.branch = model, branch_index(branch)

    @property
    def training(self) -> bool:  # type: ignore[override]
        model = self._modules.get("model") if "_modules" in self.__dict__ else None
        return model.training if model is not None else False

    @training.setter
    def training(self, mode: bool) -> None:
        pass   # nn.Module.train() sets it, then propagates to the model, which holds the real flag

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, self.branch)
