"""Non-finite values in a run: found at the step they appear, never saved, never reported as a result.

``trainer.on_nonfinite=stop`` (default): a non-finite training metric (the loss) or parameter stops the
run with :class:`NonFiniteError` (exit code 3 at the entry points); ``last.pt`` keeps the last finite
state, no result file is written. ``skip_step``: the step's update is undone (modules and optimizers
restored from a copy taken before it, as AMP's grad scaler skips a step whose gradients overflowed),
its batch stays consumed, and the skips are counted in the metrics (``nonfinite_skips``).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

EXIT_CODE = 3


class NonFiniteError(RuntimeError):
    """A non-finite loss, parameter or checkpoint value, named with its step."""


def _floats(tensors: Iterable[Tuple[str, torch.Tensor]]):
    return [(k, t) for k, t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point()]


def first_nonfinite(named: Iterable[Tuple[str, Any]]) -> Optional[Tuple[str, str]]:
    """(name, value) of the first non-finite number or tensor among ``named``, else None. Tensors are
    checked with one reduction each and one host read for all of them."""
    named = list(named)
    for key, value in named:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            return key, repr(float(value))
    tensors = _floats(named)
    if not tensors:
        return None
    ok = torch.stack([t.detach().isfinite().all().to(tensors[0][1].device) for _, t in tensors])
    if bool(ok.all()):
        return None
    key, t = tensors[int((~ok).nonzero()[0, 0])]
    flat = t.detach().flatten()
    bad = flat[~flat.isfinite()]
    return key, f"{bad[0].item()!r} in {bad.numel()} of {flat.numel()} values"


def state_tensors(modules: Dict[str, torch.nn.Module]) -> Iterable[Tuple[str, torch.Tensor]]:
    """Every parameter and buffer of the run's modules, named ``<module>.<key>``."""
    from .distributed import unwrap
    for name, module in modules.items():
        for key, value in unwrap(module).state_dict().items():
            yield f"{name}.{key}", value


def check_payload(payload: Dict[str, Any], where: str) -> None:
    """Refuse a checkpoint payload whose weights hold a non-finite value (it is never written or scored)."""
    named = ((f"{m}.{k}", v) for m, sd in payload.get("modules", {}).items() for k, v in sd.items())
    bad = first_nonfinite(named)
    if bad:
        raise NonFiniteError(f"{where}: non-finite value in {bad[0]} ({bad[1]}) at step {payload.get('step')}; "
                             "a checkpoint with non-finite weights is never written or evaluated (an earlier one stays as it "
                             "was). Lower the learning rate, or set trainer.on_nonfinite=skip_step")


class StepGuard:
    """Copies of the modules' and optimizers' state before a step, for ``skip_step``."""

    def __init__(self, state) -> None:
        self.state = state
        self.saved = None

    def snapshot(self) -> None:
        from .distributed import unwrap
        self.saved = ({k: {n: t.detach().clone() for n, t in unwrap(m).state_dict().items()}
                       for k, m in self.state.modules.items()},
                      {k: copy.deepcopy(o.state_dict()) for k, o in self.state.optimizers.items()})

    def restore(self) -> None:
        from .distributed import unwrap
        modules, optimizers = self.saved
        for k, m in self.state.modules.items():
            unwrap(m).load_state_dict(modules[k])
        for k, o in self.state.optimizers.items():
            o.load_state_dict(optimizers[k])


def check_step(metrics: Dict[str, Any], state, step: int, mode: str, guard: Optional[StepGuard]) -> bool:
    """After training step ``step`` (1-based): True when it was skipped (``skip_step``); raises
    :class:`NonFiniteError` under ``stop``. Metrics are checked every step (one host read), the
    weights too under ``skip_step`` (a non-finite update must be undone at once)."""
    bad = first_nonfinite((f"train/{k}", v) for k, v in metrics.items())
    if bad is None and mode == "skip_step":
        bad = first_nonfinite(state_tensors(state.modules))
    if bad is None:
        return False
    if mode == "skip_step":
        guard.restore()
        return True
    raise NonFiniteError(
        f"non-finite {bad[0]} ({bad[1]}) at training step {step}; the run stops here: checkpoints/last.pt "
        "keeps the last finite state and no result file is written. Lower the learning rate, or set "
        "trainer.on_nonfinite=skip_step to drop such steps' updates and count them")


def sanitize(value: Any) -> Any:
    """A metric value as strict JSON: non-finite floats become null (json.dumps would write bare NaN)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v) for v in value]
    return value
