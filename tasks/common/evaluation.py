"""Evaluate a checkpoint with its own config (the final-evaluation protocol of its task)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from . import checkpoint as ckpt
from .config import validate
from .distributed import DistInfo, unwrap
from .logging import MetricsLogger
from .nonfinite import check_payload
from .runner import prepare_device
from .seeding import seed_everything
from .task import RunContext, get_task


def evaluate_checkpoint(path: str, task_name: Optional[str] = None, norm: Optional[str] = None,
                        overrides: Optional[Dict[str, Any]] = None, device: str = "auto") -> Dict[str, Any]:
    """Load ``path``, rebuild its task from the saved config, restore the weights and evaluate.

    ``task_name`` and ``norm``, when given, must match what the checkpoint was trained with.
    ``overrides`` (dotted keys) change evaluation settings such as ``task.test_examples``.
    """
    task, ctx, state, payload = load_trained(path, task_name, norm, overrides, device)
    metrics = task.evaluate(state, payload["step"], ctx, final=True)
    return {"checkpoint": str(path), "step": payload["step"], "task": task.name, "norm": ctx.cfg.norm.name,
            "metrics": metrics, "protocol": task.protocol(ctx, state)}


def load_trained(path: str, task_name: Optional[str] = None, norm: Optional[str] = None,
                 overrides: Optional[Dict[str, Any]] = None, device: str = "auto"):
    """(task, context, state with the checkpoint's weights, payload): a trained run rebuilt from its file."""
    payload = ckpt.load_checkpoint(Path(path))
    check_payload(payload, str(path))   # argmax of NaN logits would read as an accuracy
    saved = OmegaConf.create(payload["config"])
    if task_name and saved.task.name != task_name:
        raise ckpt.CheckpointError(f"{path} is a '{saved.task.name}' checkpoint, not '{task_name}'")
    if norm and saved.norm.name != norm:
        raise ckpt.CheckpointError(f"{path} was trained with norm '{saved.norm.name}', not '{norm}'; "
                                   f"drop the norm override or pick a {norm} checkpoint")
    for key, value in (overrides or {}).items():
        OmegaConf.update(saved, key, value, force_add=False)
    task = get_task(saved.task.name)
    cfg = validate(saved, task.schema)
    task.check_norm(cfg)
    dev = prepare_device(cfg, device)   # threads and CPU kernels as in training
    seed_everything(cfg.trainer.seed)
    run_dir = Path(path).resolve().parent.parent
    ctx = RunContext(cfg, dev, DistInfo(), MetricsLogger(run_dir, enabled=False), run_dir)
    state = task.build(ctx)
    for name, module in state.modules.items():
        try:
            unwrap(module).load_state_dict(payload["modules"][name])
        except (KeyError, RuntimeError) as error:
            raise ckpt.CheckpointError(f"{path}: weights for '{name}' do not fit the model built from "
                                       f"its config ({str(error).splitlines()[0][:200]})") from None
    return task, ctx, state, payload
