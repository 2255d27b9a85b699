"""Command-line overrides checked before Hydra sees them: every config mistake is one message naming the
key and what it accepts, exit 2 (Hydra's own errors exit 1, suggest '+key' for a typo, and list no
choices of a nested group such as experiment=gan/...)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Optional

from .config import ConfigError, RunConfig
from .provenance import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
GROUPS = ("experiment", "task", "norm", "data", "trainer", "paths", "logger", "hydra/launcher")
FREE_FORM = ("norm.options",)   # dicts a user fills with any key (with or without '+')


def group_choices(group: str) -> List[str]:
    """The options of a config group: yaml files under configs/<group> (nested: 'gan/smoke'), and for
    'task' the registered task schemas; the schema bases ('base') are not choices."""
    folder = CONFIGS / group
    found = {str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")} if folder.is_dir() else set()
    if group == "task":
        from .task import task_names
        found |= set(task_names())
    if group == "hydra/launcher":
        found |= {"basic", "submitit_slurm", "submitit_local"}
    return sorted(found - {"base"})


def _task_of(overrides: Dict[str, str]) -> str:
    """The task a command runs: task=..., else the experiment preset's '/task' override, else adv."""
    if overrides.get("task"):
        return overrides["task"]
    preset = overrides.get("experiment")
    if preset and (CONFIGS / "experiment" / f"{preset}.yaml").is_file():
        match = re.search(r"override /task:\s*(\w+)", (CONFIGS / "experiment" / f"{preset}.yaml").read_text())
        if match:
            return match.group(1)
    return "adv"


def _schema_has(schema: type, parts: List[str]) -> Optional[List[str]]:
    """None when the dotted path exists in the dataclass ``schema``; else the keys allowed where it fails."""
    node = schema
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return None   # below a free-form value (a dict or Any): anything goes
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return sorted(fields)
        f = fields[part]
        if f.default_factory is not dataclasses.MISSING:
            sample = f.default_factory()
            node = type(sample) if dataclasses.is_dataclass(sample) else None
        else:
            node = None
    return None


def check_overrides(argv: List[str]) -> None:
    """Raise ConfigError for an unknown key or group option among ``argv``'s ``key=value`` overrides."""
    items = [a for a in argv if "=" in a and not a.startswith("-")]
    plain = {a.split("=", 1)[0].lstrip("+~"): a.split("=", 1)[1] for a in items}
    for raw in items:
        key, value = raw.split("=", 1)
        adding = key.startswith("+")
        key = key.lstrip("+~")
        if key.startswith("hydra.") or key == "hydra":
            continue
        if key in GROUPS:
            choices = group_choices(key)
            values = [v for v in value.split(",")] if "," in value and "[" not in value else [value]
            for v in values:
                if v not in choices and v != "null":
                    raise ConfigError(f"bad config: {key}={v} is not an option of the '{key}' group; choose one of: "
                                      f"{', '.join(choices)}")
            continue
        if any(key == f or key.startswith(f + ".") for f in FREE_FORM):
            continue
        parts = key.split(".")
        if parts[0] == "task":
            from .task import get_task
            task = _task_of(plain).split(",")[0]
            try:
                schema = get_task(task).schema
            except (KeyError, ValueError):
                continue   # the task itself is wrong: reported as a group option above
            allowed = _schema_has(schema, parts[1:])
            where = f"task ({task})" + ("." + ".".join(parts[1:-1]) if len(parts) > 2 else "")
        else:
            allowed = _schema_has(RunConfig, parts)
            where = ".".join(parts[:-1]) or "the run config"
        if allowed is not None and not adding:
            raise ConfigError(f"bad config: unknown key '{key}' (from {key}={value}); allowed keys under {where}: "
                              f"{', '.join(allowed)}")
        if allowed is not None and adding:
            raise ConfigError(f"bad config: '+{key}' adds a key that no part of the code reads; allowed keys under "
                              f"{where}: {', '.join(allowed)}")
