"""Convert a checkpoint of the official implementation (VITA-Group/Sandwich-Batch-Normalization) into
this repository's format, so that evaluate.py scores it with our protocol:

    python scripts/convert_official.py gan sngan_sabn_cifar10.pth out.pt experiment=gan/paper_sngan norm=sabn
    python scripts/convert_official.py adv model_epoch190.pt out.pt experiment=adv/paper norm=saauxbn
    python evaluate.py ckpt=out.pt

The Hydra overrides after the paths pick the model the weights belong to (the paper presets by
default); a file that does not fit it fails with the keys that differ.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.common.cli import friendly_errors  # noqa: E402

CONVERTERS = {"gan": ("tasks.gan.official", "experiment=gan/paper_sngan"),
              "adv": ("tasks.adv.official", "experiment=adv/paper")}


def compose_config(task: str, overrides):
    from tasks.common.store import compose
    if not any(o.startswith("experiment=") for o in overrides):
        overrides = [CONVERTERS[task][1], *overrides]
    return compose(*overrides)


@friendly_errors
def main(argv) -> dict:
    if len(argv) < 3 or argv[0] not in CONVERTERS:
        raise ValueError(f"usage: python scripts/convert_official.py {{{'|'.join(CONVERTERS)}}} <official.pt> <out.pt> "
                         "[experiment=<task>/<preset>] [norm=<name>] [key=value ...]")
    task, source, out, overrides = argv[0], argv[1], argv[2], argv[3:]
    if Path(out).exists():
        raise ValueError(f"{out} exists; choose another output path (nothing is overwritten)")
    from tasks.common.official import load_official, write_converted
    module = importlib.import_module(CONVERTERS[task][0])
    cfg = compose_config(task, overrides)
    if cfg.task.name != task:
        raise ValueError(f"experiment is a '{cfg.task.name}' preset, not '{task}'")
    kwargs = {"blocks": tuple(cfg.task.blocks)} if task == "adv" else {}
    modules, notes = module.convert(load_official(source), module.targets(cfg), **kwargs)
    path = write_converted(cfg, modules, source, out, notes)
    summary = {"written": str(path), "task": task, "norm": cfg.norm.name, **notes}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
