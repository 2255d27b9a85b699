"""Aggregate results/<task>/<experiment>/seed*.json into Markdown tables (mean ± std over seeds).

    python scripts/make_tables.py adv        # writes results/adv/table_<scale>.md for each scale

The paper's numbers sit in their own, labelled columns; they are never mixed with ours.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sabn.registry import get_norm_spec, list_norms  # noqa: E402
from tasks.common.report_spec import task_report, trajectory  # noqa: E402
from tasks.common.stats import exact_mann_whitney_p, paired_summary  # noqa: E402
from tasks.common.task import task_names  # noqa: E402

NORM_ORDER = list_norms()   # registration order: a baseline before its sandwich variant
SANDWICH = tuple(n for n in NORM_ORDER if get_norm_spec(n).sandwich)   # the paper's arms, paired against the others


def _hardware(runs, scale: str, norms) -> str:
    """The machines that ran the table's runs; where there are several, which runs each one ran (a sweep
    can span sessions on different CPU models, and timings compare only within one)."""
    where: dict[str, list[str]] = {}
    for n in norms:
        for r in sorted(runs[(scale, n)], key=lambda r: r["seed"]):
            hw = r["provenance"]["hardware"]
            name = hw.get("gpu") or hw["cpu"]
            where.setdefault(f"{name} ({hw['threads']} threads)", []).append(f"{n} seed {r['seed']}")
    if len(where) == 1:
        return next(iter(where))
    return "; ".join(f"{machine}: {', '.join(which)}" for machine, which in where.items())


def _digits(values) -> int:
    """Decimals for a metric whose values are ``values``: KID and losses below 1 need more."""
    return 4 if max(abs(v) for v in values) < 1 else 2


def _fmt(values):
    if not values:
        return "n/a"
    digits = _digits(values)
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} (n={len(values)})"


def load(task: str):
    runs = defaultdict(list)
    for path in sorted((ROOT / "results" / task).glob("*/seed*.json")):
        data = json.loads(path.read_text())
        runs[(data["scale"], data["norm"])].append(data)
    return runs


def table(task: str, scale: str, runs) -> str:
    norms = sorted({n for s, n in runs if s == scale}, key=NORM_ORDER.index)
    head = "| metric | " + " | ".join(f"ours: {n}" for n in norms) + " | " + \
        " | ".join(f"paper: {n}" for n in norms) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(norms))]
    spec = task_report(task)
    for row in spec.rows:
        key, label = row.key, row.label
        ours = []
        for n in norms:
            vals = [r["metrics"][key] for r in runs[(scale, n)]
                    if isinstance(r["metrics"].get(key), (int, float)) and r["metrics"][key] == r["metrics"][key]]
            if n in row.same_as:
                vals = [r["metrics"][row.same_as[n]] for r in runs[(scale, n)]]
            ours.append(_fmt(vals))
        if row.optional and all(o == _fmt([]) for o in ours):
            continue
        paper = [f"{spec.paper.get((key, n), 'n/a')}" for n in norms]
        lines.append(f"| {label} | " + " | ".join(ours) + " | " + " | ".join(paper) + " |")
    sample = runs[(scale, norms[0])][0]
    seeds = sorted({r["seed"] for n in norms for r in runs[(scale, n)]})
    wall = sum(r["wall_time_s"] for n in norms for r in runs[(scale, n)])
    partial = [f"{n} seed {r['seed']}" for n in norms for r in runs[(scale, n)] if wall_time_partial(r)]
    # a resumed run's result names every commit that trained it (its segments)
    commits = sorted({c[:10] for n in norms for r in runs[(scale, n)]
                      for c in [r["provenance"]["commit"], *(s["commit"] for s in r.get("segments", []) if "commit" in s)]})
    meta = [
        "", f"Scale: `{scale}`; seeds {seeds}; commits {commits}; total wall time "
        f"{'at least ' if partial else ''}{wall / 60:.1f} min on {_hardware(runs, scale, norms)}"
        + (f"; an undercount: {', '.join(partial)} resumed before runs kept per-segment history, and "
           "their files lack the wall time of the processes before that" if partial else "") + ".",
        f"Protocol: `{json.dumps(sample['protocol'], sort_keys=True)}`.",
        f"Command: `{sample['provenance']['command']}` (one per norm and seed).",
        f"Paper columns: {spec.paper_note} They are targets for the paper-scale presets, not for this scale.",
    ]
    sections = "".join(section(scale, runs) for section in spec.sections)
    return "\n".join(lines + meta) + "\n" + paired_table(task, scale, runs) + criterion(task, scale, runs) + \
        gap_table(task, scale, runs) + sections


def _value(run, key):
    value = run["metrics"].get(key)
    return value if isinstance(value, (int, float)) and value == value else None


def paired(task: str, scale: str, runs, key: str, baseline: str, variant: str):
    """Per-seed differences variant - baseline over the seeds both arms ran, with the mean, its 95 %
    t-interval and the one-sided paired t-test p-value for 'variant better'; None without 2 pairs."""
    by_seed = {n: {r["seed"]: _value(r, key) for r in runs[(scale, n)]} for n in (baseline, variant)}
    seeds = sorted(s for s in by_seed[variant] if s in by_seed[baseline]
                   and by_seed[variant][s] is not None and by_seed[baseline][s] is not None)
    if len(seeds) < 2:
        return None
    diffs = [by_seed[variant][s] - by_seed[baseline][s] for s in seeds]
    summary = paired_summary(diffs, task_report(task).row(key).better)
    # differences are printed to the precision of the metric itself, not of the (smaller) differences
    digits = _digits([by_seed[n][s] for n in (baseline, variant) for s in seeds])
    return {"seeds": seeds, **summary, "digits": digits}


def paired_table(task: str, scale: str, runs) -> str:
    """Paired differences of every Sa* arm against every other arm that ran the same seeds."""
    norms = sorted({n for s, n in runs if s == scale}, key=NORM_ORDER.index)
    pairs = [(b, v) for v in norms if v in SANDWICH for b in norms if b not in SANDWICH]
    lines = []
    for baseline, variant in pairs:
        for row in task_report(task).rows:
            key, label = row.key, row.label
            result = paired(task, scale, runs, key, baseline, variant)
            if result is None:
                continue
            d = result["digits"]
            per_seed = ", ".join(f"{x:+.{d}f}" for x in result["diffs"])
            p = "n/a" if result["p"] is None else f"{result['p']:.3f}"
            lines.append(f"| {label} | {variant} - {baseline} | {per_seed} | {result['mean']:+.{d}f} | "
                         f"[{result['ci'][0]:+.{d}f}, {result['ci'][1]:+.{d}f}] | {p} | {result['n']} |")
    if not lines:
        return ""
    head = ["", "Paired differences (same seed = same data order, noise and, where the preset pairs it, initial "
            "shared weights); p: one-sided paired t-test that the Sa* arm is better:", "",
            "| metric | pair | per-seed difference (seeds in order) | mean | 95 % CI | p | seeds |",
            "|---|---|---|---|---|---|---|"]
    return "\n".join(head + lines) + "\n"


def wall_time_partial(run) -> bool:
    """A run resumed before per-segment history existed: its wall time is its last process's only."""
    segments = run.get("segments") or []
    return bool(run.get("resumed_from_step")) and (not segments or any(s.get("recorded") is False for s in segments))


