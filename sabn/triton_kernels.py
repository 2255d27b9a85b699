"""Triton kernels for the fused per-sample-affine batch norm on CUDA (NCHW and channels_last).

Three memory-bound passes replace ATen's compositions in :mod:`sabn.functional`:

- ``affine(x, s, t)``: ``y = s[n, c] * x + t[n, c]`` (the forward, statistics folded into s and t);
- ``nc_sums(g, x)``: per-(sample, channel) sums of ``g`` and ``g * x`` in one read of both (the
  backward's reductions; in channels_last ATen needs a ``g * x`` temporary and three passes);
- ``grad_input(g, x, a, b, d)``: ``a[n, c] * g + b[c] * x + d[c]`` in one pass (two in ATen).

Sums accumulate in float32. The kernels take contiguous NCHW or channels_last 4-d float tensors.
They are used on CUDA when Triton imports (``SABN_TRITON=0`` turns them off); on CPU they run only
under ``TRITON_INTERPRET=1``, which is how the tests check them against the reference.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor

try:   # Triton ships with CUDA builds of torch; without it the ATen compositions run.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None


def available(x: Tensor) -> bool:
    """Whether the Triton path should handle ``x``: CUDA (or the CPU interpreter), float, 4-d, dense."""
    if triton is None or os.environ.get("SABN_TRITON", "1") == "0":
        return False
    if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    return x.dim() == 4 and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and _layout(x) is not None


def _layout(x: Tensor) -> Optional[bool]:
    """True for channels_last, False for NCHW, None for anything else."""
    if x.is_contiguous():
        return False
    if x.is_contiguous(memory_format=torch.channels_last):
        return True
    return None


if triton is not None:
    @triton.jit
    def _affine_kernel(x_ptr, s_ptr, t_ptr, y_ptr, total, C, HW, CHANNELS_LAST: tl.constexpr,
                       BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        if CHANNELS_LAST:
            nc = (offs // (HW * C)) * C + offs % C
        else:
            nc = offs // HW
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + nc, mask=mask, other=0.0)
        t = tl.load(t_ptr + nc, mask=mask, other=0.0)
        tl.store(y_ptr + offs, (s * x + t).to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _grad_input_kernel(g_ptr, x_ptr, a_ptr, b_ptr, d_ptr, out_ptr, total, C, HW,
                           CHANNELS_LAST: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        if CHANNELS_LAST:
            c = offs % C
            nc = (offs // (HW * C)) * C + c
        else:
            nc = offs // HW
            c = nc % C
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + nc, mask=mask, other=0.0)
        b = tl.load(b_ptr + c, mask=mask, other=0.0)
        d = tl.load(d_ptr + c, mask=mask, other=0.0)
        tl.store(out_ptr + offs, (a * g + b * x + d).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _nc_sums_nchw_kernel(g_ptr, x_ptr, sg_ptr, sgx_ptr, HW, BLOCK: tl.constexpr):
        row = tl.program_id(0)              # one (n, c) row of HW contiguous values
        base = row.to(tl.int64) * HW
        acc_g = tl.zeros([BLOCK], dtype=tl.float32)
        acc_gx = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, HW, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < HW
            g = tl.load(g_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            acc_g += g
            acc_gx += g * x
        tl.store(sg_ptr + row, tl.sum(acc_g, axis=0))
        tl.store(sgx_ptr + row, tl.sum(acc_gx, axis=0))

    @triton.jit
    def _nc_sums_nhwc_kernel(g_ptr, x_ptr, sg_ptr, sgx_ptr, C, HW, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
        n = tl.program_id(0)
        cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cs < C
        base = n.to(tl.int64) * HW * C
        acc_g = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
        acc_gx = tl.zeros([BLOCK_HW, BLOCK_C], dtype=tl.float32)
        for start in range(0, HW, BLOCK_HW):
            hw = start + tl.arange(0, BLOCK_HW)
            offs = base + hw[:, None] * C + cs[None, :]
            mask = (hw[:, None] < HW) & cmask[None, :]
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            acc_g += g
            acc_gx += g * x
        tl.store(sg_ptr + n * C + cs, tl.sum(acc_g, axis=0), mask=cmask)
        tl.store(sgx_ptr + n * C + cs, tl.sum(acc_gx, axis=0), mask=cmask)


_BLOCK = 1024


def _shape(x: Tensor) -> Tuple[int, int, int, bool]:
    layout = _layout(x)
    if x.dim() != 4 or layout is None:
        raise ValueError(f"triton kernels take contiguous NCHW or channels_last 4-d tensors, got {tuple(x.shape)} "
                         f"with strides {x.stride()}")
    n, c, h, w = x.shape
    return n, c, h * w, layout


def affine(x: Tensor, scale: Tensor, shift: Tensor, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``scale[n, c] * x + shift[n, c]`` in the layout of ``x``; scale and shift (N, C) float32."""
    n, c, hw, channels_last = _shape(x)
    y = torch.empty_like(x, dtype=out_dtype or x.dtype)
    total = x.numel()
    if total:
        _affine_kernel[(triton.cdiv(total, _BLOCK),)](x, scale.float().contiguous(), shift.float().contiguous(), y,
                                                      total, c, hw, CHANNELS_LAST=channels_last, BLOCK=_BLOCK)
    return y


def nc_sums(g: Tensor, x: Tensor) -> Tuple[Tensor, Tensor]:
    """(sum over H, W of g, sum over H, W of g * x), each (N, C) float32; g and x in one layout."""
    n, c, hw, channels_last = _shape(x)
    if _layout(g) != channels_last or g.shape != x.shape:
        raise ValueError("nc_sums: g and x need the same shape and memory layout")
    sg = torch.empty(n, c, device=x.device, dtype=torch.float32)
    sgx = torch.empty_like(sg)
    if x.numel() == 0:
        return sg.zero_(), sgx.zero_()
    if channels_last:
        block_c = min(64, triton.next_power_of_2(c))
        _nc_sums_nhwc_kernel[(n, triton.cdiv(c, block_c))](g, x, sg, sgx, c, hw, BLOCK_C=block_c, BLOCK_HW=16)
    else:
        block = min(1024, max(16, triton.next_power_of_2(hw)))
        _nc_sums_nchw_kernel[(n * c,)](g, x, sg, sgx, hw, BLOCK=block)
    return sg, sgx


def grad_input(g: Tensor, x: Tensor, a: Tensor, b: Tensor, d: Tensor, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``a[n, c] * g + b[c] * x + d[c]`` in the layout of ``x`` (a (N, C), b and d (C,), float32)."""
    n, c, hw, channels_last = _shape(x)
    out = torch.empty_like(x, dtype=out_dtype or x.dtype)
    total = x.numel()
    if total:
        _grad_input_kernel[(triton.cdiv(total, _BLOCK),)](
            g, x, a.float().contiguous(), b.float().contiguous(), d.float().contiguous(), out, total, c, hw,
            CHANNELS_LAST=channels_last, BLOCK=_BLOCK)
    return out
