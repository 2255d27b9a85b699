"""Build results/README.md from the committed result files (byte-for-byte reproducible).

    python scripts/make_report.py            # tables, plots and notes of every task

Inputs: results/<task>/<experiment>/seed<k>.json, the plots next to them, and the hand-written
readings in results/notes/<task>.md. Nothing here depends on the time or the machine.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tables import NORM_ORDER, ROOT, load, table  # noqa: E402
from tasks.common.report_spec import task_reports  # noqa: E402
from tasks.common.task import task_names  # noqa: E402

def _links(task: str) -> list:
    folder = ROOT / "results" / task
    images = sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []
    return [f"![{name}]({task}/{name})" for name in images]


def _analysis_summary(task: str, runs) -> list:
    rows = []
    for (scale, norm), items in sorted(runs.items(), key=lambda kv: (kv[0][0], NORM_ORDER.index(kv[0][1]))):
        cv, cos = [], []
        for run in items:
            for record in run.get("analysis", []):
                for entry in record["layers"].values():
                    if entry["independent"]["cv"] is not None:
                        cv.append(entry["independent"]["cv"])
                        cos.append(entry["independent"]["cos_mean"])
        if cv:
            rows.append(f"| {scale} | {norm} | {statistics.mean(cv):.3f} | {statistics.mean(cos):.3f} | {len(cv)} |")
    if not rows:
        return []
    return ["", "Gradient analysis of the independent affines (mean over layers, records and seeds):", "",
            "| scale | norm | norm spread (CV) | mean pairwise cosine | records |", "|---|---|---|---|---|", *rows]


def _speed(name: str = "norms.json", title: str = "Layer speed: SaBN / CCBN against `nn.BatchNorm2d`") -> list:
    """Summary of a layer benchmark file (results/bench/norms.json, gpu_norms.json): ratio to BN per layout and path."""
    path = ROOT / "results" / "bench" / name
    if not path.is_file():
        return []
    bench = json.loads(path.read_text())
    groups = {}
    for row in bench["rows"]:
        for key, ratio in row["ratio_to_bn"].items():
            if key.startswith("bn"):
                continue
            variant, path_kind = key.split("_", 1)
            groups.setdefault((path_kind, row["format"]), []).append((ratio, variant, row))
    kernels = bench.get("cpu_kernel", {}).get("timed", False)
    gpu = bench["hardware"].get("gpu")
    labels = {"fused": "fused, default path" + (" (Triton kernels)" if gpu else
                                                " (C++ CPU kernels, built by `make install`)" if kernels else ""),
              "python": "fused, Python path (no compiler, or `SABN_CPU_KERNELS=0`)",
              "reference": "reference composition (BN, then gather and affine)", "compiled": "`torch.compile` (vs compiled BN)",
              "aten": "fused, ATen composition instead of the Triton kernels (CUDA)"}
    hw, prov = bench["hardware"], bench["provenance"]
    where = f"{gpu}, CUDA {hw.get('cuda')}" if gpu else f"{hw['cpu']}, {hw['threads']} threads"
    lines = [f"## {title}", "",
             f"Forward + backward, interleaved medians (`python scripts/{prov['command'].removeprefix('scripts/')}`, "
             f"commit {prov['commit'][:10]}, {where}, torch {hw['torch']}; "
             f"{'quick grid' if bench['quick'] else 'full grid'}: {len(bench['rows'])} rows of N, C, H, K and layout; "
             f"every row in `bench/{name}`). Targets: eager <= 1.5x, compiled <= 1.1x.", "",
             "| path | layout | ratio to BN: median | max | worst shape (N, C, H, K) |", "|---|---|---|---|---|"]
    for path_kind in ("fused", "python", "aten", "compiled", "reference"):
        for fmt in ("NCHW", "channels_last"):
            items = groups.get((path_kind, fmt))
            if not items:
                continue
            worst = max(items, key=lambda item: item[0])
            r = worst[2]
            lines.append(f"| {labels[path_kind]} | {fmt} | {statistics.median(i[0] for i in items):.2f} | {worst[0]:.2f} | "
                         f"{worst[1]} ({r['N']}, {r['C']}, {r['H']}, {r['K']}) |")
    return lines + [""]


def _gpu_steps() -> list:
    """The CUDA rows of results/bench/step_*.json: one training step, fused vs reference norm path."""
    rows = []
    for task in task_names():
        path = ROOT / "results" / "bench" / f"step_{task}.json"
        if path.is_file():
            rows += [r for r in json.loads(path.read_text())["rows"] if r.get("device") == "cuda"]
    if not rows:
        return []
    by = {}
    for r in rows:
        by.setdefault((r["task"], r["scale"], r["norm"], r["channels_last"], r["compile"]), {})[r["norm_path"]] = r
    first = rows[0]
    lines = ["## Training step on the GPU", "",
             f"One training step of the paper-size models (`scripts/bench_step.py --all --quick --scale paper "
             f"trainer.device=cuda trainer.amp=true trainer.channels_last=true`, commit {first['commit'][:10]}, "
             f"{first.get('hardware', {}).get('gpu', 'GPU')}): median of 3 steps after 1 warm-up.", "",
             "| task | preset | norm | fused (default) s | reference s | fused speed-up | peak GiB |", "|---|---|---|---|---|---|---|"]
    for (task, scale, norm, _cl, _comp), paths in sorted(by.items()):
        f, r = paths.get("fused"), paths.get("reference")
        ratio = f"{r['median_s'] / f['median_s']:.2f}x" if f and r else "-"
        lines.append(f"| {task} | {scale} | {norm} | {f['median_s'] if f else '-'} | {r['median_s'] if r else '-'} | "
                     f"{ratio} | {(f or r)['peak_bytes'] / 2**30:.2f} |")
    return lines + [""]


def _vs_official(name: str = "vs_official.json", title: str = "Training step against the official implementation") -> list:
    """results/bench/vs_official*.json: one training iteration, the official implementation vs ours."""
    path = ROOT / "results" / "bench" / name
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    prov = data["provenance"]
    hw = prov["hardware"]
    lines = [f"## {title}", "",
             f"`python {data['command']}` (commit {prov['commit'][:10]}, official commit "
             f"{(data.get('official_commit') or 'unknown')[:10]}, {hw.get('gpu') or hw['cpu']}, {hw['threads']} threads, "
             f"torch {hw['torch']}). Official: its classes and loop body; ours: the task's `train_step` at the preset's "
             "settings, in each memory layout timed; same sizes, batches and optimizers; interleaved medians. The "
             "default layout (`trainer.channels_last=null`) is the task's `Task.channels_last_on`, which follows these "
             "rows: channels_last where it is at least 5% faster (tests/test_bench_layout.py).", "",
             "| task | preset | norm | official s | ours NCHW s | ours channels_last s | default layout | "
             "speed-up at default (official / ours) | other settings |",
             "|---|---|---|---|---|---|---|---|---|"]
    from bench_vs_official import at_default, default_layout, timed_layouts
    for r in data["rows"]:
        settings = ", ".join(k for k, v in r["ours_settings"].items() if v and k != "channels_last") or "fp32, eager"
        by = timed_layouts(r)
        layout = default_layout(r) if len(by) > 1 else f"{next(iter(by))} (the one timed)"
        _, speedup = at_default(r)
        shown = f"{speedup:.2f}x" + (f" (not comparable: {r['not_comparable']})" if r.get("not_comparable") else "")
        cells = [f"{by[k]:.3f}" if k in by else "-" for k in ("nchw", "channels_last")]
        lines.append(f"| {r['task']} | {r['preset']} | {r['norm']} | {r['official_s']:.3f} | {cells[0]} | {cells[1]} | "
                     f"{layout} | {shown} | {settings} |")
    lines += [f"| {name} | skipped: {why} | | | | | | | |" for name, why in data.get("skipped", {}).items()]
    return lines + [""]


def _floors(summary) -> list:
    floor = summary["cos_floor"]
    return floor if isinstance(floor, list) else [floor]


def _controlled() -> list:
    """The controlled gradient experiment (scripts/gradient_controlled.py), where it has been run."""
    lines = []
    for task in ("gan", "nas"):
        path = ROOT / "results" / "analysis" / f"gradient_controlled_{task}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        summary, settings, prov = data["summary"], data["settings"], data["provenance"]
        layers = sorted({r["layer"] for r in data["rows"]}, key=[r["layer"] for r in data["rows"]].index)
        lines += [f"### Controlled gradient experiment: {task}", "",
                  "From one CCBN state, its SaBN twin (shared affine exactly (1, 0), same class affines and "
                  "statistics: the same function) and the CCBN model each take one identical SGD step on the same "
                  "class-balanced batch; compared are the per-class updates of the composed affine. Seeds "
                  f"{settings['seeds']}, checkpoints {settings['checkpoints']} (G steps for the GAN, search epochs for NAS), {settings['batches']} batches of "
                  f"{settings['per_class']} images per class each (`python scripts/gradient_controlled.py {task}`, commit "
                  f"{prov['commit'][:10]}, {prov['hardware']['cpu']}, {prov['wall_time_s'] / 60:.1f} min).", "",
                  "| layer | CV of update norms: CCBN | SaBN | mean pairwise cosine: CCBN | SaBN | cosine floor -1/(K-1) |",
                  "|---|---|---|---|---|---|"]
        for layer in layers:
            rows = [r for r in data["rows"] if r["layer"] == layer]
            mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
            lines.append(f"| {layer} | {mean('cv_ccbn'):.3f} | {mean('cv_sabn'):.3f} | {mean('cos_ccbn'):+.3f} | "
                         f"{mean('cos_sabn'):+.3f} | {rows[0]['cos_floor']:+.3f} |")
        cv, cos = summary["cv"], summary["cos"]
        lines += ["", f"Over all {cv['of']} (layer, seed, checkpoint, batch) cases the SaBN twin's update-norm spread "
                  f"is lower in {cv['sabn_lower_in']} (mean CV {cv['mean_ccbn']:.3f} -> {cv['mean_sabn']:.3f}) and its "
                  f"mean pairwise cosine lower in {cos['sabn_lower_in']} (mean {cos['mean_ccbn']:+.3f} -> "
                  f"{cos['mean_sabn']:+.3f}; floors {', '.join(f'{v:+.3f}' for v in _floors(summary))}).", "",
                  f"![controlled {task}](analysis/gradient_controlled_{task}.png)", ""]
        note = ROOT / "results" / "notes" / f"controlled_{task}.md"
        if note.is_file():
            lines += [note.read_text().strip(), ""]
    return lines


def _same_numbers() -> list:
    """results/bench/same_numbers.json (scripts/compare_commits.py): commands run with an earlier commit
    and a later one on one machine, and whether every final metric and every weight came out equal."""
    path = ROOT / "results" / "bench" / "same_numbers.json"
    if not path.is_file():
        return []
    lines = ["## Same numbers across refactors", "",
             "Each command run with two commits of this repository, one after the other on one machine, same "
             "thread count and SaBN kernel path (`python scripts/compare_commits.py --old <checkout> <overrides>`).", "",
             "| command | old commit | new commit | only in new | threads | final metrics | weights of last.pt | wall s (old / new) |",
             "|---|---|---|---|---|---|---|---|"]
    records = json.loads(path.read_text())
    for r in records:
        metrics = f"identical ({len(r['metrics'])})" if r["same_metrics"] else "differ: " + ", ".join(r["differing_metrics"])
        weights = f"identical ({r['tensors_compared']} tensors)" if r["same_tensors"] else \
            f"{len(r['differing_tensors'])}+ differ"
        lines.append(f"| `{r['command']}` | {r['old_commit']} | {r['new_commit']} | {' '.join(r['new_only']) or '-'} | "
                     f"{r['threads']} | {metrics} | {weights} | {r['wall_time_s']['old']} / {r['wall_time_s']['new']} |")
    hw = records[-1]["hardware"]
    notes = [f"- `{r['command']}`: {r['note']}" for r in records if r.get("note")]
    return lines + ["", f"Machine: {hw['cpu']}, torch {hw['torch']}.", *([""] + notes if notes else []), ""]


def report() -> str:
    lines = ["# Reproduction report", "",
             "Generated by `python scripts/make_report.py` from the result files in this folder; every number",
             "comes from a run of this repository (command, config, commit, seed, hardware and wall time are in",
             "each `seed<k>.json`). Paper numbers appear only in columns labelled as the paper's.", ""]
    for task, spec in task_reports().items():
        runs = load(task)
        lines += [f"## {spec.title}", ""]
        if not runs:
            lines += ["No runs committed yet.", ""]
            continue
        for scale in sorted({s for s, _ in runs}):
            lines += [f"### {scale} scale", "", table(task, scale, runs)]
            if spec.deviations.get(scale):
                lines += [f"Deviations of the `{scale}` preset from the paper's protocol:", ""]
                lines += [f"- {d}" for d in spec.deviations[scale]] + [""]
        lines += _analysis_summary(task, runs)
        note = ROOT / "results" / "notes" / f"{task}.md"
        if note.is_file():
            lines += ["", note.read_text().strip()]
        links = _links(task)
        if links:
            lines += ["", *links]
        lines.append("")
    controlled = _controlled()
    if controlled:
        lines += ["## Gradient balance and diversity, controlled", "", *controlled]
    lines += _speed()
    lines += _vs_official()
    lines += _vs_official("vs_official_gpu.json", "Training step against the official implementation, GPU")
    lines += _speed("gpu_norms.json", "Layer speed on the GPU")
    lines += _gpu_steps()
    lines += _same_numbers()
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    out = ROOT / "results" / "README.md"
    out.write_text(report())
    print(f"wrote {out}")
