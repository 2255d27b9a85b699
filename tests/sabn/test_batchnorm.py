"""Numerics of the conditional batch norms against the formulas of the paper (spec section 1)."""
import pytest
import torch
import torch.nn.functional as F

from sabn import (AuxBatchNorm2d, CategoricalConditionalBatchNorm2d, SandwichAuxBatchNorm2d,
                  SandwichBatchNorm2d, SplitSandwichBatchNorm2d, build_norm)


def _x(n=6, c=4, h=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, h, generator=g, dtype=dtype) * 2 + 0.5


def _bn(x):
    return F.batch_norm(x, None, None, training=True, eps=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_sabn_matches_formula_per_sample(fused):
    torch.manual_seed(0)
    layer = SandwichBatchNorm2d(4, 3, fused=fused)
    x, y = _x(), torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        layer.bias.normal_()
        layer.condition_bias.normal_()
    gk, bk = layer.condition_weight[y][:, :, None, None], layer.condition_bias[y][:, :, None, None]
    expected = gk * (layer.weight[:, None, None] * _bn(x) + layer.bias[:, None, None]) + bk
    torch.testing.assert_close(layer(x, y), expected, atol=1e-5, rtol=1e-5)


def test_ccbn_matches_formula():
    layer = CategoricalConditionalBatchNorm2d(4, 3)
    x, y = _x(), torch.tensor([2, 1, 0, 2, 1, 0])
    expected = layer.condition_weight[y][:, :, None, None] * _bn(x) + layer.condition_bias[y][:, :, None, None]
    torch.testing.assert_close(layer(x, y), expected, atol=1e-5, rtol=1e-5)
    assert layer.weight is None


def test_sabn_k1_with_identity_independent_affine_equals_batchnorm():
    torch.manual_seed(1)
    layer = SandwichBatchNorm2d(4, 1)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        layer.condition_weight.fill_(1)
        bn.weight.copy_(layer.weight)
        bn.bias.normal_()
        layer.bias.copy_(bn.bias)
    x = _x()
    torch.testing.assert_close(layer(x), bn(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.running_mean, bn.running_mean)
    torch.testing.assert_close(layer.running_var, bn.running_var)
    layer.eval(), bn.eval()
    torch.testing.assert_close(layer(x, 0), bn(x), atol=1e-6, rtol=1e-6)


def test_paper_initialisation():
    torch.manual_seed(0)
    layer = SandwichBatchNorm2d(4096, 10)
    for gamma in (layer.weight, layer.condition_weight):
        assert abs(gamma.mean().item() - 1) < 2e-3 and abs(gamma.std().item() - 0.02) < 2e-3
    assert layer.bias.abs().max() == 0 and layer.condition_bias.abs().max() == 0
    exact = build_norm("sabn", 8, 2, gamma_init_std=0.0)
    assert torch.all(exact.weight == 1) and torch.all(exact.condition_weight == 1)
    aux = build_norm("auxbn", 8, 2)
    assert torch.all(aux.condition_weight == 1), "AuxBN keeps PyTorch's (1, 0) init"


def test_split_statistics_use_and_update_only_the_chosen_set():
    layer = SplitSandwichBatchNorm2d(4, 3, track_running_stats=True)
    x = _x()
    out = layer(x, 1)
    mean = x.mean((0, 2, 3))
    torch.testing.assert_close(layer.running_mean[1], 0.1 * mean)
    assert torch.all(layer.running_mean[0] == 0) and torch.all(layer.running_mean[2] == 0)
    assert layer.num_batches_tracked.tolist() == [0, 1, 0]
    expected = (layer.condition_weight[1] * layer.weight)[:, None, None] * _bn(x) + \
        (layer.condition_weight[1] * layer.bias + layer.condition_bias[1])[:, None, None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_split_sabn_without_running_stats_uses_batch_stats_in_eval():
    layer = build_norm("split_sabn", 4, 5)
    assert layer.running_mean is None
    x = _x()
    train_out = layer(x, 3)
    layer.eval()
    torch.testing.assert_close(layer(x, 3), train_out)


def test_auxbn_train_and_eval_keep_branches_apart():
    aux = AuxBatchNorm2d(4, 2)
    clean, adv = _x(seed=1), _x(seed=2) * 3
    aux(clean, 0)
    aux(adv, 1)
    torch.testing.assert_close(aux.running_mean[0], 0.1 * clean.mean((0, 2, 3)))
    torch.testing.assert_close(aux.running_mean[1], 0.1 * adv.mean((0, 2, 3)))
    aux.eval()
    ref = F.batch_norm(adv, aux.running_mean[1], aux.running_var[1], aux.condition_weight[1],
                       aux.condition_bias[1], False)
    torch.testing.assert_close(aux(adv, 1), ref)


def test_saauxbn_branch_formula_and_whole_batch_tensor_flag():
    layer = SandwichAuxBatchNorm2d(4, 2)
    x = _x()
    expected = layer.condition_weight[1][:, None, None] * (
        layer.weight[:, None, None] * _bn(x) + layer.bias[:, None, None]) + layer.condition_bias[1][:, None, None]
    torch.testing.assert_close(layer(x, torch.tensor(1)), expected, atol=1e-5, rtol=1e-5)
    # A per-sample vector holding one value is accepted as the whole batch's branch.
    torch.testing.assert_close(layer(x, torch.ones(6, dtype=torch.long)), layer(x, 1))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_fused_matches_reference_outputs_grads_and_running_stats(channels_last, training):
    torch.manual_seed(3)
    fused = SandwichBatchNorm2d(8, 10, fused=True)
    ref = SandwichBatchNorm2d(8, 10, fused=False)
    ref.load_state_dict(fused.state_dict())
    with torch.no_grad():
        for m in (fused, ref):
            m.running_mean.fill_(0.3)
            m.running_var.fill_(2.0)
    fused.train(training), ref.train(training)
    x = _x(16, 8, 7, seed=4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    grad = torch.randn(16, 8, 7, 7)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [m(xi, y) for m, xi in zip((fused, ref), xs)]
    for o in outs:
        o.backward(grad)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    if channels_last:
        assert outs[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)
    torch.testing.assert_close(fused.running_mean, ref.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fused.running_var, ref.running_var, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["ccbn", "sabn"])
def test_fused_layer_passes_gradcheck(name):
    torch.manual_seed(0)
    layer = build_norm(name, 3, 4, dtype=torch.float64, track_running_stats=False)
    with torch.no_grad():
        layer.condition_bias.normal_()
    x = torch.randn(5, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda x: layer(x, y), (x,))
    assert torch.autograd.gradcheck(
        lambda w, b: torch.func.functional_call(layer, {"condition_weight": w, "condition_bias": b}, (x, y)),
        (layer.condition_weight.detach().clone().requires_grad_(),
         layer.condition_bias.detach().clone().requires_grad_()))


def test_fused_path_saves_no_more_tensors_than_batchnorm():
    saved = []
    def pack(t):
        saved.append(t)
        return t
    x = _x(8, 4, 6).requires_grad_()
    counts = []
    for layer, cond in ((torch.nn.BatchNorm2d(4), None), (SandwichBatchNorm2d(4, 3), torch.arange(8) % 3)):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(x) if cond is None else layer(x, cond)
        counts.append(sum(t.numel() for t in saved if t.numel() >= x.numel()))
    assert counts[1] <= counts[0], f"full-size tensors saved: BN {counts[0]}, SaBN {counts[1]}"


def test_state_dict_round_trip_and_repr():
    a = SandwichBatchNorm2d(4, 3)
    a(_x(), torch.tensor([0, 1, 2, 0, 1, 2]))
    b = SandwichBatchNorm2d(4, 3)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert "num_conditions=3" in repr(a)
    b.reset_parameters()
    assert torch.all(b.running_mean == 0) and b.num_batches_tracked.item() == 0


def test_meta_device_and_dtype_follow_input():
    layer = build_norm("sabn", 4, 3, device="meta")
    out = layer(torch.empty(2, 4, 3, 3, device="meta"), torch.zeros(2, dtype=torch.long, device="meta"))
    assert out.device.type == "meta"
    layer64 = build_norm("sabn", 4, 3, dtype=torch.float64)
    assert layer64(_x(dtype=torch.float64), torch.zeros(6, dtype=torch.long)).dtype == torch.float64


def test_bfloat16_autocast_keeps_statistics_in_float32():
    layer = SandwichBatchNorm2d(4, 3)
    x = _x()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16(), y)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer(x, y), atol=0.05, rtol=0.05)


def test_one_dimensional_inputs():
    layer = SandwichBatchNorm2d(4, 2)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    ref = SandwichBatchNorm2d(4, 2, fused=False)
    ref.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x, y), ref(x, y), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_sample_affine_function_matches_reference_and_gradcheck(training):
    from sabn import sample_affine_batch_norm, sample_affine_batch_norm_reference
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64) * 2

    def fused(*args):
        return sample_affine_batch_norm(*args, rm.clone(), rv.clone(), training)
    assert torch.autograd.gradcheck(fused, (x, scale, shift))
    torch.testing.assert_close(fused(x, scale, shift),
                               sample_affine_batch_norm_reference(x, scale, shift, rm.clone(), rv.clone(), training))
