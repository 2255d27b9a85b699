"""Synchronized statistics for every statistic-computing norm (``nn.SyncBatchNorm`` for the family).

Under data parallelism a batch norm's training statistics otherwise depend on the per-process batch.
:func:`convert_sync_norms` makes every layer compute them over the whole process group: per-channel
sums are all-reduced with torch's differentiable functional all-reduce (its backward all-reduces the
gradients; ``torch.distributed.nn.functional.all_reduce`` on torch versions without one), so input and
parameter gradients are those of one process on the concatenated batch, double backward included.
Running statistics use the global count (unbiased variance as ``nn.BatchNorm2d``). The functional op
is traceable: a compiled model keeps its synchronized layers in one graph (``fullgraph=True`` works).
On CUDA, plain BN layers keep torch's fused ``nn.SyncBatchNorm`` kernels; elsewhere (gloo on CPU, which
torch's layer refuses) the same all-reduce path runs. Outside a process group, or in evaluation, every
layer is exactly its unsynchronized self.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .batchnorm import BatchNorm2d, ConditionalBatchNorm2d
from .conditions import resolve_condition
from .functional import _stats_dtype


def _group_size(group: Optional[Any]) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _functional_all_reduce_is_differentiable() -> bool:
    """True where torch registers autograd for its functional all-reduce (recent torch): that op is
    traceable, so compiled models keep the synchronized layers in one graph (``fullgraph=True``)."""
    try:
        import torch.distributed._functional_collectives  # noqa: F401  (registers the autograd kernels)
        return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"_c10d_functional::{op}", "Autograd")
                   for op in ("all_reduce", "wait_tensor"))
    except (AttributeError, ImportError, RuntimeError):
        return False


# decided eagerly, when a synchronized layer is made (a dispatcher query cannot be traced by torch.compile)
_FUNCTIONAL_ALL_REDUCE: Optional[bool] = None


def _decide_all_reduce() -> None:
    global _FUNCTIONAL_ALL_REDUCE
    if _FUNCTIONAL_ALL_REDUCE is None:
        _FUNCTIONAL_ALL_REDUCE = _functional_all_reduce_is_differentiable()


def _all_reduce(t: Tensor, group: Optional[Any]) -> Tensor:
    """Differentiable sum over ``group`` (its backward all-reduces the gradient)."""
    _decide_all_reduce()
    group = dist.group.WORLD if group is None else group
    if _FUNCTIONAL_ALL_REDUCE:
        ops = torch.ops._c10d_functional
        return ops.wait_tensor(ops.all_reduce(t.contiguous(), "sum", group.group_name))
    # older torch: the autograd Function API, which torch.compile cannot trace (a graph break)
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(t, group=group)


def sync_normalize(x: Tensor, group: Optional[Any], eps: float, running_mean: Optional[Tensor],
                   running_var: Optional[Tensor], momentum: float) -> Tensor:
    """x_hat with mean and biased variance over (N, H, W) of every process in ``group`` (differentiable:
    two all-reduces, mean first, then the centred squares, for numerical stability); the running
    buffers are updated with the group's statistics."""
    x4 = x.to(_stats_dtype(x))
    dims = [0] + list(range(2, x4.dim()))
    local = torch.tensor(float(x4.numel() // x4.shape[1]), dtype=x4.dtype, device=x4.device)
    count = _all_reduce(local, group).detach()
    mean = _all_reduce(x4.sum(dims), group) / count.clamp_min(1)
    shape = (1, -1) + (1,) * (x4.dim() - 2)
    centred = x4 - mean.reshape(shape)
    var = _all_reduce(centred.pow(2).sum(dims), group) / count.clamp_min(1)
    if running_mean is not None:
        # the unbiased factor stays a tensor: no host sync, and no graph break under torch.compile
        unbiased = count / (count - 1).clamp_min(1)
        with torch.no_grad():
            running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            running_var.lerp_((var.detach() * unbiased).to(running_var.dtype), momentum)
    return (centred * torch.rsqrt(var + eps).reshape(shape)).to(x.dtype)


class SyncBatchNorm2d(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` that takes (and ignores) a condition like every norm of the family, and also
    synchronizes on CPU / gloo (torch's layer needs a GPU there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _decide_all_reduce()

    def forward(self, x: Tensor, condition: Any = None) -> Tensor:  # noqa: D102
        if x.device.type == "cuda" or not (self.training and _group_size(self.process_group) > 1):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        momentum = self._momentum_now()
        x_hat = sync_normalize(x, self.process_group, self.eps,
                               self.running_mean if self.track_running_stats else None, self.running_var, momentum)
        if self.weight is None:
            return x_hat
        return x_hat * self.weight.reshape(1, -1, 1, 1).to(x_hat.dtype) + self.bias.reshape(1, -1, 1, 1).to(x_hat.dtype)

    def _momentum_now(self) -> float:
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                return 1.0 / float(self.num_batches_tracked)
        return 0.0 if self.momentum is None else self.momentum


class SyncConditionalBatchNorm2d(ConditionalBatchNorm2d):
    """A conditional norm whose training statistics are the process group's (see the module doc).
    :func:`convert_sync_norms` makes each layer an instance of a subclass of its own class, so a synced
    ``SandwichBatchNorm2d`` is still a ``SandwichBatchNorm2d``."""

    process_group: Optional[Any] = None

    def forward(self, x: Tensor, condition: Any = None) -> Tensor:  # noqa: D102
        use_batch = self.training or not self.track_running_stats
        if not use_batch or _group_size(self.process_group) <= 1:
            return super().forward(x, condition)
        self._check_input(x)
        if condition is None:
            condition = self.routed_condition
        k = resolve_condition(type(self).__name__, condition, self.num_conditions, x.shape[0],
                              per_sample=not self.split_statistics)
        rm, rv, _, momentum = self._statistics(k)
        x_hat = sync_normalize(x, self.process_group, self.eps, rm if self.training else None, rv, momentum)
        scale, shift = self._affine(k)
        if scale is None:
            return x_hat
        view = (-1 if scale.dim() == 2 else 1, x.shape[1]) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.reshape(view).to(x_hat.dtype), x_hat, scale.reshape(view).to(x_hat.dtype))


_SYNC_CLASSES: Dict[type, type] = {}


def _sync_class(cls: type) -> type:
    if issubclass(cls, SyncConditionalBatchNorm2d):
        return cls
    if cls not in _SYNC_CLASSES:
        _SYNC_CLASSES[cls] = type(f"Sync{cls.__name__}", (SyncConditionalBatchNorm2d, cls),
                                  {"__doc__": f"{cls.__name__} with synchronized statistics (sabn.convert_sync_norms)."})
    return _SYNC_CLASSES[cls]


def _sync_bn(old: nn.modules.batchnorm._BatchNorm, group: Optional[Any]) -> SyncBatchNorm2d:
    """A SyncBatchNorm2d holding the same parameters and buffers (the very tensors: optimizers keep them)."""
    new = SyncBatchNorm2d(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats,
                          process_group=group)
    if old.affine:
        new.weight, new.bias = old.weight, old.bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(new, name, getattr(old, name))
    new.train(old.training)
    return new


def _is_plain_bn(module: nn.Module) -> bool:
    return type(module) in (nn.BatchNorm2d, BatchNorm2d, nn.SyncBatchNorm)


def convert_sync_norms(module: nn.Module, process_group: Optional[Any] = None) -> nn.Module:
    """Make every statistic-computing norm in ``module`` synchronize its training statistics across
    ``process_group`` (default: the whole world), in place; returns the (possibly new) module, like
    ``nn.SyncBatchNorm.convert_sync_batchnorm``. ``bn`` layers become :class:`SyncBatchNorm2d`; ccbn,
    sabn, split_sabn, auxbn and saauxbn layers a synchronized subclass of their own class. AdaIN layers
    (instance statistics) need no synchronization and are left alone."""
    _decide_all_reduce()
    if _is_plain_bn(module):
        return _sync_bn(module, process_group)
    if isinstance(module, ConditionalBatchNorm2d):
        module.__class__ = _sync_class(type(module))
        module.process_group = process_group
        return module
    for name, child in module.named_children():
        new = convert_sync_norms(child, process_group)
        if new is not child:
            setattr(module, name, new)
    return module

