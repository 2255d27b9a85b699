"""Functional core of the SaBN family: condition checking, the fused path and the reference path.

Every conditional batch norm of the family is "batch-normalise, then apply one affine per sample
and channel". ``sample_affine_batch_norm`` computes that in one custom autograd function that
reuses ATen kernels for the statistics and saves no more for backward than ``nn.BatchNorm2d``
(input, scale, mean, inverse std). ``sample_affine_batch_norm_reference`` is the plain composition
the official code uses; the tests compare the two.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .cpu_kernels import cpu_kernel

from .conditions import Condition, resolve_condition, set_condition_value_checks  # noqa: F401 (re-exported)


def _stats_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _as_4d(x: Tensor) -> Tensor:
    if x.dim() == 4:
        return x
    if x.dim() < 2:
        raise ValueError(f"expected an input of shape (N, C, ...), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], x.shape[1], -1, 1)


def _fold(x4: Tensor, scale: Tensor, shift: Tensor, mean: Tensor, invstd: Tensor) -> Tensor:
    """scale * (x - mean) * invstd + shift as one addcmul: (N, C) factors broadcast over (H, W)."""
    s = scale.to(mean.dtype) * invstd
    t = torch.addcmul(shift.to(mean.dtype), s, mean, value=-1)
    return torch.addcmul(t[:, :, None, None], x4, s[:, :, None, None])


def _triton(x: Tensor):
    """The Triton kernels when they handle ``x`` (CUDA, or the CPU interpreter in tests); eager only."""
    if x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return None
    if torch.compiler.is_compiling():
        return None
    from . import triton_kernels
    return triton_kernels if triton_kernels.available(x) else None


def _update_stats(x4: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float):
    """Batch mean and biased variance of ``x4`` per channel (ATen's Welford kernel), updating the running
    buffers in place. Buffers of another dtype than ``x4`` (a half module: x4 is float32 then) are
    updated through float32 copies, as ``nn.BatchNorm2d`` keeps low-precision running statistics."""
    if running_mean is None or running_mean.dtype == x4.dtype:
        return torch.batch_norm_update_stats(x4, running_mean, running_var, momentum)
    rm, rv = running_mean.to(x4.dtype), running_var.to(x4.dtype)
    mean, var = torch.batch_norm_update_stats(x4, rm, rv, momentum)
    running_mean.copy_(rm)
    running_var.copy_(rv)
    return mean, var


def _bn_forward(ctx, x, scale, shift, running_mean, running_var, use_batch_stats, momentum, eps):
    """Shared forward: statistics (updating running buffers), then one addcmul with the folded affine."""
    x4 = _as_4d(x).to(_stats_dtype(x))
    if use_batch_stats:
        mean, var = _update_stats(x4, running_mean, running_var, momentum)
    else:
        mean, var = running_mean.to(x4.dtype), running_var.to(x4.dtype)
    invstd = torch.rsqrt(var + eps)
    ctx.use_batch_stats, ctx.eps = use_batch_stats, eps
    kernels = _triton(x4)
    if kernels is not None:   # one read of x, one write of y, in x's own dtype and layout
        s = scale.to(mean.dtype) * invstd
        y = kernels.affine(_as_4d(x), s, torch.addcmul(shift.to(mean.dtype), s, mean, value=-1), out_dtype=x.dtype)
        return y.reshape(x.shape), mean, invstd
    y = _fold(x4, scale, shift, mean, invstd)
    return y.to(x.dtype).reshape(x.shape), mean, invstd


def _grad_coefficients(use_batch_stats, count, scale, mean, invstd, sg, sgx):
    """From the per-(sample, channel) sums of g and g * x: grad_x = a[n, c] g + b[c] x + d[c]
    (b = d = None at fixed statistics) and grad_scale (N, C)."""
    scale32 = scale.to(mean.dtype)
    grad_scale = torch.addcmul(sgx, sg, mean, value=-1).mul_(invstd)  # sum over (h, w) of g * x_hat
    a = scale32 * invstd  # d y / d x at fixed statistics, per (n, c)
    if not use_batch_stats:
        return a, None, None, grad_scale
    # Means over (n, h, w) of g' = g * scale and of g' * x_hat, from the (N, C) sums.
    means = (scale32 * torch.stack((sg, grad_scale))).sum(1).div_(count)
    b = -invstd * invstd * means[1]
    d = torch.addcmul(-invstd * means[0], b, mean, value=-1)
    return a, b, d, grad_scale


def _grads_from_sums(use_batch_stats, g, x4, scale, mean, invstd, sg, sgx):
    """grad_x (4-d) and grad_scale from the per-(sample, channel) sums of g and g * x."""
    a, b, d, grad_scale = _grad_coefficients(use_batch_stats, x4.numel() // x4.shape[1], scale, mean, invstd, sg, sgx)
    if b is None:
        return g * a[:, :, None, None], grad_scale
    grad_x = torch.addcmul(d[None, :, None, None], x4, b[None, :, None, None])
    return grad_x.addcmul_(g, a[:, :, None, None]), grad_scale


def _bn_backward(use_batch_stats, grad_out, x, scale, mean, invstd):
    """Shared backward: (grad_x, grad_scale, grad_shift) from per-(sample, channel) reductions."""
    x4 = _as_4d(x)
    n, c = x4.shape[:2]
    channels_last = x4.dim() == 4 and not x4.is_contiguous() and x4.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    kernels = _triton(x4)
    if kernels is not None:   # one read of g and x (in their own dtype) for both sums, one pass for grad_x
        xt, gt = x4.contiguous(memory_format=fmt), _as_4d(grad_out).contiguous(memory_format=fmt)
        sg, sgx = kernels.nc_sums(gt, xt)
        a, b, d, grad_scale = _grad_coefficients(use_batch_stats, xt.numel() // c, scale, mean, invstd, sg, sgx)
        if b is None:
            b = d = torch.zeros_like(mean)
        return kernels.grad_input(gt, xt, a, b, d, out_dtype=x.dtype).reshape(x.shape), grad_scale, sg
    x4 = x4.to(_stats_dtype(x))
    g = _as_4d(grad_out).to(x4.dtype).contiguous(memory_format=fmt)
    x4 = x4.contiguous(memory_format=fmt)
    kernel = cpu_kernel(x4)
    if kernel is not None:   # one read of g and x for both sums, one pass for grad_x
        grad_x, grad_scale, sg = kernel.sample_affine_backward(
            g, x4, scale.to(x4.dtype).contiguous(), mean.contiguous(), invstd.contiguous(), bool(use_batch_stats))
        return grad_x.to(x.dtype).reshape(x.shape), grad_scale, sg
    if not channels_last:
        # Per-(sample, channel) sums in one pass: BN's own backward reduction on the
        # (1, N*C, H, W) view, with mean 0 and invstd 1, gives sum(g * x) and sum(g). The weight is
        # passed (ones) although unused: CUDA's kernel reads its device and fails on an undefined one.
        zero, one = x4.new_zeros(n * c), x4.new_ones(n * c)
        _, sgx, sg = torch.ops.aten.native_batch_norm_backward(
            g.view(1, n * c, *g.shape[2:]), x4.view(1, n * c, *x4.shape[2:]), one, None, None,
            zero, one, True, 0.0, [False, True, True])
        sgx, sg = sgx.view(n, c), sg.view(n, c)
    else:
        sg = g.sum((2, 3))
        sgx = (g * x4).sum((2, 3))
    grad_x, grad_scale = _grads_from_sums(use_batch_stats, g, x4, scale, mean, invstd, sg, sgx)
    return grad_x.to(x.dtype).reshape(x.shape), grad_scale, sg


def _normalized(x: Tensor, use_batch_stats: bool, mean: Tensor, invstd: Tensor, eps: float) -> Tensor:
    """x_hat as a differentiable function of ``x`` (batch statistics recomputed, without touching any
    running buffer; fixed statistics are constants), in the statistics' dtype, 4-d."""
    x4 = _as_4d(x).to(mean.dtype)
    if use_batch_stats:
        return F.batch_norm(x4, None, None, None, None, True, 0.0, eps)
    return (x4 - mean[None, :, None, None]) * invstd[None, :, None, None]


def _differentiable_grads(grad_out: Tensor, x: Tensor, y_of, inputs, needs) -> list:
    """The first derivatives as a graph (``create_graph``), for double backward: the written-out
    backwards are exact only to first order (their statistics and folded affines are constants), so
    when autograd builds a graph of the backward (``autograd.grad(..., create_graph=True)``: gradient
    penalties, Hessian-vector products) the forward is recomputed as the plain composition ``y_of()``
    and differentiated by autograd, whose own double backward of batch norm is exact."""
    with torch.enable_grad():
        wanted = [t for t, n in zip(inputs, needs) if n and t is not None]
        y = y_of()
        grads = iter(torch.autograd.grad(y, wanted, grad_out.to(y.dtype).reshape(y.shape), create_graph=True,
                                         allow_unused=True) if wanted else ())
    out = []
    for t, n in zip(inputs, needs):
        g = next(grads) if n and t is not None else None
        out.append(torch.zeros_like(t) if g is None and n and t is not None else g)
    return out


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _conditional_kernel(x: Tensor, cond_weight: Tensor, shared_weight: Optional[Tensor],
                        running_mean: Optional[Tensor]):
    """The C++ kernel module when it is enabled and everything is float32 on CPU, NCHW or channels_last."""
    kernel = cpu_kernel(x)
    tensors = [t for t in (cond_weight, shared_weight, running_mean) if t is not None]
    if kernel is None or any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        return None
    return kernel


class _SampleAffineBatchNorm(torch.autograd.Function):
    """y = scale[n, c] * (x - mean_c) * invstd_c + shift[n, c], with BN statistics over (N, H, W)."""

    @staticmethod
    def forward(ctx, x, scale, shift, running_mean, running_var, use_batch_stats, momentum, eps):
        y, mean, invstd = _bn_forward(ctx, x, scale, shift, running_mean, running_var, use_batch_stats, momentum, eps)
        ctx.save_for_backward(x, scale, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, scale, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():   # a graph of the backward is being built: exact double backward
            def y_of():
                return (scale.to(mean.dtype)[:, :, None, None] * _normalized(x, ctx.use_batch_stats, mean, invstd, ctx.eps))
            grad_x, grad_scale = _differentiable_grads(grad_out, x, y_of, (x, scale), ctx.needs_input_grad[:2])
            grad_shift = _as_4d(grad_out).sum((2, 3)).to(scale.dtype) if ctx.needs_input_grad[2] else None
            return grad_x, grad_scale, grad_shift, None, None, None, None, None
        grad_x, grad_scale, grad_shift = _bn_backward(ctx.use_batch_stats, grad_out, x, scale, mean, invstd)
        return grad_x, grad_scale.to(scale.dtype), grad_shift.to(scale.dtype), None, None, None, None, None


class _ConditionalBatchNorm(torch.autograd.Function):
    """BN, then ``gamma_k * (gamma_sa * x_hat + beta_sa) + beta_k`` with k = index[n], in one node:
    the table gather and the composition of the affines happen inside, so autograd sees one op."""

    @staticmethod
    def forward(ctx, x, index, cond_weight, cond_bias, shared_weight, shared_bias,
                running_mean, running_var, use_batch_stats, momentum, eps):
        ctx.kernel = _conditional_kernel(x, cond_weight, shared_weight, running_mean)
        if ctx.kernel is not None:
            if use_batch_stats:
                mean, var = _update_stats(x, running_mean, running_var, momentum)
            else:
                mean, var = running_mean, running_var
            y, scale, invstd = ctx.kernel.conditional_forward(
                x, index.contiguous(), cond_weight.contiguous(), cond_bias.contiguous(),
                _contiguous(shared_weight), _contiguous(shared_bias), mean.contiguous(), var.contiguous(), eps)
            ctx.use_batch_stats, ctx.eps = use_batch_stats, eps
            ctx.save_for_backward(x, index, cond_weight, cond_bias, shared_weight, shared_bias, scale, mean, invstd)
            return y
        gk, bk = cond_weight[index], cond_bias[index]
        if shared_weight is None:
            scale, shift = gk, bk
        else:
            scale, shift = gk * shared_weight, torch.addcmul(bk, gk, shared_bias)
        y, mean, invstd = _bn_forward(ctx, x, scale, shift, running_mean, running_var, use_batch_stats, momentum, eps)
        ctx.save_for_backward(x, index, cond_weight, cond_bias, shared_weight, shared_bias, scale, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, index, cond_weight, cond_bias, shared_weight, shared_bias, scale, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():   # a graph of the backward is being built: exact double backward
            def y_of():
                gk, bk = cond_weight[index], cond_bias[index]
                if shared_weight is not None:
                    gk, bk = gk * shared_weight, torch.addcmul(bk, gk, shared_bias)
                x_hat = _normalized(x, ctx.use_batch_stats, mean, invstd, ctx.eps)
                return torch.addcmul(bk.to(x_hat.dtype)[:, :, None, None], x_hat, gk.to(x_hat.dtype)[:, :, None, None])
            needs = ctx.needs_input_grad
            gx, gcw, gcb, gsw, gsb = _differentiable_grads(
                grad_out, x, y_of, (x, cond_weight, cond_bias, shared_weight, shared_bias),
                (needs[0], needs[2], needs[3], needs[4], needs[5]))
            return gx, None, gcw, gcb, gsw, gsb, None, None, None, None, None
        if ctx.kernel is not None:
            fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
            grads = ctx.kernel.conditional_backward(
                grad_out.float().contiguous(memory_format=fmt), x, index.contiguous(),
                cond_weight.contiguous(), _contiguous(shared_weight), _contiguous(shared_bias), scale, mean.contiguous(),
                invstd, bool(ctx.use_batch_stats))
            grad_x, grad_cw, grad_cb = grads[:3]
            grad_sw, grad_sb = (grads[3], grads[4]) if shared_weight is not None else (None, None)
            return grad_x, None, grad_cw, grad_cb, grad_sw, grad_sb, None, None, None, None, None
        grad_x, ga, gb = _bn_backward(ctx.use_batch_stats, grad_out, x, scale, mean, invstd)
        ga, gb = ga.to(cond_weight.dtype), gb.to(cond_weight.dtype)
        grad_sw = grad_sb = None
        if shared_weight is None:
            grad_gk = ga
        else:
            gk = cond_weight[index]
            grad_gk = torch.addcmul(ga * shared_weight, gb, shared_bias)
            grad_sw, grad_sb = (ga * gk).sum(0), (gb * gk).sum(0)
        grad_cw = torch.zeros_like(cond_weight).index_add_(0, index, grad_gk)
        grad_cb = torch.zeros_like(cond_weight).index_add_(0, index, gb)
        return grad_x, None, grad_cw, grad_cb, grad_sw, grad_sb, None, None, None, None, None


def _empty_affine(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """The (0, C, ...) output of an empty batch, connected to ``scale``/``shift`` (zero gradients)."""
    view = (0, x.shape[1]) + (1,) * (x.dim() - 2)
    return x * scale.reshape(view) + shift.reshape(view)


def conditional_batch_norm(x: Tensor, index: Tensor, cond_weight: Tensor, cond_bias: Tensor,
                           shared_weight: Optional[Tensor], shared_bias: Optional[Tensor],
                           running_mean: Optional[Tensor], running_var: Optional[Tensor],
                           use_batch_stats: bool, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Fused CCBN (``shared_weight=None``) or SaBN with per-sample conditions ``index`` (N,)."""
    if not use_batch_stats and running_mean is None:
        raise ValueError("conditional_batch_norm: evaluation without running statistics is undefined")
    if x.shape[0] == 0:   # as F.batch_norm: an empty output, no statistics update (no kernel sees N = 0)
        scale, shift = cond_weight[index], cond_bias[index]
        if shared_weight is not None:
            scale, shift = scale * shared_weight, torch.addcmul(shift, scale, shared_bias)
        return _empty_affine(x, scale, shift)
    return _ConditionalBatchNorm.apply(x, index, cond_weight, cond_bias, shared_weight, shared_bias,
                                       running_mean, running_var, use_batch_stats, momentum, eps)


def sample_affine_batch_norm(
    x: Tensor,
    scale: Tensor,
    shift: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    use_batch_stats: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Fused batch norm followed by a per-(sample, channel) affine ``scale``/``shift`` of shape (N, C).

    ``use_batch_stats`` as in ``F.batch_norm``'s ``training``; when true and running buffers are
    given they are updated in place with ``momentum``.
    """
    if not use_batch_stats and running_mean is None:
        raise ValueError("sample_affine_batch_norm: evaluation without running statistics is undefined")
    if x.shape[0] == 0:
        return _empty_affine(x, scale, shift)
    return _SampleAffineBatchNorm.apply(x, scale, shift, running_mean, running_var,
                                        use_batch_stats, momentum, eps)


def sample_affine_batch_norm_reference(
    x: Tensor,
    scale: Tensor,
    shift: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    use_batch_stats: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """The plain composition (non-affine BN, then a broadcast affine); the numerical reference."""
    x_hat = F.batch_norm(x, running_mean, running_var, None, None, use_batch_stats, momentum, eps)
    view = (scale.shape[0], scale.shape[1]) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.reshape(view).to(x_hat.dtype), x_hat, scale.reshape(view).to(x_hat.dtype))


class _FoldedBatchNorm(torch.autograd.Function):
    """Batch statistics by ``var_mean``, the affine folded into one (N, C) scale and shift, and a
    written-out backward whose per-(sample, channel) sums also give the per-channel ones: under
    ``torch.compile`` inductor makes one reduction and one pointwise kernel of each direction."""

    @staticmethod
    def forward(ctx, x, scale, shift, eps):
        x4 = _as_4d(x).to(_stats_dtype(x))
        var, mean = torch.var_mean(x4, dim=(0, 2, 3), correction=0)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, scale, mean, invstd)
        ctx.mark_non_differentiable(mean, var)
        ctx.eps = eps
        return _fold(x4, scale, shift, mean, invstd).reshape(x.shape), mean, var

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        x, scale, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():   # a graph of the backward is being built: exact double backward
            def y_of():
                return scale.to(mean.dtype)[:, :, None, None] * _normalized(x, True, mean, invstd, ctx.eps)
            grad_x, grad_scale = _differentiable_grads(grad_out, x, y_of, (x, scale), ctx.needs_input_grad[:2])
            grad_shift = _as_4d(grad_out).sum((2, 3)).to(scale.dtype) if ctx.needs_input_grad[2] else None
            return grad_x, grad_scale, grad_shift, None
        x4, g = _as_4d(x).to(mean.dtype), _as_4d(grad_out).to(mean.dtype)
        sg = g.sum((2, 3))
        grad_x, grad_scale = _grads_from_sums(True, g, x4, scale, mean, invstd, sg, (g * x4).sum((2, 3)))
        return grad_x.to(x.dtype).reshape(x.shape), grad_scale.to(scale.dtype), sg.to(scale.dtype), None


def sample_affine_batch_norm_folded(
    x: Tensor,
    scale: Tensor,
    shift: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    use_batch_stats: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """The same function written for compilers (``_FoldedBatchNorm``): ~1.0x compiled BN on CPU,
    where the BN-then-affine composition compiled to ~1.2x."""
    if not use_batch_stats:
        return _fold(_as_4d(x), scale, shift, running_mean, torch.rsqrt(running_var + eps)).reshape(x.shape)
    y, mean, var = _FoldedBatchNorm.apply(x, scale, shift, eps)
    if running_mean is not None:
        count = x.numel() // x.shape[1]
        with torch.no_grad():   # as nn.BatchNorm2d: unbiased variance in the running estimate
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * (count / max(count - 1, 1))).to(running_var.dtype), momentum)
    return y


def instance_stats(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-(sample, channel) mean and std over the spatial dims, as pytorch-AdaIN computes them
    (unbiased variance plus ``eps`` under the square root), in float32 for low-precision inputs."""
    if x.dim() < 3:
        raise ValueError(f"instance statistics need an input of shape (N, C, H, W), got {tuple(x.shape)}")
    flat = x.flatten(2).to(_stats_dtype(x))   # flatten, not reshape(-1): N = 0 stays (0, C, HW)
    if flat.shape[0] == 0:
        empty = flat.new_zeros(flat.shape[:2])
        return empty, empty
    if flat.shape[-1] < 2:
        raise ValueError(f"instance statistics need at least 2 spatial positions, got shape {tuple(x.shape)}")
    var, mean = torch.var_mean(flat, dim=-1, correction=1)
    return mean, torch.sqrt(var + eps)
