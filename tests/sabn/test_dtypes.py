"""Every norm runs wherever ``nn.BatchNorm2d`` runs on CPU: float16 and bfloat16 modules, bfloat16
inputs to float32 modules, and autocast, with BN's rules for the dtypes of the output and of the
running statistics (issue #30: ccbn / sabn raised torch's internal "mixed dtype" error)."""
import pytest
import torch

from sabn import build_norm, list_norms

STYLE = ("adain", "saadain")


def _condition(name, dtype):
    if name in STYLE:
        return torch.randn(3, 4, 3, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    return torch.tensor([0, 1, 2]) if name in ("ccbn", "sabn") else 1


def _run(name, module_dtype, input_dtype, autocast=False):
    torch.manual_seed(0)
    layer = build_norm(name, 4, num_conditions=3).train().to(module_dtype)
    x = torch.randn(3, 4, 3, 3, generator=torch.Generator().manual_seed(2)).to(input_dtype).requires_grad_(True)
    cond = _condition(name, input_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x, cond)
    y.float().pow(2).sum().backward()
    return layer, x, y


def _bn_dtypes(module_dtype, input_dtype, autocast=False):
    layer, x, y = _run("bn", module_dtype, input_dtype, autocast)
    return y.dtype, layer.running_mean.dtype, x.grad.dtype


SCENARIOS = [(torch.float16, torch.float16, False), (torch.bfloat16, torch.bfloat16, False),
             (torch.float32, torch.bfloat16, False), (torch.float32, torch.float32, True)]


@pytest.mark.parametrize("name", list_norms())
@pytest.mark.parametrize("module_dtype,input_dtype,autocast", SCENARIOS)
def test_low_precision_as_batchnorm(name, module_dtype, input_dtype, autocast):
    out_dtype, stats_dtype, grad_dtype = _bn_dtypes(module_dtype, input_dtype, autocast)
    layer, x, y = _run(name, module_dtype, input_dtype, autocast)
    assert y.dtype == out_dtype and x.grad.dtype == grad_dtype
    if getattr(layer, "running_mean", None) is not None:
        assert layer.running_mean.dtype == stats_dtype
        assert torch.isfinite(layer.running_mean).all() and layer.running_var.float().mean() != 1.0
    for p in layer.parameters():
        assert p.dtype == module_dtype and p.grad is not None and torch.isfinite(p.grad.float()).all()
    # The values are the float32 layer's to low-precision accuracy.
    ref_layer, _, ref = _run(name, torch.float32, torch.float32)
    torch.testing.assert_close(y.float(), ref.detach(), atol=0.05, rtol=0.05)


def test_conditional_layers_take_n_c_star_inputs_as_documented():
    """Unlike ``nn.BatchNorm2d`` (4-d only) the conditional layers normalise any (N, C, *) input over
    every dim but C, as ``F.batch_norm`` does: one class serves MLP (N, C) and sequence (N, C, L)
    uses. Documented in the class docstring and the README's layer section."""
    layer = build_norm("sabn", 4, num_conditions=2)
    x = torch.randn(6, 4, 5)
    y = layer(x, torch.tensor([0, 1, 0, 1, 0, 1]))
    ref = torch.nn.functional.batch_norm(x, None, None, training=True)
    gk, bk = layer.condition_weight[[0, 1, 0, 1, 0, 1]], layer.condition_bias[[0, 1, 0, 1, 0, 1]]
    expected = gk[:, :, None] * (layer.weight[:, None] * ref + layer.bias[:, None]) + bk[:, :, None]
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4, ...\)"):
        layer(torch.randn(6))
