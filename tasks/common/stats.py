"""The statistics the reports and scripts/compare_runs.py share: paired per-seed differences with a
95 % t-interval and a one-sided paired t-test, and an exact Mann-Whitney p. One implementation, so a
table of a user's own runs and the committed report give the same numbers for the same runs."""
from __future__ import annotations

import itertools
import statistics
from typing import Dict, Optional, Sequence


def paired_summary(diffs: Sequence[float], better: Optional[str]) -> Optional[Dict[str, object]]:
    """Mean of the per-seed differences variant - baseline, its 95 % t-interval, and the one-sided
    paired t-test p for 'variant better' (``better``: 'max' or 'min'; None, or no spread: p is None).
    None with fewer than 2 differences."""
    diffs = list(diffs)
    if len(diffs) < 2:
        return None
    from scipy import stats
    mean, sd, n = statistics.mean(diffs), statistics.stdev(diffs), len(diffs)
    half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
    p = None
    if better and sd > 0:
        p = float(stats.ttest_1samp(diffs, 0.0, alternative="greater" if better == "max" else "less").pvalue)
    return {"diffs": diffs, "mean": mean, "ci": (mean - half, mean + half), "p": p, "n": n}


def exact_mann_whitney_p(a: Sequence[float], b: Sequence[float], greater: bool = True) -> float:
    """One-sided p of the Mann-Whitney U statistic by enumerating every split of the pooled values into
    groups of len(a) and len(b) (exact with ties: U counts a tie as one half)."""
    def u(x, y):
        return sum((xi > yi) + 0.5 * (xi == yi) for xi in x for yi in y)
    pooled, n = list(a) + list(b), len(a)
    observed = u(a, b) if greater else u(b, a)
    count = total = 0
    for idx in itertools.combinations(range(len(pooled)), n):
        chosen = set(idx)
        x = [pooled[i] for i in idx]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        total += 1
        count += (u(x, y) if greater else u(y, x)) >= observed - 1e-12
    return count / total
