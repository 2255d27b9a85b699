"""Turn the BatchNorm2d layers of an existing model into conditional norms, and route the condition.

>>> model = convert_norms(torchvision.models.resnet18(), "sabn", num_conditions=10)
>>> with route_condition(model, labels):
...     logits = model(images)
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from .batchnorm import ConditionalBatchNorm2d
from .functional import Condition
from .registry import build_norm, get_norm_spec


def _copy_from_batchnorm(new: ConditionalBatchNorm2d, old: nn.BatchNorm2d, identity: bool) -> None:
    with torch.no_grad():
        if identity and new.condition_weight is not None:
            new.condition_weight.fill_(1.0)
            new.condition_bias.zero_()
        if old.affine:
            if new.weight is not None:
                new.weight.copy_(old.weight)
                new.bias.copy_(old.bias)
            elif new.condition_weight is not None:
                # No shared affine (CCBN, AuxBN): every condition starts as the old BN's affine.
                new.condition_weight.copy_(old.weight.expand_as(new.condition_weight))
                new.condition_bias.copy_(old.bias.expand_as(new.condition_bias))
        elif new.weight is not None:
            new.weight.fill_(1.0)
            new.bias.zero_()
        if old.track_running_stats and new.track_running_stats:
            new.running_mean.copy_(old.running_mean.expand_as(new.running_mean))
            new.running_var.copy_(old.running_var.expand_as(new.running_var))
            new.num_batches_tracked.copy_(old.num_batches_tracked.expand_as(new.num_batches_tracked))


def convert_norms(module: nn.Module, name: str, num_conditions: int, *, identity_init: bool = True,
                  **options: Any) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by norm ``name`` with K conditions.

    The old statistics and affine go into the shared part (or into every independent affine when the
    norm has no shared one). With ``identity_init`` the independent affines start at exactly (1, 0),
    so the converted model computes the same function as before; pass ``identity_init=False`` to keep
    the paper's N(1, 0.02) initialisation instead. Returns the (possibly new) module, like
    ``nn.SyncBatchNorm.convert_sync_batchnorm``.
    """
    if not issubclass(get_norm_spec(name).cls, ConditionalBatchNorm2d):
        raise ValueError(f"convert_norms: '{name}' is not a conditional batch norm; "
                         "use one of ccbn, sabn, split_sabn, auxbn, saauxbn")
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, ConditionalBatchNorm2d):
        opts = {"eps": module.eps, "momentum": module.momentum,
                "track_running_stats": module.track_running_stats, **options}
        new = build_norm(name, module.num_features, num_conditions, **opts)
        ref = module.weight if module.weight is not None else module.running_mean
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        new.train(module.training)
        _copy_from_batchnorm(new, module, identity_init)
        return new
    for child_name, child in module.named_children():
        converted = convert_norms(child, name, num_conditions, identity_init=identity_init, **options)
        if converted is not child:
            setattr(module, child_name, converted)
    return module


def conditional_layers(module: nn.Module) -> Iterator[ConditionalBatchNorm2d]:
    """Every conditional batch norm inside ``module``."""
    return (m for m in module.modules() if isinstance(m, ConditionalBatchNorm2d))


def set_condition(module: nn.Module, condition: Condition) -> None:
    """Make every conditional layer of ``module`` use ``condition`` when called without one."""
    for layer in conditional_layers(module):
        layer.routed_condition = condition


@contextlib.contextmanager
def route_condition(module: nn.Module, condition: Condition) -> Iterator[nn.Module]:
    """Within the block, conditional layers called as ``norm(x)`` use ``condition``; then restored."""
    layers = list(conditional_layers(module))
    previous = [layer.routed_condition for layer in layers]
    for layer in layers:
        layer.routed_condition = condition
    try:
        yield module
    finally:
        for layer, old in zip(layers, previous):
            layer.routed_condition = old
