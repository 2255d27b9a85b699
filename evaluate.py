"""Evaluate a checkpoint: python evaluate.py task=adv ckpt=runs/adv/.../checkpoints/last.pt

Extra dotted keys override evaluation settings, e.g. task.test_examples=10000 task.eval_steps=[20].
"""
import json
import sys

from tasks.common.cli import friendly_errors
from tasks.common.evaluation import evaluate_checkpoint


@friendly_errors
def main(argv) -> dict:
    import yaml
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\nusage: python evaluate.py ckpt=<path> [task=<name>] [norm=<name>] [device=auto|cpu|cuda] "
              "[key=value ...]")
        return {}
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    if "ckpt" not in args:
        raise ValueError("usage: python evaluate.py ckpt=<path> [task=<name>] [norm=<name>] [key=value ...]")
    ckpt = args.pop("ckpt")
    task, norm, device = args.pop("task", None), args.pop("norm", None), args.pop("device", "auto")
    out = evaluate_checkpoint(ckpt, task, norm, {k: yaml.safe_load(v) for k, v in args.items()}, device)
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
