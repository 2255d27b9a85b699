"""What a task says about itself to the generic scripts (tables, plots, report, step benchmark).

Each task package holds a ``report.py`` defining ``REPORT = TaskReport(...)``: its table rows, the
paper's numbers, the plot panels, the deviations of each cpu-scale preset from the paper's protocol,
the criteria stated before a sweep and its step-benchmark entry. ``scripts/`` read only this, so a new
task is one folder (plus its configs) and no script changes.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .task import TASKS_DIR, task_names


@dataclass(frozen=True)
class Row:
    """One table row: the metric key of the result files, its label and which direction is better."""

    key: str
    label: str
    better: Optional[str] = None   # "max", "min" or None (no direction, no test)
    optional: bool = False         # left out of a scale's table when no run of it has the metric
    # norm -> the key this row reads for that norm's runs instead (adv: one BN network serves both
    # branches, so its clean-branch accuracy is the adv branch's)
    same_as: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Criterion:
    """A criterion stated in a preset's header before its runs; the report gives its outcome.

    ``paired_t``: one-sided paired t-test at ``alpha`` that ``variant`` beats ``baseline`` on ``metric``
    at the end of training. ``mann_whitney``: one-sided Mann-Whitney U test of the same (for outcomes
    far from normal, e.g. bimodal search results). ``gap_closes``: with g_k(t) = metric(variant) - metric(baseline) of seed k at
    validation t, "the gap closes" if g_k(last) < g_k(``first_step``) in every seed, and "the variant
    overtakes" if besides the mean of g_k(last) is below 0 (lower metric is better). ``min_runs``: the
    runs per arm (paired seeds for ``paired_t``) the preset asks for; fewer give no outcome yet.
    """

    metric: str
    baseline: str
    variant: str
    kind: str = "paired_t"
    alpha: float = 0.05
    first_step: int = 0
    min_runs: int = 2


@dataclass(frozen=True)
class TaskReport:
    title: str
    rows: Tuple[Row, ...]
    paper: Dict[Tuple[str, str], Any]
    paper_note: str
    panels: Tuple[Tuple[str, str], ...]
    deviations: Dict[str, List[str]] = field(default_factory=dict)   # scale -> how it departs from the paper
    criteria: Dict[str, Criterion] = field(default_factory=dict)     # scale -> its pre-stated criterion
    bench_norm: str = "sabn"                  # the norm scripts/bench_step.py times
    paper_scale: str = "paper"                # the task's paper preset
    bench_paper_overrides: Tuple[str, ...] = ()   # what lets the paper model run on the data mirror
    # extra Markdown sections of a scale's table: f(scale, runs) -> str, runs as make_tables loads them
    sections: Tuple[Callable[[str, Any], str], ...] = ()
    # per-epoch series derived from a result file, for panels named "series:<name>": run -> (epochs, values)
    series: Dict[str, Callable[[Dict[str, Any]], Tuple[List[float], List[float]]]] = field(default_factory=dict)
    series_x: Dict[str, str] = field(default_factory=dict)   # a series' x axis where it is not "epoch"

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)


def task_report(name: str) -> TaskReport:
    """The ``REPORT`` of ``tasks/<name>/report.py``."""
    return importlib.import_module(f"tasks.{name}.report").REPORT


def task_reports() -> Dict[str, TaskReport]:
    """Every task's report, in the order of :func:`task_names`."""
    return {name: task_report(name) for name in task_names()}


def deviations(task: str, scale: str) -> List[str]:
    """How preset ``scale`` of ``task`` departs from the paper (copied into each result file); none
    for a task without a ``report.py`` (one built outside this repository)."""
    if not (TASKS_DIR / task / "report.py").is_file():
        return []
    return list(task_report(task).deviations.get(scale, []))


def trajectory(run, key: str) -> dict:
    """{step: value} of a metric at every evaluation of a run, the final one included."""
    out = {}
    for record in run.get("curves", []):
        for prefix in ("eval/", "final/"):
            value = record.get(prefix + key)
            if isinstance(value, (int, float)) and value == value:
                out[record["step"]] = value
    return out
