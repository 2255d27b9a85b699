"""A table from any set of runs: python scripts/compare_runs.py PATH... [--baseline KEY=VALUE] [--csv F] [--plot F]

PATH: run directories, globs of them, or any folder above them (a multirun root, runs/adv): every
folder holding a run's config.yaml and metrics.jsonl is a run. Runs are grouped by the config keys
that differ between them (the seed, paths and run-control keys aside); each group is one row with n and
mean ± std over its seeds of every final metric. A run still training contributes its last evaluation
(marked). ``--baseline KEY=VALUE`` adds, for every other group, the paired per-seed differences
against the group with KEY=VALUE (seeds matched by trainer.seed) with the 95 % t-interval and the
one-sided paired t-test p of the report (tasks.common.stats: one implementation). Markdown on stdout.
"""
from __future__ import annotations

import argparse
import csv
import glob
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.common.rundir import read_jsonl  # noqa: E402
from tasks.common.stats import paired_summary  # noqa: E402
from tasks.common.variant import EXCLUDED  # noqa: E402

IGNORED = tuple(k for k in EXCLUDED if k != "trainer.seed") + ("results", "trainer.seed")


def find_runs(paths: List[str]) -> List[Path]:
    """Every run directory under the given paths (globs expanded), once each, in sorted order."""
    found = set()
    for pattern in paths:
        matches = glob.glob(pattern) or [pattern]
        for match in map(Path, matches):
            if not match.exists():
                raise SystemExit(f"error: {match} does not exist")
            candidates = [match] if (match / "config.yaml").is_file() else [p.parent for p in match.rglob("config.yaml")]
            found.update(c for c in candidates if (c / "metrics.jsonl").is_file())
    if not found:
        raise SystemExit(f"error: no run directories (a config.yaml beside a metrics.jsonl) under {' '.join(paths)}")
    return sorted(found)


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tuple(tree) if isinstance(tree, list) else tree}


def load_run(run_dir: Path) -> Dict[str, Any]:
    """Config (flattened), seed, final metrics (or the last evaluation of a running run) and curves."""
    config = _flatten(yaml.safe_load((run_dir / "config.yaml").read_text()))
    rows = read_jsonl(run_dir / "metrics.jsonl")
    final = [r for r in rows if any(k.startswith("final/") for k in r)]
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if final:
        metrics, state = {k[6:]: v for k, v in final[-1].items() if k.startswith("final/")}, "final"
    elif evals:
        metrics, state = {k[5:]: v for k, v in evals[-1].items() if k.startswith("eval/")}, f"running (eval at step {evals[-1]['step']})"
    else:
        metrics, state = {}, "running (no evaluation yet)"
    curves: Dict[str, Dict[int, float]] = {}
    for r in evals + final:
        for k, v in r.items():
            if k.startswith(("eval/", "final/")) and isinstance(v, (int, float)):
                curves.setdefault(k.split("/", 1)[1], {})[r["step"]] = float(v)
    return {"dir": run_dir, "config": config, "seed": config.get("trainer.seed"), "task": config.get("task.name"),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "state": state, "curves": curves}


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED)


def differing_keys(runs: List[Dict[str, Any]]) -> List[str]:
    """Config keys whose values differ between the runs (what a group is), seeds and run control aside."""
    keys = sorted({k for r in runs for k in r["config"]})
    return [k for k in keys if not _ignored(k) and len({repr(r["config"].get(k)) for r in runs}) > 1]