def criterion(task: str, scale: str, runs) -> str:
    """The pre-stated criterion of this scale and its outcome, whichever way it falls."""
    crit = task_report(task).criteria.get(scale)
    if crit is not None and crit.kind == "mann_whitney":
        return mann_whitney(task, scale, runs, crit)
    if crit is None or crit.kind != "paired_t":
        return ""
    key, baseline, variant, alpha = crit.metric, crit.baseline, crit.variant, crit.alpha
    label = task_report(task).row(key).label
    head = (f"\nCriterion (stated in the preset before the runs): {label}, paired difference {variant} - {baseline}, "
            f"one-sided paired t-test at alpha = {alpha}. ")
    result = paired(task, scale, runs, key, baseline, variant)
    if result is None or result["p"] is None or result["n"] < crit.min_runs:
        have = len({r["seed"] for r in runs[(scale, variant)] if _value(r, key) is not None} &
                   {r["seed"] for r in runs[(scale, baseline)] if _value(r, key) is not None})
        return head + f"Outcome: not enough paired seeds yet ({have} of the {crit.min_runs} the preset asks for).\n"
    verdict = "supported" if result["p"] < alpha else "not supported"
    d = result["digits"]
    return head + (f"Outcome on {result['n']} seeds: mean difference {result['mean']:+.{d}f} "
                   f"(95 % CI [{result['ci'][0]:+.{d}f}, {result['ci'][1]:+.{d}f}]), p = {result['p']:.3f}: "
                   f"'{variant} better than {baseline}' is {verdict} at this scale.\n")


