"""The layers compile without graph breaks (the composition is what inductor sees)."""
import pytest
import torch

from sabn import build_norm


@pytest.mark.parametrize("name, cond", [("sabn", "per_sample"), ("saauxbn", 1)])
def test_layers_compile_fullgraph_and_match_eager(name, cond):
    torch._dynamo.reset()
    layer = build_norm(name, 8, 10 if cond == "per_sample" else 2)
    x = torch.randn(6, 8, 4, 4)
    c = torch.tensor([0, 3, 9, 2, 2, 1]) if cond == "per_sample" else cond
    eager = layer(x, c)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, c), eager, atol=1e-5, rtol=1e-5)



@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_folded_composition_for_compilers_matches_the_reference(training, fmt):
    from sabn.functional import sample_affine_batch_norm_folded, sample_affine_batch_norm_reference
    torch.manual_seed(0)
    x = (torch.randn(6, 5, 4, 3) * 2 + 1).contiguous(memory_format=fmt)
    scale, shift = torch.randn(6, 5), torch.randn(6, 5)
    outs, grads, stats = [], [], []
    for fn in (sample_affine_batch_norm_folded, sample_affine_batch_norm_reference):
        rm, rv = torch.full((5,), 0.3), torch.full((5,), 2.0)
        leaves = [t.clone().requires_grad_() for t in (x, scale, shift)]
        out = fn(leaves[0], leaves[1], leaves[2], rm, rv, training, 0.1, 1e-5)
        out.backward(torch.ones_like(out) * torch.arange(6.0)[:, None, None, None])
        outs.append(out), grads.append([t.grad for t in leaves]), stats.append((rm, rv))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    assert outs[0].is_contiguous(memory_format=fmt)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    for a, b in zip(*stats):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_compiled_training_updates_running_stats_like_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager, compiled_layer = build_norm("sabn", 4, 3), build_norm("sabn", 4, 3)
    compiled_layer.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_layer, fullgraph=True, backend="aot_eager")
    for step in range(3):
        x, y = torch.randn(5, 4, 3, 3) + step, torch.tensor([0, 1, 2, 2, 1])
        torch.testing.assert_close(compiled(x, y), eager(x, y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled_layer.running_mean, eager.running_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(compiled_layer.running_var, eager.running_var, atol=1e-6, rtol=1e-6)
    assert compiled_layer.num_batches_tracked.item() == 3


def test_folded_backward_passes_gradcheck():
    from sabn.functional import sample_affine_batch_norm_folded
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    scale = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: sample_affine_batch_norm_folded(*a, None, None, True), (x, scale, shift))
