"""Gradient-analysis plots from the committed result files (their 'analysis' records).

    python scripts/plot_analysis.py gan nas

Per task and scale: (1) the spread of per-condition gradient norms (coefficient of variation) and
(2) the mean pairwise cosine of the per-condition gradients, over training, per layer (input to
output), mean over seeds, one line style per norm; (3) K x K cosine heat-maps of the last record of
the first seed, per norm, for the layer nearest the output. Also writes analysis_<scale>.json with
the numbers behind the plots.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tables import NORM_ORDER, ROOT, load, task_names  # noqa: E402


def collect(runs):
    """{norm: {layer: {key: {step: [values over seeds]}}}} for key in cv, cos_mean."""
    out = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for (scale, norm), items in runs.items():
        for run in items:
            for record in run.get("analysis", []):
                for layer, entry in record["layers"].items():
                    for key in ("cv", "max_min", "cos_mean"):
                        value = entry["independent"][key]
                        if value is not None:
                            out[(scale, norm)][layer][key][record["step"]].append(value)
    return out


def plot(task: str) -> None:
    runs = load(task)
    data = collect(runs)
    for scale in sorted({s for s, _ in data}):
        norms = sorted({n for s, n in data if s == scale}, key=NORM_ORDER.index)
        if not norms:
            continue
        layers = sorted({layer for n in norms for layer in data[(scale, n)]})
        summary = {}
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        styles = ["-", "--", ":", "-."]
        cmap = plt.get_cmap("viridis")
        for ni, norm in enumerate(norms):
            summary[norm] = {}
            for li, layer in enumerate(layers):
                if layer not in data[(scale, norm)]:
                    continue
                color = cmap(li / max(len(layers) - 1, 1))
                for ax, key in zip(axes[:2], ("cv", "cos_mean")):
                    series = data[(scale, norm)][layer][key]
                    steps = sorted(series)
                    means = [float(np.mean(series[s])) for s in steps]
                    ax.plot(steps, means, styles[ni % 4], color=color, label=f"{norm} {layer}" if key == "cv" else None)
                    summary[norm].setdefault(layer, {})[key] = dict(zip(steps, means))
        axes[0].set_title("norm spread across conditions (CV)")
        axes[1].set_title("mean pairwise cosine across conditions")
        for ax in axes[:2]:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        # Overall means per norm, layer by layer (input -> output).
        for ni, norm in enumerate(norms):
            cv = [np.mean(list(summary[norm][lay]["cv"].values())) for lay in layers if lay in summary[norm]]
            axes[2].plot(range(len(cv)), cv, "o" + styles[ni % 4], label=f"{norm}: CV")
            cs = [np.mean(list(summary[norm][lay]["cos_mean"].values())) for lay in layers if lay in summary[norm]]
            axes[2].plot(range(len(cs)), cs, "s" + styles[ni % 4], label=f"{norm}: mean cosine")
        axes[2].set_xlabel("layer index (input -> output)")
        axes[2].set_title("averaged over training and seeds")
        axes[2].legend(fontsize=8)
        axes[2].grid(alpha=0.3)
        if len(layers) <= 8:
            axes[0].legend(fontsize=6)
        fig.suptitle(f"{task}, {scale}: per-condition gradients of the independent affine "
                     f"(solid/dashed: {', '.join(norms)})")
        fig.tight_layout()
        out = ROOT / "results" / task / f"analysis_{scale}.png"
        fig.savefig(out, dpi=90, metadata={"Software": None})
        plt.close(fig)
        # Heat-maps of the last record of the first seed.
        fig, axes = plt.subplots(1, len(norms), figsize=(4.5 * len(norms), 4), squeeze=False)
        for ax, norm in zip(axes[0], norms):
            run = runs[(scale, norm)][0]
            record = run["analysis"][-1] if run.get("analysis") else None
            if not record:
                continue
            layer = max(record["layers"], key=lambda name: (len(record["layers"][name]["independent"]["cosine"]), name))
            matrix = np.array(record["layers"][layer]["independent"]["cosine"] or [[np.nan]])
            im = ax.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
            ax.set_title(f"{norm}, {layer}\nstep {record['step']}", fontsize=8)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
        fig.savefig(ROOT / "results" / task / f"analysis_heatmap_{scale}.png", dpi=90, metadata={"Software": None})
        plt.close(fig)
        (ROOT / "results" / task / f"analysis_{scale}.json").write_text(
            json.dumps({n: {lay: {k: {str(s): round(v, 6) for s, v in d.items()} for k, d in m.items()}
                            for lay, m in layers_.items()} for n, layers_ in summary.items()}, indent=1, sort_keys=True) + "\n")
        print(out)


def plot_controlled(task: str) -> None:
    """results/analysis/gradient_controlled_<task>.png: per layer, CV of the per-condition update norms
    and their mean pairwise cosine, CCBN vs its SaBN twin after one identical step (mean and range
    over seeds, checkpoints and batches), with the -1/(K-1) cosine floor."""
    path = ROOT / "results" / "analysis" / f"gradient_controlled_{task}.json"
    if not path.is_file():
        return
    rows = json.loads(path.read_text())["rows"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(layers))
    for ax, key, title in ((axes[0], "cv", "spread of update norms across classes (CV)"),
                           (axes[1], "cos", "mean pairwise cosine of the class updates")):
        for offset, arm, color in ((-0.18, "ccbn", "tab:blue"), (0.18, "sabn", "tab:orange")):
            values = [[r[f"{key}_{arm}"] for r in rows if r["layer"] == layer] for layer in layers]
            means = [np.mean(v) for v in values]
            lows = [m - min(v) for m, v in zip(means, values)]
            highs = [max(v) - m for m, v in zip(means, values)]
            ax.bar(x + offset, means, 0.34, yerr=[lows, highs], capsize=2, color=color, label=arm.upper())
        if key == "cos":
            floors = [[r["cos_floor"] for r in rows if r["layer"] == layer][0] for layer in layers]
            ax.scatter(x, floors, marker="_", s=300, color="k", label="floor -1/(K-1)", zorder=3)
            ax.axhline(0, color="gray", lw=0.5)
        ax.set_xticks(x, [layer.replace("blocks.", "b") for layer in layers], rotation=30, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task}: one SGD step from identical states (CCBN and its SaBN twin), class-balanced batches", fontsize=10)
    fig.tight_layout()
    fig.savefig(ROOT / "results" / "analysis" / f"gradient_controlled_{task}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    for name in sys.argv[1:] or task_names():   # tasks without analysis records draw nothing
        plot(name)
        plot_controlled(name)
