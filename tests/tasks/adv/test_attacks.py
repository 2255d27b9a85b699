"""PGD sanity: the eps-ball and [0, 1] hold, more steps do not lower the loss, modes are restored."""
import pytest
import torch
import torch.nn.functional as F

from sabn import norm_layer
from tasks.adv.attacks import BranchSelect, check_eps, pgd
from tasks.adv.preact_resnet import PreActResNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = PreActResNet(norm_layer("saauxbn", num_conditions=2), blocks=(1, 1), width=8)
    net.train()
    with torch.no_grad():
        for branch in (0, 1):
            net(torch.rand(32, 3, 32, 32), branch)
    return net.eval()


@pytest.fixture(scope="module")
def batch(cifar10):
    return cifar10.images[::500][:16].float() / 255, cifar10.labels[::500][:16]


def test_adversarial_examples_stay_in_ball_and_range(model, batch):
    x, y = batch
    eps = 8 / 255
    x_adv = pgd(model, x, y, eps, 2 / 255, 5, branch=1, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_more_steps_do_not_decrease_the_loss(model, batch):
    x, y = batch
    losses = []
    for steps in (0, 1, 5, 20):
        x_adv = pgd(model, x, y, 8 / 255, 2 / 255, steps, random_start=False)
        with torch.no_grad():
            losses.append(F.cross_entropy(model(x_adv, 1), y).item())
    assert losses[1] > losses[0] and losses[3] >= losses[2] - 1e-3 and losses[2] > losses[0]


def test_attack_leaves_mode_and_statistics_alone(model, batch):
    x, y = batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pgd(model, x, y, 8 / 255, 2 / 255, 3)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_eval_predictions_do_not_depend_on_batch_size(model, batch):
    x, _ = batch
    with torch.no_grad():
        full = model(x, 1)
        parts = torch.cat([model(x[i:i + 3], 1) for i in range(0, len(x), 3)])
    torch.testing.assert_close(full, parts, atol=1e-5, rtol=1e-5)


def test_branches_differ_and_wrapper_selects(model, batch):
    x, _ = batch
    with torch.no_grad():
        assert not torch.allclose(model(x, 0), model(x, 1))
        torch.testing.assert_close(BranchSelect(model, "clean")(x), model(x, 0))
        torch.testing.assert_close(BranchSelect(model, "adv")(x), model(x, 1))


def test_bad_branch_and_pixel_eps_are_refused(model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="unknown branch 'robust'"):
        BranchSelect(model, "robust")
    with pytest.raises(ValueError, match="8/255"):
        check_eps(8)
    with pytest.raises(ValueError, match="pixel value"):
        pgd(model, x, y, 8, 2, 1)


def test_torchattacks_can_attack_each_branch(model, batch):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = batch
    for branch in ("clean", "adv"):
        wrapped = BranchSelect(model, branch)
        x_adv = torchattacks.PGD(wrapped, eps=8 / 255, alpha=2 / 255, steps=3)(x, y)
        assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
        aa = torchattacks.AutoAttack(wrapped, norm="Linf", eps=8 / 255, version="standard", n_classes=10, seed=0)
        x_aa = aa(x[:4], y[:4])
        assert (x_aa - x[:4]).abs().max() <= 8 / 255 + 1e-6
