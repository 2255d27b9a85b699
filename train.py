"""Train any task: python train.py experiment=adv/cpu norm=saauxbn trainer.seed=1"""
import json
import sys

import hydra
from omegaconf import DictConfig

from tasks.common.cli import friendly_errors
from tasks.common.config import validate
from tasks.common.store import register_configs
from tasks.common.runner import train
from tasks.common.task import get_task


@friendly_errors
def run(cfg: DictConfig) -> dict:
    task = get_task(cfg.task.name)
    out = train(validate(cfg, task.schema), task)
    print(json.dumps(out, indent=2, default=float))
    if out.get("signal"):   # interrupted and checkpointed: 128 + signal, so launchers and schedulers stop
        sys.exit(128 + out["signal"])
    return out


register_configs()   # the dataclass schemas: every default and type of the configs


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
