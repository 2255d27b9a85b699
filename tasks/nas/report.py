"""How the NAS task appears in tables, plots, the report and the step benchmark."""
from ..common.report_spec import Row, TaskReport

REPORT = TaskReport(
    title="Weight-sharing NAS on NAS-Bench-201 (DARTS) — BN vs CCBN vs SaBN",
    rows=(Row("gt_test", "ground-truth test accuracy of the final genotype (%)", "max"),
          Row("gt_valid", "ground-truth CIFAR-10 valid accuracy (%)", "max"),
          Row("params_free_ops", "parameter-free ops in the final cell (of 6)", None)),
    # DARTS (first order) on CIFAR-100 / ImageNet16-120 top-1; no CIFAR-10 column in the paper.
    paper={("gt_test", "bn"): "44.05 ± 7.47 (C100) / 36.47 ± 7.06 (IN16)",
           ("gt_test", "sabn"): "71.56 ± 1.39 (C100) / 45.85 ± 0.72 (IN16)"},
    paper_note="the official README (DARTS searched and evaluated on CIFAR-100 / ImageNet16-120, 35 epochs).",
    panels=(("per_epoch:gt_test_per_epoch", "ground-truth test accuracy (%)"), ("train/loss", "supernet train loss")),
    deviations={
        "cpu": ["a short-search check, not a test of the paper's claim: after 6 epochs softmax(alpha) is still "
                "0.19-0.21 on every edge, so the final cells are tie-breaks of an alpha that has barely moved",
                "CIFAR-10 search (a seeded 50/50 split of the mirror's train set, 6400 + 6400 images) instead of "
                "CIFAR-100 / ImageNet16-120; ground truth is CIFAR-10 test (ori-test) of NAS-Bench-201",
                "supernet C=8, one cell per stage (3 cells) instead of C=16, five cells per stage (15 cells)",
                "6 search epochs with cosine T = 6 instead of 35 epochs of T = 50"],
    },
    bench_norm="sabn",
    paper_scale="paper_cifar100",
    # The paper presets point at CIFAR-100; the step only needs tensors of the right shape.
    bench_paper_overrides=("data=cifar10", "task.benchmark.dataset=cifar10"),
)
