"""Second-order DARTS: the architecture gradient through one unrolled weight step (Liu et al.).

dalpha = grad_alpha L_val(w', alpha) - lr * H v, with w' = w - lr (momentum + grad_w L_train + wd w),
v = grad_w' L_val(w', alpha) and H v approximated by central finite differences of grad_alpha L_train
at w +- r v / |v|, as NAS-Bench-201's DARTS-V2.
"""
from __future__ import annotations

import copy
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

from .supernet import SuperNet


def _finite_difference(model: SuperNet, vector: List[Tensor], x: Tensor, y: Tensor, mode: str, r: float = 1e-2):
    weights = model.weight_parameters()
    scale = r / torch.cat([v.flatten() for v in vector]).norm()
    grads = []
    with torch.no_grad():
        for p, v in zip(weights, vector):
            p.add_(v, alpha=scale)
    for sign in (1.0, -1.0):
        loss = F.cross_entropy(model(x, mode), y)
        grads.append(torch.autograd.grad(loss, [model.alphas])[0])
        with torch.no_grad():
            for p, v in zip(weights, vector):
                p.add_(v, alpha=-2 * scale if sign > 0 else scale)
    return (grads[0] - grads[1]) / (2 * scale)


def unrolled_alpha_gradient(model: SuperNet, w_opt: torch.optim.SGD, x_train: Tensor, y_train: Tensor,
                            x_val: Tensor, y_val: Tensor, mode: str = "darts") -> Tensor:
    """Set ``model.alphas.grad`` to the second-order DARTS gradient; returns the validation loss."""
    group = w_opt.param_groups[0]
    lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
    weights = model.weight_parameters()
    loss = F.cross_entropy(model(x_train, mode), y_train)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    unrolled = copy.deepcopy(model)
    with torch.no_grad():
        for p, q, g in zip(weights, unrolled.weight_parameters(), grads):
            buf = w_opt.state.get(p, {}).get("momentum_buffer")
            step = (g if g is not None else torch.zeros_like(p)) + wd * p
            if buf is not None:
                step = step + momentum * buf
            q.copy_(p - lr * step)
    unrolled.zero_grad(set_to_none=True)
    val_loss = F.cross_entropy(unrolled(x_val, mode), y_val)
    val_loss.backward()
    vector = [q.grad if q.grad is not None else torch.zeros_like(q) for q in unrolled.weight_parameters()]
    implicit = _finite_difference(model, vector, x_train, y_train, mode)
    model.alphas.grad = unrolled.alphas.grad - lr * implicit
    return val_loss.detach()
