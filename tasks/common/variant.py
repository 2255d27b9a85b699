"""The run variant: which experiment-defining overrides a command adds to its preset.

``python train.py -m experiment=adv/smoke task.lr=0.1,0.05`` must give each job its own run directory
(and result file), or the second job resumes, or overwrites, the first. The variant is a readable
name built from the command-line overrides that define the experiment (``lr=0.05``), excluding the
preset and norm choices (already in the experiment name), the seed (its own folder level) and the
run-control keys that may change on resume; long names are shortened with a hash. The same command
always gives the same name, a preset run without such overrides gets none (its path is unchanged),
and a run without an ``experiment=`` preset is marked ``bare``, so it never shares a folder with one.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, List

import yaml

# Keys (or key prefixes) that do not define the experiment: choices already in the experiment name,
# the seed, paths, logging and the run-control keys that may change on resume.
EXACT = ("experiment", "norm")   # group choices; norm.options.* do define the experiment
EXCLUDED = ("trainer.seed", "paths", "logger", "results", "hydra", "trainer.resume",
            "trainer.allow_config_change", "trainer.steps", "trainer.progress", "trainer.log_every",
            "trainer.device", "trainer.num_threads", "trainer.checkpoint_every", "trainer.keep_every",
            "trainer.on_nonfinite", "trainer.eval_every")
MAX_LEN = 60
SAFE = re.compile(r"[^A-Za-z0-9_.=,+\-\[\]]")


def _excluded(key: str) -> bool:
    return key in EXACT or any(key == k or key.startswith(k + ".") or key.startswith(k + "/") for k in EXCLUDED)


def _normal(value: str) -> str:
    """One spelling per value: 5e-2 and 0.05 name the same variant."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str):   # YAML 1.1 reads 5e-2 (no dot) as a string; Hydra reads it as a float
        try:
            parsed = float(parsed)
        except ValueError:
            return value
    if isinstance(parsed, bool):
        return str(parsed).lower()
    if isinstance(parsed, float):
        return repr(parsed)
    if isinstance(parsed, list):
        return "[" + ",".join(_normal(str(v)) for v in parsed) + "]"
    return str(value)


def variant_name(overrides: Iterable[str]) -> str:
    """``""`` for a preset run, else ``+k=v,...`` (``task.`` dropped from keys; ``bare`` without a preset)."""
    parts: List[str] = []
    has_preset = False
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.lstrip("+~")
        if key == "experiment":
            has_preset = has_preset or value not in ("null", "")
        if _excluded(key):
            continue
        short = key[len("task."):] if key.startswith("task.") else key
        parts.append(f"{short}={_normal(value)}")
    parts.sort()
    if not has_preset:
        parts.insert(0, "bare")
    if not parts:
        return ""
    name = ",".join(parts)
    if len(name) > MAX_LEN or SAFE.search(name):
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = SAFE.sub("_", name)[:MAX_LEN - 12] + "-" + digest
    return "+" + name


def run_variant() -> str:
    """``${run_variant:}``: the variant of the running Hydra job (empty outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf
        # unresolved: an override such as paths.run_dir=.../${results.experiment} would resolve back here
        overrides = OmegaConf.to_container(HydraConfig.get().overrides, resolve=False)["task"]
    except (ValueError, ImportError):   # composed outside an app (tests, scripts): no command line
        return ""
    return variant_name(overrides)
