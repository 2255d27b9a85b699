"""The long-search protocol (issue #13): paired initial weights across arms, the cells section and
its tests, with the thresholds fixed in tasks/nas/report.py."""
import pytest
import torch

from tasks.common.task import get_task
from tasks.nas import report
from tasks.nas.task import paired_supernet_init
from tasks.nas.supernet import SuperNet
from tests.conftest import compose


def _model(norm: str, seed: int) -> SuperNet:
    torch.manual_seed(seed)   # the global stream, as the runner seeds it
    task = get_task("nas")
    model = SuperNet(task.norm_layer(compose("experiment=nas/long", f"norm={norm}")), 8, 1, 10)
    return paired_supernet_init(model, seed)


def test_paired_init_gives_bn_and_sabn_arms_the_same_convolutions_and_alphas():
    bn, sabn = _model("bn", 3), _model("sabn", 3)
    convs = lambda m: [x.weight for x in m.modules() if isinstance(x, (torch.nn.Conv2d, torch.nn.Linear))]  # noqa: E731
    assert len(convs(bn)) == len(convs(sabn)) > 0
    assert all(torch.equal(a, b) for a, b in zip(convs(bn), convs(sabn)))
    assert torch.equal(bn.alphas, sabn.alphas)
    assert not torch.equal(_model("bn", 4).alphas, bn.alphas), "another seed, other weights"


def test_the_long_preset_pairs_its_arms_and_states_its_criterion():
    cfg = compose("experiment=nas/long_matched", "norm=sabn")
    assert cfg.task.paired_init and cfg.task.stop_epoch == 35 and cfg.task.epochs == 50
    # the alphas travel as far as in the paper's 35 x 782 steps at 3e-4 (Adam: a step of about lr)
    steps = cfg.task.stop_epoch * cfg.data.train_subset // cfg.task.batch_size
    assert cfg.task.a_lr * steps == pytest.approx(3e-4 * 35 * 782, rel=0.01)
    crit = report.REPORT.criteria["long_matched"]
    assert (crit.metric, crit.baseline, crit.variant, crit.kind) == ("gt_test", "bn", "sabn", "mann_whitney")
    assert "long" not in report.REPORT.criteria, "the pilot at the paper's alpha lr is no comparison"


def _run(norm, seed, acc, cls, margin):
    return {"norm": norm, "seed": seed, "metrics": {"arch_str": f"|cell{seed}~0|", "cell_class": cls,
                                                    "min_margin": margin, "gt_test": acc,
                                                    "transfer_gt_cifar100": acc - 20, "transfer_gt_imagenet16": acc - 50}}


def test_cells_section_classifies_by_the_fixed_margin_and_counts_collapses():
    runs = {("long", "bn"): [_run("bn", s, 54.3, "skip-heavy", 0.2) for s in range(3)] +
            [_run("bn", 3, 93.0, "conv-rich", report.DECISIVE_MARGIN / 2)],
            ("long", "sabn"): [_run("sabn", s, 93.5, "conv-rich", 0.1) for s in range(4)]}
    text = report.cells_section("long", runs)
    rows = [line for line in text.splitlines() if line.startswith(("| bn | ", "| sabn | "))]
    assert sum("| decisive |" in line for line in rows) == 7 and sum("| tie |" in line for line in rows) == 1
    assert "| bn | 4 | 3 | 3 | 54.30 (n=3) |" in text and "| sabn | 4 | 4 | 0 | 93.50 (n=4) |" in text
    assert "sabn 0/4 vs bn 3/4" in text and "p = 0.071" in text   # Fisher's exact, one-sided
    assert report.cells_section("cpu", runs) == ""
    # the parameter-free count is descriptive beside the pre-stated class: "n/a" where a run did not record it
    assert all("| n/a | " in line for line in rows if "`" in line)
    runs[("long", "sabn")][0]["metrics"]["params_free_ops"] = 6.0
    row = next(line for line in report.cells_section("long", runs).splitlines() if line.startswith("| sabn | 0 |"))
    assert "| conv-rich | 6 | 0.1000 |" in row
