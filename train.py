"""Train any task: python train.py experiment=adv/cpu norm=saauxbn trainer.seed=1"""
import json
import os
import sys

import hydra
from omegaconf import DictConfig

from tasks.common.cli import friendly_errors
from tasks.common.config import validate
from tasks.common.overrides import check_overrides
from tasks.common.store import register_configs
from tasks.common.runner import train
from tasks.common.task import get_task


@friendly_errors
def run(cfg: DictConfig) -> dict:
    task = get_task(cfg.task.name)
    out = train(validate(cfg, task.schema), task)
    if int(os.environ.get("RANK", "0")) == 0:   # one result per job: rank 0 speaks for all
        print(json.dumps(out, indent=2, default=float))
    if out.get("signal"):   # interrupted and checkpointed: 128 + signal, so launchers and schedulers stop
        sys.exit(128 + out["signal"])
    return out


register_configs()   # the dataclass schemas: every default and type of the configs


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


@friendly_errors
def check_command_line() -> None:
    """Config mistakes in the overrides: one message naming the key and its choices, exit 2 (before Hydra)."""
    check_overrides(sys.argv[1:])


if __name__ == "__main__":
    check_command_line()
    main()
