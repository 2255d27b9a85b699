"""Plots from the committed result files (curves are stored in them), one PNG per task and scale.

    python scripts/plot_results.py [task ...]     (default: every task)
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tables import NORM_ORDER, ROOT, load  # noqa: E402
from tasks.common.report_spec import task_report  # noqa: E402
from tasks.common.task import task_names  # noqa: E402


def _series(run, key, report):
    if key.startswith("series:"):   # derived by the task's report from a run (e.g. NAS alpha traces)
        x, y = report.series[key.split(":", 1)[1]](run)
        return np.asarray(x), np.array([np.nan if v is None else v for v in y], float)
    if key.startswith("per_epoch:"):
        values = run["metrics"].get(key.split(":", 1)[1]) or []
        return np.arange(1, len(values) + 1), np.array([np.nan if v is None else v for v in values], float)
    rows = [r for r in run.get("curves", []) if key in r and isinstance(r[key], (int, float))]
    return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows], float)


def _x_label(key: str, report) -> str:
    if key.startswith("series:"):
        return report.series_x.get(key.split(":", 1)[1], "epoch")
    return "epoch" if key.startswith("per_epoch:") else "step"


def plot(task: str) -> list:
    runs = load(task)
    written = []
    for scale in sorted({s for s, _ in runs}):
        report = task_report(task)
        norms = sorted({n for s, n in runs if s == scale}, key=NORM_ORDER.index)
        data = {(key, norm): [s for s in (_series(r, key, report) for r in runs[(scale, norm)]) if len(s[0])]
                for key, _ in report.panels for norm in norms}
        # [(curve key, 'per_epoch:<metric list>' or 'series:<name>', y label)]; a scale whose runs do not
        # record a panel's data (older runs) goes without that panel
        panels = [(key, label) for key, label in report.panels if any(data[(key, n)] for n in norms)]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
        for ax, (key, label) in zip(axes[0], panels):
            for norm in norms:
                series = data[(key, norm)]
                if not series:
                    continue
                length = min(len(s[0]) for s in series)
                x = series[0][0][:length]
                ys = np.stack([s[1][:length] for s in series])
                mean = np.nanmean(ys, 0)
                ax.plot(x, mean, label=f"{norm} (n={len(series)})")
                if len(series) > 1:
                    ax.fill_between(x, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.2)
            ax.set_xlabel(_x_label(key, report))
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{task}, {scale} scale: mean over seeds (band: min to max)")
        fig.tight_layout()
        out = ROOT / "results" / task / f"curves_{scale}.png"
        fig.savefig(out, dpi=90, metadata={"Software": None})
        plt.close(fig)
        written.append(out)
        print(out)
    return written


if __name__ == "__main__":
    for name in sys.argv[1:] or task_names():
        plot(name)
