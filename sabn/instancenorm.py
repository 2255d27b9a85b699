"""AdaIN and SaAdaIN: instance normalisation whose "independent affine" is the style's statistics."""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor, nn

from .functional import instance_stats

Style = Union[Tensor, Tuple[Tensor, Tensor]]


class AdaptiveInstanceNorm2d(nn.Module):
    """AdaIN(c, s) = sigma(s) * (c - mu(c)) / sigma(c) + mu(s) (Huang & Belongie), with an optional
    shared learnable affine between the normalisation and the style statistics (SaAdaIN).

    The condition is the style feature map (N or 1, C, H, W), or a ``(mean, std)`` pair of (N, C)
    tensors. Statistics follow pytorch-AdaIN: unbiased variance plus ``eps`` under the square root.
    """

    def __init__(self, num_features: int, num_conditions: int = 1, *, shared_affine: bool = False,
                 gamma_init_std: float = 0.0, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.num_features, self.eps, self.gamma_init_std = num_features, eps, gamma_init_std
        if shared_affine:
            self.weight = nn.Parameter(torch.empty(num_features, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.empty(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Shared gamma exactly 1 (or N(1, std)), beta exactly 0, as the SaAdaIN reference."""
        if self.weight is None:
            return
        with torch.no_grad():
            self.weight.normal_(1.0, self.gamma_init_std) if self.gamma_init_std > 0 else self.weight.fill_(1.0)
            self.bias.zero_()

    def extra_repr(self) -> str:
        return f"{self.num_features}, shared_affine={self.weight is not None}, eps={self.eps}"

    def _style_stats(self, style: Style, batch: int) -> Tuple[Tensor, Tensor]:
        name = type(self).__name__
        if isinstance(style, (tuple, list)) and len(style) == 2:
            mean, std = style
        elif isinstance(style, Tensor):
            if style.dim() != 4 or style.shape[1] != self.num_features:
                raise ValueError(f"{name}: style features must have shape (N, {self.num_features}, H, W), "
                                 f"got {tuple(style.shape)}")
            mean, std = instance_stats(style, self.eps)
        else:
            raise ValueError(f"{name}: the condition is the style feature map or a (mean, std) pair, "
                             f"got {type(style).__name__}")
        if mean.shape[-1] != self.num_features or mean.shape[0] not in (1, batch):
            raise ValueError(f"{name}: style statistics of shape {tuple(mean.shape)} do not match "
                             f"{batch} content images with {self.num_features} channels")
        return mean, std

    def forward(self, x: Tensor, condition: Style) -> Tensor:
        """Normalise content features ``x`` per instance and give them the style's statistics."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: content features must have shape "
                             f"(N, {self.num_features}, H, W), got {tuple(x.shape)}")
        style_mean, style_std = self._style_stats(condition, x.shape[0])
        mean, std = instance_stats(x, self.eps)
        scale = style_std / std
        shift = style_mean - scale * mean
        if self.weight is not None:
            # sigma(s) * (gamma * (x - mu) / sigma + beta) + mu(s), folded into one scale and shift
            shift = style_std * (self.bias - self.weight * mean / std) + style_mean
            scale = scale * self.weight
        out = torch.addcmul(shift[:, :, None, None], x.to(scale.dtype), scale[:, :, None, None])
        return out.to(x.dtype)


class AdaIN(AdaptiveInstanceNorm2d):
    """Plain AdaIN (no learnable parameters)."""

    def __init__(self, num_features: int, num_conditions: int = 1, **options) -> None:
        super().__init__(num_features, num_conditions, shared_affine=False, **options)


class SandwichAdaIN(AdaptiveInstanceNorm2d):
    """SaAdaIN(c, s) = sigma(s) * (gamma_sa * (c - mu(c)) / sigma(c) + beta_sa) + mu(s); gamma 1, beta 0."""

    def __init__(self, num_features: int, num_conditions: int = 1, **options) -> None:
        super().__init__(num_features, num_conditions, shared_affine=True, **options)
