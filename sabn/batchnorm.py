"""Conditional batch norms: CCBN, SaBN, split-statistics SaBN, AuxBN and SaAuxBN.

All of them are one class, :class:`ConditionalBatchNorm2d`, configured by three switches:

======================  ================  =============  =====================
layer                    split_statistics  shared_affine  conditional_affine
======================  ================  =============  =====================
CCBN                     no                no             yes (K x C gamma, beta)
SaBN                     no                yes            yes
split-statistics SaBN    yes               yes            yes
AuxBN (dual BN)          yes               no             yes
SaAuxBN                  yes               yes            yes
======================  ================  =============  =====================

Output: ``h = gamma_k * (gamma_sa * BN_k(x) + beta_sa) + beta_k`` where ``BN_k`` is one set of
statistics (or one per condition with ``split_statistics``). Inputs are (N, C, *) tensors, normalised
over every dim but C as ``F.batch_norm`` does, so one class serves MLP (N, C), sequence (N, C, L) and
image inputs; this is the one place where they accept more than ``nn.BatchNorm2d`` (4-d only). The
"2d" names follow PyTorch's convention for the common image case.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import (Condition, _empty_affine, conditional_batch_norm, resolve_condition,
                         sample_affine_batch_norm_folded, sample_affine_batch_norm_reference)


# Devices whose ATen backends implement the kernels the fused path reuses; others use the composition.
_FUSED_DEVICES = ("cpu", "cuda")


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that accepts (and ignores) a condition, so models can call every norm alike."""

    def forward(self, x: Tensor, condition: Condition = None) -> Tensor:  # noqa: D102
        return super().forward(x)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm with a shared ("sandwich") affine and K independent affines chosen per condition.

    Args:
        num_features: channels C.
        num_conditions: K, the number of independent affines (and of statistic sets when split).
        shared_affine: learn the shared per-channel affine (``weight``/``bias``, like BN's).
        conditional_affine: learn the K x C tables ``condition_weight``/``condition_bias``.
        split_statistics: keep one set of batch/running statistics per condition; the whole batch
            then shares one condition.
        gamma_init_std: gammas start at N(1, std) (the paper's 0.02); 0 gives exactly 1. Betas are 0.
        shared_gamma_init_std: the same for the shared gamma; defaults to ``gamma_init_std``.
        fused: use the fused autograd path in eager mode (the reference composition otherwise;
            under ``torch.compile`` a folded composition is used so that inductor fuses it).
    """

    def __init__(self, num_features: int, num_conditions: int = 1, *, shared_affine: bool = True,
                 conditional_affine: bool = True, split_statistics: bool = False,
                 track_running_stats: bool = True, momentum: Optional[float] = 0.1, eps: float = 1e-5,
                 gamma_init_std: float = 0.02, shared_gamma_init_std: Optional[float] = None,
                 fused: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if num_features < 1 or num_conditions < 1:
            raise ValueError(f"{type(self).__name__}: num_features ({num_features}) and num_conditions "
                             f"({num_conditions}) must be >= 1")
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.num_conditions = num_features, num_conditions
        self.split_statistics, self.track_running_stats = split_statistics, track_running_stats
        self.momentum, self.eps, self.fused = momentum, eps, fused
        self.gamma_init_std = gamma_init_std
        # Set by sabn.convert.route_condition for models whose code calls norm(x) without a condition.
        self.routed_condition: Condition = None
        self.shared_gamma_init_std = gamma_init_std if shared_gamma_init_std is None else shared_gamma_init_std
        c, k = num_features, num_conditions
        if shared_affine:
            self.weight = nn.Parameter(torch.empty(c, **factory))
            self.bias = nn.Parameter(torch.empty(c, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if conditional_affine:
            self.condition_weight = nn.Parameter(torch.empty(k, c, **factory))
            self.condition_bias = nn.Parameter(torch.empty(k, c, **factory))
        else:
            self.register_parameter("condition_weight", None)
            self.register_parameter("condition_bias", None)
        if track_running_stats:
            sets = (k,) if split_statistics else ()
            self.register_buffer("running_mean", torch.zeros(*sets, c, **factory))
            self.register_buffer("running_var", torch.ones(*sets, c, **factory))
            self.register_buffer("num_batches_tracked", torch.zeros(sets, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Gammas ~ N(1, std) (exactly 1 when std is 0), betas 0, running statistics reset."""
        self.reset_running_stats()
        with torch.no_grad():
            for gamma, beta, std in ((self.weight, self.bias, self.shared_gamma_init_std),
                                     (self.condition_weight, self.condition_bias, self.gamma_init_std)):
                if gamma is None:
                    continue
                gamma.normal_(1.0, std) if std > 0 else gamma.fill_(1.0)
                beta.zero_()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, num_conditions={self.num_conditions}, "
                f"shared_affine={self.weight is not None}, "
                f"conditional_affine={self.condition_weight is not None}, "
                f"split_statistics={self.split_statistics}, eps={self.eps}, momentum={self.momentum}, "
                f"track_running_stats={self.track_running_stats}, fused={self.fused}")

    def _check_input(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, {self.num_features}, ...), "
                             f"got {tuple(x.shape)}")

    def _statistics(self, k) -> tuple[Optional[Tensor], Optional[Tensor], bool, float]:
        """Running buffers for condition ``k``, whether to use batch statistics, and the momentum."""
        use_batch = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        rm, rv = self.running_mean, self.running_var
        if self.split_statistics and rm is not None:
            rm, rv = rm[k], rv[k]
        if self.training and self.track_running_stats:
            counter = self.num_batches_tracked
            if self.split_statistics:
                counter[k] += 1
                count = counter[k]
            else:
                counter.add_(1)
                count = counter
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(count)
        return rm, rv, use_batch, momentum

    def _affine(self, k) -> tuple[Tensor, Tensor]:
        """The composed affine: per channel (C,) for one condition, per sample (N, C) for a [N] tensor."""
        scale = shift = None
        if self.condition_weight is not None:
            scale, shift = self.condition_weight[k], self.condition_bias[k]
        if self.weight is not None:
            if scale is None:
                return self.weight, self.bias
            # gamma_k * (gamma_sa * x_hat + beta_sa) + beta_k, composed on (N, C) or (C,) tensors only
            return scale * self.weight, torch.addcmul(shift, scale, self.bias)
        return scale, shift

    def _empty(self, x: Tensor, k, rm: Optional[Tensor], rv: Optional[Tensor]) -> Tensor:
        """N = 0 behaves as ``nn.BatchNorm2d``: an empty output still connected to the affine (zero
        gradients), the batch counter advanced, the running statistics untouched."""
        out = F.batch_norm(x, rm, rv, None, None, False if rm is not None else True, 0.0, self.eps)
        scale, shift = self._affine(k)
        if scale is None:
            return out
        if scale.dim() == 1:   # one affine for the batch: as (0, C) per-sample factors
            scale, shift = scale.expand(0, -1), shift.expand(0, -1)
        return _empty_affine(out, scale, shift)

    def forward(self, x: Tensor, condition: Condition = None) -> Tensor:
        """Normalise ``x`` (N, C, ...) and apply the affine chosen by ``condition`` (int or [N])."""
        self._check_input(x)
        if condition is None:
            condition = self.routed_condition
        k = resolve_condition(type(self).__name__, condition, self.num_conditions, x.shape[0],
                              per_sample=not self.split_statistics)
        rm, rv, use_batch, momentum = self._statistics(k)
        if x.shape[0] == 0:
            return self._empty(x, k, rm, rv)
        per_sample = isinstance(k, Tensor) and k.dim() == 1
        if per_sample and self.fused and x.device.type in _FUSED_DEVICES and not torch.compiler.is_compiling():
            return conditional_batch_norm(x, k, self.condition_weight, self.condition_bias, self.weight,
                                          self.bias, rm, rv, use_batch, momentum, self.eps)
        scale, shift = self._affine(k)
        if scale is None or scale.dim() == 1:
            # One affine for the whole batch: it folds into BN's own per-channel affine.
            return F.batch_norm(x, rm, rv, scale, shift, use_batch, momentum, self.eps)
        if torch.compiler.is_compiling():
            return sample_affine_batch_norm_folded(x, scale, shift, rm, rv, use_batch, momentum, self.eps)
        return sample_affine_batch_norm_reference(x, scale, shift, rm, rv, use_batch, momentum, self.eps)


