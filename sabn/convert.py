"""Turn the BatchNorm2d layers of an existing model into conditional norms, and route the condition.

>>> model = convert_norms(torchvision.models.resnet18(), "sabn", num_conditions=10)
>>> with route_condition(model, labels):
...     logits = model(images)
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator

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


class NormAct(nn.Module):
    """A converted norm followed by what a fused norm+activation layer applied after its BN part
    (timm's ``BatchNormAct2d``: ``drop`` then ``act``), so conversion keeps the model's function."""

    def __init__(self, norm: nn.Module, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.norm, self.drop, self.act = norm, drop, act

    def forward(self, x: torch.Tensor, condition: Condition = None) -> torch.Tensor:
        return self.act(self.drop(self.norm(x, condition)))


# Classes that hold BN statistics but are not converted: each one is named in a warning.
_NOT_CONVERTED = (nn.BatchNorm1d, nn.BatchNorm3d)


def _convertible(module: nn.Module) -> bool:
    if type(module) is nn.BatchNorm2d or isinstance(module, nn.SyncBatchNorm):
        return True
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, ConditionalBatchNorm2d):
        if _is_norm_act(module):
            return True
        raise ValueError(f"convert_norms: {type(module).__module__}.{type(module).__name__} subclasses "
                         "nn.BatchNorm2d with behaviour of its own, which a conditional norm would drop; "
                         "replace it by hand, or convert the model before adding that behaviour")
    return False


def _is_norm_act(module: nn.Module) -> bool:
    """timm's BatchNormAct2d (and look-alikes): BN, then ``self.drop``, then ``self.act``."""
    return isinstance(getattr(module, "act", None), nn.Module) and isinstance(getattr(module, "drop", None), nn.Module)


def _convert_one(module: nn.BatchNorm2d, name: str, num_conditions: int, identity_init: bool,
                 options: Dict[str, Any]) -> nn.Module:
    opts = {"eps": module.eps, "momentum": module.momentum,
            "track_running_stats": module.track_running_stats, **options}
    new = build_norm(name, module.num_features, num_conditions, **opts)
    ref = module.weight if module.weight is not None else module.running_mean
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    new.train(module.training)
    _copy_from_batchnorm(new, module, identity_init)
    if isinstance(module, nn.SyncBatchNorm):   # synchronized statistics stay synchronized
        from .sync import convert_sync_norms
        new = convert_sync_norms(new, module.process_group)
    if _is_norm_act(module):
        return NormAct(new, module.drop, module.act).train(module.training)
    return new


def convert_norms(module: nn.Module, name: str, num_conditions: int, *, identity_init: bool = True,
                  **options: Any) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by norm ``name`` with K conditions.

    The old statistics and affine go into the shared part (or into every independent affine when the
    norm has no shared one). With ``identity_init`` the independent affines start at exactly (1, 0),
    so the converted model computes the same function as before; pass ``identity_init=False`` to keep
    the paper's N(1, 0.02) initialisation instead. Returns the (possibly new) module, like
    ``nn.SyncBatchNorm.convert_sync_batchnorm``.

    timm's ``BatchNormAct2d`` becomes a :class:`NormAct` (the activation is kept); any other subclass
    of ``nn.BatchNorm2d`` is refused, since its extra behaviour would be lost. ``BatchNorm1d``,
    ``BatchNorm3d`` stay as they are, with a warning naming them; ``SyncBatchNorm`` becomes the
    synchronized variant of the norm (:func:`sabn.convert_sync_norms`, same process group); a model with
    no ``BatchNorm2d`` at all is an error.
    """
    if not issubclass(get_norm_spec(name).cls, ConditionalBatchNorm2d):
        raise ValueError(f"convert_norms: '{name}' is not a conditional batch norm; "
                         "use one of ccbn, sabn, split_sabn, auxbn, saauxbn")
    if _convertible(module):
        return _convert_one(module, name, num_conditions, identity_init, options)
    skipped = [f"{path or '<model>'} ({type(m).__name__})" for path, m in module.named_modules()
               if isinstance(m, _NOT_CONVERTED)]
    converted = _convert_children(module, name, num_conditions, identity_init, options)
    if skipped:
        warnings.warn(f"convert_norms left {len(skipped)} layer(s) unconverted (only BatchNorm2d is): "
                      + ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    if converted == 0 and not any(isinstance(m, ConditionalBatchNorm2d) for m in module.modules()):
        raise ValueError(f"convert_norms: {type(module).__name__} has no nn.BatchNorm2d to convert")
    return module


def _convert_children(module: nn.Module, name: str, num_conditions: int, identity_init: bool,
                      options: Dict[str, Any]) -> int:
    count = 0
    for child_name, child in module.named_children():
        if _convertible(child):
            setattr(module, child_name, _convert_one(child, name, num_conditions, identity_init, options))
            count += 1
        else:
            count += _convert_children(child, name, num_conditions, identity_init, options)
    return count


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
