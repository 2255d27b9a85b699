"""One path from the norm config to layers for every task (Task.norm_layer)."""
import pytest
import torch

from sabn.batchnorm import SplitSandwichBatchNorm2d
from tasks.common.task import get_task, task_names
from tests.conftest import compose

PRESET = {"adv": "adv/smoke", "gan": "gan/smoke", "nas": "nas/smoke", "nst": "nst/smoke"}


@pytest.mark.parametrize("name", task_names())
def test_every_task_builds_each_of_its_norms_through_one_helper(name):
    task = get_task(name)
    for norm in task.norms:
        cfg = compose(f"experiment={PRESET[name]}", f"norm={norm}")
        make = task.norm_layer(cfg, num_conditions=3)
        layer = make(8)
        assert isinstance(layer, torch.nn.Module)
        assert sum(p.numel() for p in layer.parameters()) >= 0
        assert task.norm_description(cfg) in ("bn", "ccbn", "sabn", "split_sabn", "auxbn", "saauxbn", "adain", "saadain")


def test_nas_variants_are_the_papers_and_user_options_win():
    task = get_task("nas")
    cfg = compose("experiment=nas/smoke", "norm=sabn")
    layer = task.norm_layer(cfg)(8, 5)
    assert isinstance(layer, SplitSandwichBatchNorm2d) and task.norm_description(cfg) == "split_sabn"
    bn = task.norm_layer(compose("experiment=nas/smoke", "norm=bn"))(8, 1)
    assert not bn.affine and not bn.track_running_stats, "the paper's NAS BN: no affine, batch statistics"
    bn = task.norm_layer(compose("experiment=nas/smoke", "norm=bn", "+norm.options.affine=true"))(8, 1)
    assert bn.affine, "norm.options override the task's defaults"


def test_bad_norm_options_fail_before_any_model_is_built():
    with pytest.raises((TypeError, ValueError), match="eps"):
        get_task("gan").norm_layer(compose("experiment=gan/smoke", "norm=sabn", "+norm.options.eps=-1"), 10)
