"""Why SaBN works: per-condition gradient balance and direction diversity (paper section 7).

For every conditional norm layer and condition k, the gradient of the independent affine
v_k = [dL/d gamma_k ; dL/d beta_k] (and of the effective composed affine a_k = gamma_k gamma_sa,
b_k = gamma_k beta_sa + beta_k). Per layer: the spread of ||v_k|| across conditions (coefficient of
variation, max/min) and the pairwise cosine similarity of the v_k.

    monitor = GradientMonitor(generator, every=50)
    loss.backward()
    monitor.observe(step)          # before optimizer.step(); returns the summary on recording steps
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from .batchnorm import ConditionalBatchNorm2d


@dataclass
class LayerGradients:
    """Accumulated per-condition gradients of one layer: (K, 2C) independent and effective."""

    independent: Tensor
    effective: Tensor
    steps: int = 0


def condition_gradients(layer: ConditionalBatchNorm2d) -> Optional[Dict[str, Tensor]]:
    """(K, 2C) gradients of the independent affine and of the effective affine, from ``.grad``."""
    if layer.condition_weight is None or layer.condition_weight.grad is None:
        return None
    gw, gb = layer.condition_weight.grad.detach(), layer.condition_bias.grad.detach()
    independent = torch.cat([gw, gb], dim=1)
    if layer.weight is None:   # CCBN: the independent affine is the effective one
        return {"independent": independent, "effective": independent}
    # dL/dgamma_k = gamma_sa dL/da_k + beta_sa dL/db_k and dL/dbeta_k = dL/db_k.
    shared_w, shared_b = layer.weight.detach(), layer.bias.detach()
    grad_a = (gw - shared_b * gb) / shared_w
    return {"independent": independent, "effective": torch.cat([grad_a, gb], dim=1)}


def spread(vectors: Tensor) -> Dict[str, object]:
    """Norm spread and direction diversity of (K, D) vectors; all-zero rows count as absent."""
    norms = vectors.norm(dim=1)
    present = norms > 0
    out: Dict[str, object] = {"norms": norms.tolist(), "present": int(present.sum())}
    if present.sum() < 2:
        out.update(cv=None, max_min=None, cos_mean=None, cosine=[])   # undefined for < 2 conditions
        return out
    kept = norms[present]
    unit = vectors[present] / kept[:, None]
    cosine = unit @ unit.T
    k = len(kept)
    off = cosine[~torch.eye(k, dtype=torch.bool, device=cosine.device)]
    out.update(cv=float(kept.std(correction=0) / kept.mean()), max_min=float(kept.max() / kept.min()),
               cos_mean=float(off.mean()), cosine=[[round(float(v), 5) for v in row] for row in cosine])
    return out


class GradientMonitor:
    """Records per-condition gradient statistics of every conditional layer of ``module``.

    ``observe(step)`` after each backward adds the current gradients to a running sum (conditions
    that occur in separate steps, as in the NAS split layers, are covered over ``window`` steps);
    on steps where ``(step + 1) % every == 0`` it returns and resets the summary:
    ``{layer: {"independent": spread(...), "effective": spread(...), "steps": n}}``.
    """

    def __init__(self, module: nn.Module, every: int = 50, window: int = 1) -> None:
        if every < 1 or window < 1 or window > every:
            raise ValueError(f"GradientMonitor: need 1 <= window <= every, got every={every} window={window}")
        self.every, self.window = every, window
        self.layers = [(name, m) for name, m in module.named_modules()
                       if isinstance(m, ConditionalBatchNorm2d) and m.condition_weight is not None
                       and m.num_conditions > 1]
        self.sums: Dict[str, LayerGradients] = {}

    def observe(self, step: int) -> Optional[Dict[str, Dict[str, object]]]:
        phase = (step + 1) % self.every
        if phase != 0 and phase <= self.every - self.window:
            return None
        for name, layer in self.layers:
            grads = condition_gradients(layer)
            if grads is None:
                continue
            entry = self.sums.get(name)
            if entry is None:
                entry = self.sums[name] = LayerGradients(torch.zeros_like(grads["independent"]),
                                                         torch.zeros_like(grads["effective"]))
            entry.independent += grads["independent"]
            entry.effective += grads["effective"]
            entry.steps += 1
        if phase != 0:
            return None
        summary = {name: {"independent": spread(e.independent), "effective": spread(e.effective), "steps": e.steps}
                   for name, e in self.sums.items()}
        self.sums = {}
        return summary


def scalars(summary: Dict[str, Dict[str, object]], prefix: str = "analysis/") -> Dict[str, float]:
    """Flat scalars of a summary for the metrics log (cv, max/min, mean cosine per layer)."""
    out: Dict[str, float] = {}
    for layer, entry in summary.items():
        for key in ("cv", "max_min", "cos_mean"):
            if entry["independent"][key] is not None:
                out[f"{prefix}{layer}/{key}"] = entry["independent"][key]
    return out



def sandwich_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose CCBN layers became SaBN layers computing the same function: shared
    affine exactly (1, 0), the same independent affines and running statistics. From identical
    states, the two models then differ only in the sandwich coupling of their updates."""
    import copy

    from .batchnorm import SandwichBatchNorm2d
    twin = copy.deepcopy(module)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if not (isinstance(child, ConditionalBatchNorm2d) and child.weight is None
                    and child.condition_weight is not None and not child.split_statistics):
                continue
            new = SandwichBatchNorm2d(child.num_features, child.num_conditions, eps=child.eps, momentum=child.momentum,
                                      track_running_stats=child.track_running_stats, fused=child.fused)
            new = new.to(device=child.condition_weight.device, dtype=child.condition_weight.dtype)
            with torch.no_grad():
                new.weight.fill_(1.0)
                new.bias.zero_()
                new.condition_weight.copy_(child.condition_weight)
                new.condition_bias.copy_(child.condition_bias)
                if child.track_running_stats:
                    for key in ("running_mean", "running_var", "num_batches_tracked"):
                        getattr(new, key).copy_(getattr(child, key))
            new.train(child.training)
            setattr(parent, name, new)
    return twin


def composed_affines(module: nn.Module) -> Dict[str, Tensor]:
    """Per conditional layer, the (K, 2C) effective affine [a_k ; b_k] with a_k = gamma_k gamma_sa and
    b_k = gamma_k beta_sa + beta_k (CCBN: gamma_k, beta_k)."""
    out = {}
    for name, layer in module.named_modules():
        if isinstance(layer, ConditionalBatchNorm2d) and layer.condition_weight is not None:
            gw, gb = layer.condition_weight.detach(), layer.condition_bias.detach()
            if layer.weight is not None:
                gw, gb = gw * layer.weight.detach(), torch.addcmul(gb, gw, layer.bias.detach())
            out[name] = torch.cat([gw, gb], dim=1).clone()
    return out


def update_spread(before: Dict[str, Tensor], after: Dict[str, Tensor]) -> Dict[str, Dict[str, object]]:
    """Per layer, :func:`spread` of the per-condition updates of the effective affine, with the
    lowest possible mean pairwise cosine of K vectors, -1/(K-1)."""
    out = {}
    for name, old in before.items():
        summary = spread(after[name] - old)
        summary["cos_floor"] = -1.0 / (old.shape[0] - 1) if old.shape[0] > 1 else None
        out[name] = summary
    return out
