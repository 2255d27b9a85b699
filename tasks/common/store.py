"""The dataclass schemas as Hydra's config store: the single source of every default.

``configs/*.yaml`` state only what differs from these (a preset lists its changes); composing a run
validates every key and type against them. Call :func:`register_configs` before composing.
"""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from . import config as schema
from .task import get_task, task_names

_done = False


def register_configs() -> None:
    """Register the run schema and each group's base (``trainer/base``, ``data/base``, ..., and
    ``task/<name>`` from every task's own schema). Idempotent."""
    global _done
    if _done:
        return
    cs = ConfigStore.instance()
    cs.store(name="run_base", node=schema.RunConfig)
    for group, node in (("trainer", schema.TrainerConfig), ("data", schema.DataConfig), ("norm", schema.NormConfig),
                        ("paths", schema.PathsConfig), ("logger", schema.LoggerConfig)):
        cs.store(group=group, name="base", node=node)
    for name in task_names():
        cs.store(group="task", name=name, node=get_task(name).schema)
    _done = True


def compose(*overrides: str):
    """The validated config that ``python train.py <overrides>`` runs (for tests and scripts)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from .config import validate
    from .provenance import REPO_ROOT
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides))
    task = get_task(cfg.task.name)
    cfg = validate(cfg, task.schema)
    task.check_config(cfg)
    return cfg