def _variant(name: str, doc: str, **switches):
    def __init__(self, num_features: int, num_conditions: int = 1, **options):
        for key in switches:
            if key in options:
                raise TypeError(f"{name}: '{key}' is fixed by this layer; use ConditionalBatchNorm2d to change it")
        ConditionalBatchNorm2d.__init__(self, num_features, num_conditions, **switches, **options)

    return type(name, (ConditionalBatchNorm2d,), {"__init__": __init__, "__doc__": doc})


CategoricalConditionalBatchNorm2d = _variant(
    "CategoricalConditionalBatchNorm2d",
    "CCBN: non-affine BN, then one of K affines (gamma ~ N(1, 0.02), beta 0) chosen per sample.",
    shared_affine=False, conditional_affine=True, split_statistics=False)
SandwichBatchNorm2d = _variant(
    "SandwichBatchNorm2d",
    "SaBN: BN with its own (shared, sandwich) affine, then one of K independent affines per sample.",
    shared_affine=True, conditional_affine=True, split_statistics=False)
SplitSandwichBatchNorm2d = _variant(
    "SplitSandwichBatchNorm2d",
    "SaBN with one set of statistics per condition (the NAS variant); one condition per batch.",
    shared_affine=True, conditional_affine=True, split_statistics=True)
AuxBatchNorm2d = _variant(
    "AuxBatchNorm2d",
    "AuxBN (dual BN): one affine BN per branch (0 clean, 1 adversarial); one branch per batch.",
    shared_affine=False, conditional_affine=True, split_statistics=True)
SandwichAuxBatchNorm2d = _variant(
    "SandwichAuxBatchNorm2d",
    "SaAuxBN: one non-affine BN per branch, a shared affine, then the branch's own affine.",
    shared_affine=True, conditional_affine=True, split_statistics=True)
