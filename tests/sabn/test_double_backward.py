"""Higher-order gradients of every norm on every path: ``gradgradcheck`` in float64 (train and eval,
per-sample and whole-batch conditions, NCHW and channels_last, fused and composition), and gradient
penalties (R1) through SaBN layers equal to the composition's, with the C++ CPU kernels on and off.

The fused autograd functions write their first-order backward by hand; a gradient penalty
differentiates that backward again, which must then be exact too (issue #30)."""
import pytest
import torch
from torch import nn
from torch.autograd import gradgradcheck

import sabn
from sabn import build_norm, list_norms
from sabn.functional import sample_affine_batch_norm, sample_affine_batch_norm_folded

PER_SAMPLE = ("ccbn", "sabn")            # layers that take one condition per sample
STYLE = ("adain", "saadain")


@pytest.fixture(params=["kernels", "python"])
def kernels(request):
    """The C++ CPU kernels active (where they build) or not; restored afterwards."""
    before = sabn.cpu_kernels_status()["active"]
    if request.param == "kernels" and not sabn.enable_cpu_kernels():
        pytest.skip(f"the C++ kernels could not be built here: {sabn.cpu_kernels_status()['error']}")
    if request.param == "python":
        sabn.disable_cpu_kernels()
    yield request.param
    sabn.enable_cpu_kernels() if before else sabn.disable_cpu_kernels()


def _layer(name, fused, training):
    torch.manual_seed(0)
    options = {} if name == "bn" or name in STYLE else {"fused": fused}
    layer = build_norm(name, 4, num_conditions=3, **options).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if getattr(layer, "running_var", None) is not None:
            layer.running_var.uniform_(0.5, 2.0)
            layer.running_mean.normal_()
    return layer.train(training)


def _condition(name, per_sample):
    if name in STYLE:
        g = torch.Generator().manual_seed(3)
        return torch.randn(3, 4, 3, 3, dtype=torch.double, generator=g) * 1.5 + 0.2
    return torch.tensor([0, 2, 1]) if per_sample else 1


CASES = [(name, fused, training, per_sample, layout)
         for name in list_norms() for fused in (True, False) for training in (True, False)
         for per_sample in (True, False) for layout in ("nchw", "channels_last")
         if not (per_sample and name not in PER_SAMPLE)
         if not (fused is False and (name == "bn" or name in STYLE))]


@pytest.mark.parametrize("name,fused,training,per_sample,layout", CASES)
def test_gradgradcheck_every_norm(name, fused, training, per_sample, layout):
    layer = _layer(name, fused, training)
    x = torch.randn(3, 4, 3, 3, dtype=torch.double)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    cond = _condition(name, per_sample)
    params = tuple(p for p in layer.parameters())
    buffers = dict(layer.named_buffers())
    names = [n for n, _ in layer.named_parameters()]

    def fn(x, *ps):
        # Fresh running buffers for every call: each evaluation sees the same state, and the in-place
        # update of one call never touches a tensor that another call's graph saved.
        fresh = {k: v.clone() for k, v in buffers.items()}
        return torch.func.functional_call(layer, {**dict(zip(names, ps)), **fresh}, (x, cond))

    assert gradgradcheck(fn, (x,) + tuple(p.detach().requires_grad_(True) for p in params))


def _make_discriminator(fused):
    torch.manual_seed(5)
    layers = nn.ModuleList([nn.Conv2d(3, 6, 3, padding=1), build_norm("sabn", 6, num_conditions=4, fused=fused),
                            nn.Conv2d(6, 6, 3, padding=1), build_norm("sabn", 6, num_conditions=4, fused=fused),
                            nn.Linear(6, 1)])
    with torch.no_grad():
        for m in (layers[1], layers[3]):
            m.bias.normal_()
            m.condition_bias.normal_()
    return layers


def _d(layers, x, y):
    h = layers[1](layers[0](x), y).relu()
    h = layers[3](layers[2](h), y).relu()
    return layers[4](h.mean((2, 3)))


def _r1_step(fused, dtype):
    """One discriminator step with an R1 penalty: loss = softplus(-D(x)) + 5 * |grad_x D(x)|^2."""
    layers = _make_discriminator(fused).to(dtype)
    opt = torch.optim.SGD(layers.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 6, 6, generator=g).to(dtype).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    out = _d(layers, x, y)
    (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    assert grad_x.grad_fn is not None, "the input gradient must be differentiable (create_graph)"
    penalty = grad_x.pow(2).flatten(1).sum(1).mean()
    loss = nn.functional.softplus(-out).mean() + 5.0 * penalty
    opt.zero_grad()
    penalty_grads = torch.autograd.grad(penalty, list(layers.parameters()), retain_graph=True, allow_unused=True)
    loss.backward()
    opt.step()
    return penalty.detach(), grad_x.detach(), penalty_grads, [p.detach().clone() for p in layers.parameters()]


def test_r1_penalty_step_equals_composition_float64(kernels):
    pen_f, gx_f, pg_f, after_f = _r1_step(True, torch.double)
    pen_r, gx_r, pg_r, after_r = _r1_step(False, torch.double)
    torch.testing.assert_close(pen_f, pen_r, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(gx_f, gx_r, atol=1e-10, rtol=1e-10)
    for a, b in zip(pg_f, pg_r):
        assert (a is None) == (b is None)
    # The penalty reaches the norm layers' weights (it was None with the hand-written backward).
    assert all(g is not None and g.abs().sum() > 0 for g in pg_f[1:3])
    for a, b in zip(after_f, after_r):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_r1_penalty_float32_fused_paths_agree_with_composition(kernels):
    """float32: the path the C++ kernels take (they handle float32 only) against the composition."""
    pen_f, gx_f, _, after_f = _r1_step(True, torch.float32)
    pen_r, gx_r, _, after_r = _r1_step(False, torch.float32)
    torch.testing.assert_close(pen_f, pen_r, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx_f, gx_r, atol=1e-5, rtol=1e-4)
    for a, b in zip(after_f, after_r):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fn", [sample_affine_batch_norm, sample_affine_batch_norm_folded])
def test_gradgradcheck_functional_paths(fn):
    """The function behind the per-sample affine of BigGAN-style layers, and the one used under
    torch.compile, called directly (compiled double backward is refused by torch itself)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 3, 3, dtype=torch.double, generator=g).requires_grad_(True)
    scale = (1 + 0.3 * torch.randn(3, 4, dtype=torch.double, generator=g)).requires_grad_(True)
    shift = torch.randn(3, 4, dtype=torch.double, generator=g).requires_grad_(True)
    assert gradgradcheck(lambda x, s, t: fn(x, s, t, None, None, True), (x, scale, shift))


def test_first_order_path_unchanged_by_double_backward_support():
    """Without create_graph the hand-written backward still runs: the gradient has no graph."""
    layer = build_norm("sabn", 4, num_conditions=3)
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x, torch.tensor([0, 1, 2])).pow(2).sum(), x)
    assert g.grad_fn is None