def group_runs(runs: List[Dict[str, Any]]) -> Tuple[List[str], Dict[Tuple, List[Dict[str, Any]]]]:
    keys = differing_keys(runs)
    groups: Dict[Tuple, List[Dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(r["config"].get(k) for k in keys), []).append(r)
    return keys, groups


def _label(keys: List[str], values: Tuple) -> str:
    short = [k[len("task."):] if k.startswith("task.") else k for k in keys]
    return ", ".join(f"{k}={v}" for k, v in zip(short, values)) or "all runs"


def _fmt(values: List[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def _better(task: Optional[str], metric: str) -> Optional[str]:
    try:
        from tasks.common.report_spec import task_report
        return task_report(task).row(metric).better
    except Exception:   # a task without a report spec, or a metric it does not list: no direction
        return None


def summary_rows(keys, groups, metrics) -> List[List[str]]:
    rows = []
    for values, members in groups.items():
        seeds = sorted(m["seed"] for m in members)
        running = sum(m["state"] != "final" for m in members)
        cells = [_fmt([m["metrics"][k] for m in members if k in m["metrics"]]) for k in metrics]
        rows.append([_label(keys, values), str(len(members)) + (f" ({running} running)" if running else ""),
                     ",".join(map(str, seeds)), *cells])
    return rows


def baseline_rows(keys, groups, metrics, baseline: str) -> List[List[str]]:
    """Paired per-seed differences of every group against the baseline group."""
    key, _, value = baseline.partition("=")
    matches = [k for k in keys if k == key or k.endswith("." + key)]
    if not matches:
        raise SystemExit(f"error: --baseline {baseline}: '{key}' is not a key that differs between these runs; "
                         f"they differ in: {', '.join(keys) or 'nothing'}")
    index = keys.index(matches[0])
    base = [v for v in groups if str(v[index]) == value]
    if not base:
        raise SystemExit(f"error: --baseline {baseline}: no group has {matches[0]}={value}; values: "
                         f"{', '.join(sorted({str(v[index]) for v in groups}))}")
    base_runs = {m["seed"]: m for m in groups[base[0]]}
    out = []
    for values, members in groups.items():
        if values == base[0]:
            continue
        for metric in metrics:
            pairs = [(m["metrics"][metric], base_runs[m["seed"]]["metrics"][metric]) for m in members
                     if m["seed"] in base_runs and metric in m["metrics"] and metric in base_runs[m["seed"]]["metrics"]]
            result = paired_summary([a - b for a, b in pairs], _better(members[0]["task"], metric))
            if result is None:
                continue
            p = "n/a" if result["p"] is None else f"{result['p']:.3f}"
            out.append([_label(keys, values), metric, ", ".join(f"{d:+.4g}" for d in result["diffs"]),
                        f"{result['mean']:+.4g}", f"[{result['ci'][0]:+.4g}, {result['ci'][1]:+.4g}]", p,
                        str(result["n"])])
    return out


def _markdown(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def plot(keys, groups, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted({k for members in groups.values() for m in members for k in m["curves"]})[:6]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for values, members in groups.items():
            steps = sorted({s for m in members for s in m["curves"].get(name, {})})
            means = [statistics.mean([m["curves"][name][s] for m in members if s in m["curves"].get(name, {})])
                     for s in steps]
            ax.plot(steps, means, marker="o", label=_label(keys, values))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="run dirs, globs, or folders above them")
    p.add_argument("--baseline", help="KEY=VALUE: paired differences of every group against this one")
    p.add_argument("--csv", help="also write the summary table to this CSV file")
    p.add_argument("--plot", help="also plot the evaluation curves per group (mean over seeds) to this image")
    args = p.parse_args(argv)
    runs = [load_run(d) for d in find_runs(args.paths)]
    keys, groups = group_runs(runs)
    metrics = sorted({k for r in runs for k in r["metrics"]})
    header = ["group", "n", "seeds", *metrics]
    rows = summary_rows(keys, groups, metrics)
    text = f"{len(runs)} runs in {len(groups)} groups (by {', '.join(keys) or 'nothing: one group'}); mean ± std over seeds of the final metrics\n\n"
    text += _markdown(header, rows) + "\n"
    if args.baseline:
        prows = baseline_rows(keys, groups, metrics, args.baseline)
        text += (f"\nPaired differences against {args.baseline} (same seed; 95 % t-interval; p: one-sided paired "
                 "t-test that the group is better, where the task's report says which direction is better):\n\n")
        text += _markdown(["group", "metric", "per-seed difference", "mean", "95 % CI", "p", "seeds"], prows) + "\n"
    print(text)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
    if args.plot:
        plot(keys, groups, Path(args.plot))
    return text


if __name__ == "__main__":
    main()