def mann_whitney(task: str, scale: str, runs, crit) -> str:
    """One-sided Mann-Whitney U test that ``crit.variant`` beats ``crit.baseline`` on the final metric."""
    row = task_report(task).row(crit.metric)
    a = [v for v in (_value(r, crit.metric) for r in runs[(scale, crit.variant)]) if v is not None]
    b = [v for v in (_value(r, crit.metric) for r in runs[(scale, crit.baseline)]) if v is not None]
    head = (f"\nCriterion (stated in the preset before the runs): {row.label}, {crit.variant} vs {crit.baseline}, "
            f"one-sided Mann-Whitney U test at alpha = {crit.alpha}. ")
    if len(a) < max(2, crit.min_runs) or len(b) < max(2, crit.min_runs):
        return head + (f"Outcome: not enough runs yet ({len(a)} {crit.variant} and {len(b)} {crit.baseline}; "
                       f"the preset asks for {crit.min_runs} per arm).\n")
    from scipy import stats
    greater = row.better == "max"
    p = float(stats.mannwhitneyu(a, b, alternative="greater" if greater else "less").pvalue)
    exact = exact_mann_whitney_p(a, b, greater)
    verdict = "supported" if p < crit.alpha else "not supported"
    return head + (f"Outcome on {len(a)} vs {len(b)} runs: medians {statistics.median(a):.2f} vs {statistics.median(b):.2f}, "
                   f"means {statistics.mean(a):.2f} vs {statistics.mean(b):.2f}, p = {p:.3f} (normal approximation "
                   f"with continuity correction, scipy's choice when values tie; exact permutation p over every "
                   f"split of the {len(a) + len(b)} values, ties included: {exact:.3f}): "
                   f"'{crit.variant} better than {crit.baseline}' is {verdict} at this scale.\n")


def gap_table(task: str, scale: str, runs) -> str:
    """For a ``gap_closes`` criterion: the paired gap variant - baseline at every evaluation, per seed,
    and the criterion's outcome."""
    crit = task_report(task).criteria.get(scale)
    if crit is None or crit.kind != "gap_closes":
        return ""
    by_seed = {n: {r["seed"]: trajectory(r, crit.metric) for r in runs[(scale, n)]} for n in (crit.baseline, crit.variant)}
    seeds = sorted(set(by_seed[crit.variant]) & set(by_seed[crit.baseline]))
    steps = sorted(set.intersection(*(set(by_seed[n][s]) for n in by_seed for s in seeds))) if seeds else []
    label = task_report(task).row(crit.metric).label
    head = (f"\nCriterion (stated in the preset before the runs): with g_k(t) = {label} of {crit.variant} minus "
            f"{crit.baseline} in seed k at validation t, the gap closes if g_k(last) < g_k({crit.first_step}) in "
            f"every seed; {crit.variant} overtakes if besides the mean of g_k(last) is below 0. ")
    if len(seeds) < 1 or crit.first_step not in steps or len(steps) < 2:
        return head + "Outcome: not enough paired runs yet.\n"
    gaps = {s: {t: by_seed[crit.variant][s][t] - by_seed[crit.baseline][s][t] for t in steps} for s in seeds}
    lines = ["", f"Paired gap {crit.variant} - {crit.baseline}, {label}, at each validation (seeds {seeds}):", "",
             "| step | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |", "|---|" + "---|" * (len(seeds) + 1)]
    for t in steps:
        values = [gaps[s][t] for s in seeds]
        lines.append(f"| {t} | " + " | ".join(f"{v:+.2f}" for v in values) + f" | {statistics.mean(values):+.2f} |")
    last = steps[-1]
    closes = [gaps[s][last] < gaps[s][crit.first_step] for s in seeds]
    mean_last = statistics.mean(gaps[s][last] for s in seeds)
    mean_first = statistics.mean(gaps[s][crit.first_step] for s in seeds)
    if all(closes):
        verdict = "the gap closes in every seed" + (
            f", and {crit.variant} overtakes (mean gap {mean_last:+.2f} < 0)" if mean_last < 0 else
            f"; {crit.variant} does not overtake (mean gap at {last}: {mean_last:+.2f})")
    else:
        verdict = f"the gap does not close in every seed ({sum(closes)} of {len(seeds)})"
    verdict += (f"; mean gap {mean_first:+.2f} at step {crit.first_step}, {mean_last:+.2f} at step {last} "
                f"(negative: {crit.variant} lower)")
    return "\n".join(lines) + "\n" + head + f"Outcome on {len(seeds)} paired seeds: {verdict}.\n"


def main(tasks) -> None:
    for task in tasks:
        runs = load(task)
        for scale in sorted({s for s, _ in runs}):
            out = ROOT / "results" / task / f"table_{scale}.md"
            out.write_text(f"# {task}: {scale} scale\n\n" + table(task, scale, runs))
            print(out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or task_names())
