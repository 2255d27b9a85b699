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

# The paper's Table (README of the official repository), adversarial training, PreAct-ResNet-18.
PAPER = {
    "adv": {
        ("test/clean/clean", "bn"): 84.84, ("test/clean/clean", "auxbn"): 94.47, ("test/clean/clean", "saauxbn"): 94.62,
        ("test/adv/clean", "bn"): 84.84, ("test/adv/clean", "auxbn"): 83.42, ("test/adv/clean", "saauxbn"): 84.08,
        ("test/adv/pgd10", "bn"): 41.57, ("test/adv/pgd10", "auxbn"): 43.05, ("test/adv/pgd10", "saauxbn"): 44.93,
        ("test/adv/pgd20", "bn"): 40.02, ("test/adv/pgd20", "auxbn"): 41.60, ("test/adv/pgd20", "saauxbn"): 43.14,
    },
    "nas": {  # DARTS (first order) on CIFAR-100 / ImageNet16-120 top-1; no CIFAR-10 column in the paper
        ("gt_test", "bn"): "44.05 ± 7.47 (C100) / 36.47 ± 7.06 (IN16)",
        ("gt_test", "sabn"): "71.56 ± 1.39 (C100) / 45.85 ± 0.72 (IN16)",
    },
    "gan": {  # CIFAR-10, 50k samples: SNGAN (G 256 / D 128) / AutoGAN / BigGAN
        ("fid", "ccbn"): "10.18 (SNGAN) / 10.51 (AutoGAN) / 8.57 (BigGAN)",
        ("fid", "sabn"): "8.97 (SNGAN) / 9.11 (AutoGAN) / 8.03 (BigGAN)",
        ("is", "ccbn"): "8.76 / 8.43 / 8.91", ("is", "sabn"): "8.89 / 8.72 / 9.01",
    },
    "nst": {  # read off the paper's log-scale plots at 160k iterations (+-15 %)
        ("val/content", "adain"): "~1.35-1.4", ("val/content", "saadain"): "~1.2",
        ("val/style", "adain"): "~4.1-4.2", ("val/style", "saadain"): "~3.9",
    },
}
ROWS = {
    "nas": [("gt_test", "ground-truth test accuracy of the final genotype (%)"),
            ("gt_valid", "ground-truth CIFAR-10 valid accuracy (%)"),
            ("params_free_ops", "parameter-free ops in the final cell (of 6)")],
    "gan": [("fid", "FID (lower is better)"), ("kid", "KID (lower is better)"),
            ("is", "Inception Score (higher is better)")],
    "nst": [("val/content", "validation content loss (x1)"), ("val/style", "validation style loss (x10)"),
            ("val/total", "validation total loss")],
    "adv": [("test/clean/clean", "clean branch, clean accuracy (SA)"),
            ("test/adv/clean", "adv branch, clean accuracy (SA)"),
            ("test/adv/pgd10", "adv branch, PGD-10 accuracy (RA)"),
            ("test/adv/pgd20", "adv branch, PGD-20 accuracy (RA)")],
}
PAPER_NOTE = {
    "adv": "the official repository's README (PreAct-ResNet-18, 200 epochs, full test set).",
    "nas": "the official README (DARTS searched and evaluated on CIFAR-100 / ImageNet16-120, 35 epochs).",
    "gan": "the official README (CIFAR-10, 50k samples, TF-Inception IS, FID vs train statistics).",
    "nst": "values read off the official repository's validation-loss plots (COCO/WikiArt, 256 px).",
}
NORM_ORDER = ["bn", "ccbn", "auxbn", "sabn", "split_sabn", "saauxbn", "adain", "saadain"]
SANDWICH = ("sabn", "split_sabn", "saauxbn", "saadain")   # the paper's arms; paired against every other arm
# Which direction is better, per row (None: no direction, no test).
BETTER = {"test/clean/clean": "max", "test/adv/clean": "max", "test/adv/pgd10": "max", "test/adv/pgd20": "max",
          "gt_test": "max", "gt_valid": "max", "params_free_ops": None, "fid": "min", "kid": "min", "is": "max",
          "val/content": "min", "val/style": "min", "val/total": "min"}
# Pre-registered criteria (also in the preset's header): (task, scale) -> (metric, baseline, variant, alpha).
CRITERIA = {
    ("adv", "cpu_paired"): ("test/adv/pgd20", "auxbn", "saauxbn", 0.05),
}


