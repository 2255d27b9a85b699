"""Name -> norm constructor. Models receive ``norm_layer(num_features)`` built from here."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

from torch import nn

from . import batchnorm, instancenorm


@dataclass(frozen=True)
class NormSpec:
    """A registered norm: its class, the defaults that define the variant, a one-line summary, whether
    it takes a condition and whether it has the shared sandwich affine (reports pair those arms)."""

    cls: Callable[..., nn.Module]
    defaults: Dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    conditional: bool = True
    sandwich: bool = False


_REGISTRY: Dict[str, NormSpec] = {}


def register_norm(name: str, cls: Callable[..., nn.Module], *, summary: str = "",
                  conditional: bool = True, sandwich: bool = False, **defaults: Any) -> None:
    """Register ``cls`` under ``name``; ``defaults`` are options a user can still override."""
    if name in _REGISTRY:
        raise ValueError(f"norm '{name}' is already registered ({_REGISTRY[name].cls.__name__})")
    _REGISTRY[name] = NormSpec(cls, dict(defaults), summary, conditional, sandwich)


def list_norms() -> List[str]:
    """Names accepted by :func:`build_norm`."""
    return list(_REGISTRY)


def get_norm_spec(name: str) -> NormSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown norm '{name}'; known norms: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _accepted_options(cls) -> set:
    names = set()
    for klass in inspect.getmro(cls):
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters
            names |= {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    return names - {"self", "num_features", "num_conditions"}


def _check_values(name: str, num_features: int, num_conditions: int, kwargs: Dict[str, Any]) -> None:
    """Refuse values torch would accept and misbehave with (negative eps, momentum outside [0, 1])."""
    problems = []
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        problems.append(f"num_features={num_features!r} must be an int >= 1")
    if isinstance(num_conditions, bool) or not isinstance(num_conditions, int) or num_conditions < 1:
        problems.append(f"num_conditions={num_conditions!r} must be an int >= 1")
    eps = kwargs.get("eps", 1e-5)
    if not isinstance(eps, (int, float)) or not eps > 0:
        problems.append(f"eps={eps!r} must be > 0")
    momentum = kwargs.get("momentum", 0.1)
    if momentum is not None and (not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1):
        problems.append(f"momentum={momentum!r} must be in [0, 1] (or None for a cumulative average)")
    std = kwargs.get("gamma_init_std", 0.0)
    if not isinstance(std, (int, float)) or std < 0:
        problems.append(f"gamma_init_std={std!r} must be >= 0")
    if problems:
        raise ValueError(f"norm '{name}': " + "; ".join(problems))


def build_norm(name: str, num_features: int, num_conditions: int = 1, **options: Any) -> nn.Module:
    """Build norm ``name`` for ``num_features`` channels and K = ``num_conditions`` conditions.

    The result is called as ``layer(x, condition)``; ``bn`` ignores the condition and for
    ``adain``/``saadain`` it is the style feature map.
    """
    spec = get_norm_spec(name)
    allowed = _accepted_options(spec.cls)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"norm '{name}' does not take option(s) {unknown}; "
                         f"it accepts: {', '.join(sorted(allowed))}")
    kwargs = {**spec.defaults, **options}
    _check_values(name, num_features, num_conditions, kwargs)
    if not spec.conditional:
        return spec.cls(num_features, **kwargs)
    return spec.cls(num_features, num_conditions, **kwargs)


def norm_layer(name: str, num_conditions: int = 1, **options: Any) -> Callable[[int], nn.Module]:
    """A constructor ``f(num_features) -> module`` for models that take a ``norm_layer`` argument.

    Validates the name and options now, so a bad config fails before the model is built.
    """
    build_norm(name, 1, num_conditions, **options)
    return functools.partial(build_norm, name, num_conditions=num_conditions, **options)


register_norm("bn", batchnorm.BatchNorm2d, conditional=False,
              summary="nn.BatchNorm2d (the condition is ignored)")
register_norm("ccbn", batchnorm.CategoricalConditionalBatchNorm2d,
              summary="non-affine BN + one of K affines per sample")
register_norm("sabn", batchnorm.SandwichBatchNorm2d, sandwich=True,
              summary="BN + shared sandwich affine + one of K affines per sample")
register_norm("split_sabn", batchnorm.SplitSandwichBatchNorm2d, sandwich=True, track_running_stats=False,
              summary="SaBN with statistics split by condition (NAS); one condition per batch")
register_norm("auxbn", batchnorm.AuxBatchNorm2d, gamma_init_std=0.0,
              summary="one affine BN per branch (dual BN); PyTorch's (1, 0) init")
register_norm("saauxbn", batchnorm.SandwichAuxBatchNorm2d, sandwich=True,
              summary="one non-affine BN per branch + shared affine + per-branch affine")
register_norm("adain", instancenorm.AdaIN, summary="adaptive instance norm (no parameters)")
register_norm("saadain", instancenorm.SandwichAdaIN, sandwich=True,
              summary="AdaIN with a shared learnable affine, initialised to exactly (1, 0)")
