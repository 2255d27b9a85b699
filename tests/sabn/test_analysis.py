"""Gradient-balance analysis on cases with known answers."""
import math

import pytest
import torch

from sabn import build_norm
from sabn.analysis import GradientMonitor, condition_gradients, spread


def _backward(layer, x, y, weights):
    out = layer(x, y)
    (out * weights).sum().backward()


def test_absent_condition_has_zero_gradient_and_is_excluded():
    torch.manual_seed(0)
    layer = build_norm("sabn", 3, 3)
    x = torch.randn(6, 3, 4, 4)
    _backward(layer, x, torch.tensor([0, 0, 1, 1, 0, 1]), torch.randn(6, 3, 4, 4))
    grads = condition_gradients(layer)
    stats = spread(grads["independent"])
    assert stats["norms"][2] == 0 and stats["present"] == 2
    assert stats["norms"][0] > 0 and stats["norms"][1] > 0


def test_identical_conditions_give_cosine_one_and_no_spread():
    layer = build_norm("ccbn", 2, 2)
    vectors = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    out = spread(vectors)
    assert out["cv"] == pytest.approx(0.0) and out["max_min"] == pytest.approx(1.0)
    assert out["cos_mean"] == pytest.approx(1.0)
    assert out["cosine"] == [[1.0, 1.0], [1.0, 1.0]]
    del layer


def test_known_norms_and_orthogonal_directions():
    out = spread(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    assert out["norms"] == [3.0, 1.0] and out["max_min"] == pytest.approx(3.0)
    assert out["cv"] == pytest.approx(0.5) and out["cos_mean"] == pytest.approx(0.0)


def test_effective_gradient_matches_autograd_on_the_composed_affine():
    torch.manual_seed(1)
    layer = build_norm("sabn", 3, 2)
    with torch.no_grad():
        layer.bias.normal_()
        layer.weight.uniform_(0.5, 1.5)
    x, y = torch.randn(4, 3, 3, 3), torch.tensor([0, 1, 1, 0])
    w = torch.randn(4, 3, 3, 3)
    _backward(layer, x, y, w)
    # Direct: h = a_k x_hat + b_k with a, b as leaves.
    a = (layer.condition_weight * layer.weight).detach().requires_grad_()
    b = (layer.condition_weight * layer.bias + layer.condition_bias).detach().requires_grad_()
    x_hat = torch.nn.functional.batch_norm(x, None, None, training=True)
    ((a[y][:, :, None, None] * x_hat + b[y][:, :, None, None]) * w).sum().backward()
    eff = condition_gradients(layer)["effective"]
    torch.testing.assert_close(eff, torch.cat([a.grad, b.grad], 1), atol=1e-5, rtol=1e-4)


def test_monitor_accumulates_over_a_window_for_split_layers():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"norm": build_norm("split_sabn", 2, 3)})
    monitor = GradientMonitor(model, every=4, window=3)
    x = torch.randn(4, 2, 3, 3)
    summaries = []
    for step, k in enumerate([2, 0, 1, 2]):
        model.zero_grad()
        _backward(model["norm"], x, k, torch.randn(4, 2, 3, 3))
        summaries.append(monitor.observe(step))
    assert summaries[:3] == [None, None, None]
    record = summaries[3]["norm"]
    assert record["steps"] == 3 and record["independent"]["present"] == 3   # steps 1..3 saw 0, 1, 2
    assert record["independent"]["cv"] is not None and not math.isnan(record["independent"]["cv"])
    with pytest.raises(ValueError, match="window <= every"):
        GradientMonitor(model, every=2, window=3)


def test_sandwich_copy_computes_the_same_function_and_couples_the_updates():
    from sabn import norm_layer
    from sabn.analysis import composed_affines, sandwich_copy, update_spread
    from sabn.batchnorm import SandwichBatchNorm2d
    torch.manual_seed(0)
    make = norm_layer("ccbn", num_conditions=4)
    model = torch.nn.ModuleDict({"a": make(6), "b": make(6)})
    twin = sandwich_copy(model)
    assert all(isinstance(m, SandwichBatchNorm2d) for m in twin.values())
    x, y = torch.randn(8, 6, 5, 5), torch.arange(4).repeat(2)
    for name in model:
        torch.testing.assert_close(twin[name](x, y), model[name](x, y))
    before = composed_affines(twin)
    for name, value in composed_affines(model).items():
        torch.testing.assert_close(before[name], value)
    for net in (model, twin):   # one SGD step on the same loss
        loss = sum((m(x, y) * torch.linspace(-1, 1, 5)).square().mean() for m in net.values())
        grads = torch.autograd.grad(loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p.sub_(0.1 * g)
    ccbn = update_spread(composed_affines(model), composed_affines(model))
    assert ccbn["a"]["cos_floor"] == pytest.approx(-1 / 3)
    moved = update_spread(before, composed_affines(twin))
    assert moved["a"]["present"] == 4 and moved["a"]["cos_mean"] is not None
