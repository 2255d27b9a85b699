"""How the adversarial-training task appears in tables, plots, the report and the step benchmark."""
from ..common.report_spec import Criterion, Row, TaskReport

REPORT = TaskReport(
    title="Adversarial training (PreAct ResNet, PGD) — BN vs AuxBN vs SaAuxBN",
    rows=(Row("test/clean/clean", "clean branch, clean accuracy (SA)", "max",
              same_as={"bn": "test/adv/clean"}),   # one BN network: both branches are the same model
          Row("test/adv/clean", "adv branch, clean accuracy (SA)", "max"),
          Row("test/adv/pgd10", "adv branch, PGD-10 accuracy (RA)", "max"),
          Row("test/adv/pgd20", "adv branch, PGD-20 accuracy (RA)", "max")),
    # The paper's table (README of the official repository), PreAct-ResNet-18.
    paper={("test/clean/clean", "bn"): 84.84, ("test/clean/clean", "auxbn"): 94.47,
           ("test/clean/clean", "saauxbn"): 94.62,
           ("test/adv/clean", "bn"): 84.84, ("test/adv/clean", "auxbn"): 83.42, ("test/adv/clean", "saauxbn"): 84.08,
           ("test/adv/pgd10", "bn"): 41.57, ("test/adv/pgd10", "auxbn"): 43.05, ("test/adv/pgd10", "saauxbn"): 44.93,
           ("test/adv/pgd20", "bn"): 40.02, ("test/adv/pgd20", "auxbn"): 41.60, ("test/adv/pgd20", "saauxbn"): 43.14},
    paper_note="the official repository's README (PreAct-ResNet-18, 200 epochs, full test set).",
    panels=(("train/loss_clean", "train loss, clean branch"), ("train/loss_adv", "train loss, adversarial branch")),
    deviations={
        "cpu": ["PreAct ResNet with one block per stage and width 16 instead of PreAct-ResNet-18 (2 blocks, width 64)",
                "4 epochs on 5632 images of the 45k split (lr x0.1 at epochs 2 and 3, 30 warm-up steps) instead of "
                "200 epochs on 45k (milestones 50/150, 200 warm-up steps)",
                "SA and PGD-10/20 on 1000 test images (a fixed permutation) instead of all 10 000; the last "
                "checkpoint instead of epoch 190"],
        "cpu_paired": ["the cpu tier's network (one block per stage, width 16), 4 epochs on 11 264 images, all 10 000 "
                       "test images, arms paired per seed (data order, PGD noise, initial conv/classifier weights); "
                       "the last checkpoint instead of epoch 190"],
    },
    criteria={"cpu_paired": Criterion("test/adv/pgd20", "auxbn", "saauxbn", alpha=0.05)},
    bench_norm="saauxbn",
    paper_scale="paper",
)
