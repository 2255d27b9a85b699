"""Result files: results/<task>/<experiment>/seed<k>.json with metrics, protocol and provenance."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from .provenance import REPO_ROOT


def result_path(results_dir: str, task: str, experiment: str, seed: int) -> Path:
    base = Path(results_dir)
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / task / experiment / f"seed{seed}.json"


def keep_image(source: Path, results_file: Path, name: str, experiment: str, seed: int) -> Path:
    """Copy a run's image next to its task's results (``<name>_<experiment>_seed<k>.png``), atomically."""
    target = results_file.parent.parent / f"{name}_{experiment}_seed{seed}{source.suffix}"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(source.read_bytes())
    tmp.replace(target)
    return target


def write_result(path: Path, payload: Dict[str, Any]) -> Path:
    """Write one result file atomically, keys sorted so that reruns diff cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    tmp.replace(path)
    return path