def _fmt(values):
    if not values:
        return "n/a"
    digits = 4 if max(abs(v) for v in values) < 1 else 2   # KID and losses below 1 need more
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
    for key, label in ROWS[task]:
        ours = []
        for n in norms:
            vals = [r["metrics"][key] for r in runs[(scale, n)]
                    if isinstance(r["metrics"].get(key), (int, float)) and r["metrics"][key] == r["metrics"][key]]
            if task == "adv" and n == "bn" and key == "test/clean/clean":  # one BN: both branches are the same network
                vals = [r["metrics"]["test/adv/clean"] for r in runs[(scale, n)]]
            ours.append(_fmt(vals))
        paper = [f"{PAPER[task].get((key, n), 'n/a')}" for n in norms]
        lines.append(f"| {label} | " + " | ".join(ours) + " | " + " | ".join(paper) + " |")
    sample = runs[(scale, norms[0])][0]
    seeds = sorted({r["seed"] for n in norms for r in runs[(scale, n)]})
    wall = sum(r["wall_time_s"] for n in norms for r in runs[(scale, n)])
    commits = sorted({r["provenance"]["commit"][:10] for n in norms for r in runs[(scale, n)]})
    meta = [
        "", f"Scale: `{scale}`; seeds {seeds}; commits {commits}; total wall time {wall / 60:.1f} min on "
        f"{sample['provenance']['hardware']['cpu']} ({sample['provenance']['hardware']['threads']} threads).",
        f"Protocol: `{json.dumps(sample['protocol'], sort_keys=True)}`.",
        f"Command: `{sample['provenance']['command']}` (one per norm and seed).",
        f"Paper columns: {PAPER_NOTE[task]} They are targets for the paper-scale presets, not for this scale.",
    ]
    return "\n".join(lines + meta) + "\n" + paired_table(task, scale, runs)


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
    from scipy import stats
    mean, sd, n = statistics.mean(diffs), statistics.stdev(diffs), len(diffs)
    half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
    better = BETTER.get(key)
    p = None
    if better and sd > 0:
        p = float(stats.ttest_1samp(diffs, 0.0, alternative="greater" if better == "max" else "less").pvalue)
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "ci": (mean - half, mean + half), "p": p, "n": n}


def paired_table(task: str, scale: str, runs) -> str:
    """Paired differences of every Sa* arm against every other arm that ran the same seeds."""
    norms = sorted({n for s, n in runs if s == scale}, key=NORM_ORDER.index)
    pairs = [(b, v) for v in norms if v in SANDWICH for b in norms if b not in SANDWICH]
    lines = []
    for baseline, variant in pairs:
        for key, label in ROWS[task]:
            result = paired(task, scale, runs, key, baseline, variant)
            if result is None:
                continue
            per_seed = ", ".join(f"{d:+.2f}" for d in result["diffs"])
            p = "n/a" if result["p"] is None else f"{result['p']:.3f}"
            lines.append(f"| {label} | {variant} - {baseline} | {per_seed} | {result['mean']:+.2f} | "
                         f"[{result['ci'][0]:+.2f}, {result['ci'][1]:+.2f}] | {p} | {result['n']} |")
    if not lines:
        return ""
    head = ["", "Paired differences (same seed = same data order, noise and, where the preset pairs it, initial "
            "shared weights); p: one-sided paired t-test that the Sa* arm is better:", "",
            "| metric | pair | per-seed difference (seeds in order) | mean | 95 % CI | p | seeds |",
            "|---|---|---|---|---|---|---|"]
    return "\n".join(head + lines) + "\n" + criterion(task, scale, runs)


def criterion(task: str, scale: str, runs) -> str:
    """The pre-stated criterion of this scale and its outcome, whichever way it falls."""
    if (task, scale) not in CRITERIA:
        return ""
    key, baseline, variant, alpha = CRITERIA[(task, scale)]
    label = dict(ROWS[task])[key]
    head = (f"\nCriterion (stated in the preset before the runs): {label}, paired difference {variant} - {baseline}, "
            f"one-sided paired t-test at alpha = {alpha}. ")
    result = paired(task, scale, runs, key, baseline, variant)
    if result is None or result["p"] is None:
        return head + "Outcome: not enough paired seeds yet.\n"
    verdict = "supported" if result["p"] < alpha else "not supported"
    return head + (f"Outcome on {result['n']} seeds: mean difference {result['mean']:+.2f} "
                   f"(95 % CI [{result['ci'][0]:+.2f}, {result['ci'][1]:+.2f}]), p = {result['p']:.3f}: "
                   f"'{variant} better than {baseline}' is {verdict} at this scale.\n")


def main(tasks) -> None:
    for task in tasks:
        runs = load(task)
        for scale in sorted({s for s, _ in runs}):
            out = ROOT / "results" / task / f"table_{scale}.md"
            out.write_text(f"# {task}: {scale} scale\n\n" + table(task, scale, runs))
            print(out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or ["adv"])
