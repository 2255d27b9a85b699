"""Median time and peak memory of one full training step of a task, fused vs reference norm path.

    python scripts/bench_step.py --task adv --scale cpu            # the cpu-tier model
    python scripts/bench_step.py --task gan --scale paper_sngan --steps 3
    python scripts/bench_step.py --all --quick                      # every task, cpu and paper sizes
    python scripts/bench_step.py --task gan --scale cpu --paths fused --profile   # where the time goes

One step is what the task's train_step does (adv: PGD-7 + clean and adversarial passes; nas: a
weight and an architecture step; gan: one G iteration, i.e. n_dis D steps and one G step; nst:
one decoder step). Results go to results/bench/step_<task>.json with the hardware. Peak memory is the
CUDA allocator's peak on GPUs and the process's maximum RSS on CPUs (an upper bound).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sabn  # noqa: E402
from tasks.common.distributed import DistInfo  # noqa: E402
from tasks.common.logging import MetricsLogger  # noqa: E402
from tasks.common.provenance import hardware, provenance  # noqa: E402
from tasks.common.report_spec import task_report  # noqa: E402
from tasks.common.task import RunContext, get_task, task_names  # noqa: E402

def compose(task: str, scale: str, norm: str, overrides):
    from tasks.common.store import compose as store_compose
    return store_compose(f"experiment={task}/{scale}", f"norm={norm}", *overrides)


def iteration(task, state, ctx):
    """The timed unit of ``task``: a G iteration for the GAN (n_dis D steps + 1 G step), else one
    training step. Returns (training steps per unit, a function running the next unit)."""
    cycle = int(getattr(ctx.cfg.task, "n_dis", 1))
    done = [0]

    def run() -> None:
        for _ in range(cycle):
            task.train_step(state, done[0], ctx)
            done[0] += 1
    return cycle, run


def bench(task_name: str, scale: str, norm: str, fused: bool, steps: int, warmup: int, extra,
          profile: Optional[Path] = None) -> dict:
    task = get_task(task_name)
    # The paper presets may point at data this machine lacks; the step only needs tensors of the right
    # shape, so the benchmark keeps the paper's model and batch and the task says what to load instead.
    overrides = list(extra) + (list(task_report(task_name).bench_paper_overrides) if scale.startswith("paper") else [])
    if norm not in ("bn", "adain", "saadain"):
        overrides.append(f"+norm.options.fused={str(fused).lower()}")
    cfg = compose(task_name, scale, norm, overrides)
    device = torch.device(cfg.trainer.device if cfg.trainer.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(cfg, device, DistInfo(), MetricsLogger(Path(tmp), enabled=False), Path(tmp))
        state = task.build(ctx)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        cycle, run = iteration(task, state, ctx)
        times = []
        for _ in range(warmup):
            run()
        with _profiler(profile, device) as prof:
            for _ in range(steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        if profile is not None:
            sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            prov = provenance(str(device))
            header = (f"# {task_name} {scale} norm={norm} path={'fused' if fused else 'reference'}, {steps} steps; "
                      f"commit {prov['commit'][:10]} (dirty: {prov['dirty']}), {json.dumps(prov['hardware'])}\n"
                      f"# command: {prov['command']}\n")
            profile.write_text(header + prof.key_averages().table(sort_by=sort, row_limit=30) + "\n")
            print(profile.read_text())
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"task": task_name, "scale": scale, "norm": norm, "norm_path": "fused" if fused else "reference",
            "channels_last": bool(cfg.trainer.channels_last), "compile": bool(cfg.trainer.compile),
            "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "steps": steps,
            "unit": f"G iteration ({cycle} D steps + 1 G step)" if task_name == "gan" else "train step",
            "cpu_kernels": sabn.cpu_kernels_status()["active"], "seed": int(cfg.trainer.seed),
            "peak_bytes": int(peak), "peak_kind": "cuda_max_allocated" if device.type == "cuda" else "max_rss",
            "device": str(device)}


def _profiler(path: Optional[Path], device: torch.device):
    if path is None:
        return contextlib.nullcontext()
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    return profile(activities=acts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=task_names())
    p.add_argument("--all", action="store_true")
    p.add_argument("--scale", default=None, help="preset name, or paper for each task's paper preset; default: cpu and paper")
    p.add_argument("--norm", default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 steps after 1 warm-up")
    p.add_argument("--paths", default="fused,reference", help="norm paths to compare")
    p.add_argument("--profile", action="store_true",
                   help="torch.profiler over the timed steps; top ops to results/bench/profile_<task>_<scale>_<path>.txt")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.channels_last=true")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 3, 1
    tasks = list(task_names()) if args.all or not args.task else [args.task]
    for name in tasks:
        # "paper" means each task's paper preset (nas: paper_cifar100, gan: paper_sngan)
        paper = task_report(name).paper_scale
        scales = [paper if args.scale == "paper" else args.scale] if args.scale else ["cpu", paper]
        rows = []
        for scale in scales:
            for path in args.paths.split(","):
                norm = args.norm or task_report(name).bench_norm
                if path == "reference" and norm in ("bn", "adain", "saadain"):
                    continue  # no separate reference path for these
                prof = ROOT / "results" / "bench" / f"profile_{name}_{scale}_{path}.txt" if args.profile else None
                row = bench(name, scale, norm, path == "fused", args.steps, args.warmup, args.overrides, prof)
                rows.append(row)
                print(json.dumps(row), flush=True)
        out = ROOT / "results" / "bench" / f"step_{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["scripts/bench_step.py", *sys.argv[1:]])
        prov, hw = provenance(), hardware()
        for row in rows:   # rows of several invocations are merged below: each keeps its own origin
            row.update(command=command, commit=prov["commit"], dirty=prov["dirty"], hardware=hw)
        key = lambda r: (r["scale"], r["norm"], r["norm_path"], r["channels_last"], r["compile"], r["device"])  # noqa: E731
        kept = json.loads(out.read_text())["rows"] if out.is_file() else []
        fresh = {key(r) for r in rows}
        merged = [r for r in kept if key(r) not in fresh] + rows
        out.write_text(json.dumps({"hardware": hardware(), "rows": merged,
                                   "note": "peak_bytes on CPU is the process's maximum RSS so far "
                                           "(cumulative over the rows of one invocation: an upper bound)"},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
