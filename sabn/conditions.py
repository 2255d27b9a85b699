"""Conditions of the conditional norms: validation of class labels / branch indices, one place."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Union

import torch
from torch import Tensor

Condition = Union[int, Tensor, None]

_CHECK_VALUES = True


def set_condition_value_checks(enabled: bool) -> None:
    """Turn the range check of condition *values* on or off (shape and dtype are always checked).

    The value check reads the condition on the host, which synchronises a GPU once per layer call.
    Switch it off only once a run is known to feed valid labels; under ``torch.compile`` it is
    skipped anyway so that the graph does not break.
    """
    global _CHECK_VALUES
    _CHECK_VALUES = bool(enabled)


@contextmanager
def condition_value_checks(enabled: bool) -> Iterator[None]:
    """Within the block, the value check is ``enabled``; the previous setting is restored after it.
    For code that has validated its labels once (a training step drawing them from a checked data
    set or from ``randint(0, K)``) and should not synchronise a GPU at every layer call."""
    global _CHECK_VALUES
    saved, _CHECK_VALUES = _CHECK_VALUES, bool(enabled)
    try:
        yield
    finally:
        _CHECK_VALUES = saved


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


def resolve_condition(
    layer: str, condition: Condition, num_conditions: int, batch_size: int, per_sample: bool
) -> Union[int, Tensor]:
    """Validate ``condition`` and return an ``int`` (whole batch) or a LongTensor of shape [N].

    Accepts a Python int, a 0-d or 1-element integer tensor (one condition for the whole batch) or
    an integer tensor of shape [N] (one per sample; only where ``per_sample`` is true, otherwise it
    must hold one repeated value). Anything else raises a ``ValueError`` naming the layer and K.
    """
    k = num_conditions
    if condition is None:
        if k == 1:
            return 0
        raise ValueError(f"{layer}: needs a condition in [0, {k}) but got None; pass it as layer(x, condition)")
    if isinstance(condition, bool) or not isinstance(condition, (int, Tensor)):
        raise ValueError(
            f"{layer}: condition must be an int or an integer tensor, got {type(condition).__name__}"
        )
    if isinstance(condition, int):
        if not 0 <= condition < k:
            raise ValueError(f"{layer}: condition {condition} is outside [0, {k}) (K={k})")
        return condition
    if condition.dtype.is_floating_point or condition.dtype.is_complex or condition.dtype == torch.bool:
        raise ValueError(
            f"{layer}: condition must be an integer tensor (torch.long), got dtype {condition.dtype}; "
            "class labels are usually converted with .long()"
        )
    if condition.dim() > 1 or (condition.dim() == 1 and condition.numel() not in (1, batch_size)):
        raise ValueError(
            f"{layer}: condition has shape {tuple(condition.shape)}; expected a scalar, shape [1] or "
            f"shape [N] with N = batch size {batch_size} (K={k})"
        )
    compiling = _is_compiling()
    if _CHECK_VALUES and not compiling and condition.numel() > 0 and condition.device.type != "meta":
        lo, hi = (int(v) for v in torch.aminmax(condition))
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{layer}: condition value {bad} is outside [0, {k}) (K={k})")
    if condition.dim() == 0 or condition.numel() == 1:
        symbolic = compiling or condition.device.type == "meta"
        return condition.reshape(()) if symbolic else int(condition.reshape(()))
    if not per_sample:
        if compiling:
            return condition[0]
        if bool((condition != condition[0]).any()):
            raise ValueError(
                f"{layer}: keeps separate statistics per condition, so the whole batch needs one "
                f"condition, but got several values in {condition.tolist()[:8]}... (K={k}); "
                "split the batch by condition and call the layer once per part"
            )
        return int(condition[0])
    return condition.long()
