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
}
ROWS = {
    "adv": [("test/clean/clean", "clean branch, clean accuracy (SA)"),
            ("test/adv/clean", "adv branch, clean accuracy (SA)"),
            ("test/adv/pgd10", "adv branch, PGD-10 accuracy (RA)"),
            ("test/adv/pgd20", "adv branch, PGD-20 accuracy (RA)")],
}
NORM_ORDER = ["bn", "ccbn", "auxbn", "sabn", "split_sabn", "saauxbn", "adain", "saadain"]


def _fmt(values):
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f} (n=1)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


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
            vals = [r["metrics"][key] for r in runs[(scale, n)] if key in r["metrics"]]
            if n == "bn" and key == "test/clean/clean":  # one BN: both branches are the same network
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
        "Paper columns: the official repository's README (PreAct-ResNet-18, 200 epochs, full test set); "
        "they are targets for the `paper` scale, not for this one.",
    ]
    return "\n".join(lines + meta) + "\n"


def main(tasks) -> None:
    for task in tasks:
        runs = load(task)
        for scale in sorted({s for s, _ in runs}):
            out = ROOT / "results" / task / f"table_{scale}.md"
            out.write_text(f"# {task}: {scale} scale\n\n" + table(task, scale, runs))
            print(out.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or ["adv"])
