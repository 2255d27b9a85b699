"""GAN models: shapes, the official initialisation (surviving spectral norm), AutoGAN skip aliasing."""
import pytest
import torch

from sabn import SandwichBatchNorm2d, norm_layer
from tasks.gan.models.blocks import AutoGANCell
from tasks.gan.models.registry import build_gan


@pytest.mark.parametrize("model, size", [("sngan32", 32), ("autogan32", 32), ("biggan32", 32)])
@pytest.mark.parametrize("norm", ["bn", "ccbn", "sabn"])
def test_generator_and_discriminator_shapes(model, size, norm):
    torch.manual_seed(0)
    g, d = build_gan(model, norm_layer(norm, num_conditions=10), 10, 16, 16, 32)
    z, y = torch.randn(4, 32), torch.tensor([0, 3, 9, 1])
    x = g(z, y)
    assert x.shape == (4, 3, size, size) and x.abs().max() <= 1
    assert d(x, y).shape == (4,)


def test_conditional_layer_count_and_plain_final_bn():
    g, _ = build_gan("sngan32", norm_layer("sabn", num_conditions=10), 10, 16, 16, 32)
    cond = [m for m in g.modules() if isinstance(m, SandwichBatchNorm2d)]
    assert len(cond) == 6 and type(g.to_rgb[0]) is torch.nn.BatchNorm2d


def test_initialisation_survives_spectral_norm():
    torch.manual_seed(0)
    g, d = build_gan("sngan32", norm_layer("sabn", num_conditions=10), 10, 128, 128, 128)
    shared = torch.cat([m.weight for m in g.modules() if isinstance(m, SandwichBatchNorm2d)])
    assert abs(shared.mean().item() - 1) < 0.01 and abs(shared.std().item() - 0.02) < 0.005
    conv = d.blocks[1].c1
    original = conv.parametrizations.weight.original
    fan_in, fan_out = 128 * 9, 128 * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert original.abs().max() <= bound + 1e-6 and original.std() > bound / 2, "Xavier-uniform kept"
    assert d.l_y.parametrizations.weight.original.std().item() == pytest.approx(1.0, abs=0.1)  # default N(0, 1)


def test_autogan_skip_output_is_updated_in_place():
    torch.manual_seed(0)
    cell = AutoGANCell(4, 4, "nearest", 1, True, norm_layer("sabn", num_conditions=2))
    x, skip = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    y = torch.tensor([0, 1])
    h, _ = cell(x, y, (skip,))
    import torch.nn.functional as F
    base = cell.c1(F.interpolate(F.relu(cell.n1(x, y)), scale_factor=2))
    expected = base + cell.skip_in_ops[0](F.interpolate(skip, size=(8, 8)))
    torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)


def test_unknown_model_and_bad_label():
    with pytest.raises(ValueError, match="known: sngan32, autogan32, sngan128, biggan32"):
        build_gan("stylegan", norm_layer("sabn", num_conditions=10), 10, 8, 8, 8)
    g, _ = build_gan("sngan32", norm_layer("sabn", num_conditions=10), 10, 8, 8, 8)
    with pytest.raises(ValueError, match="outside \\[0, 10\\)"):
        g(torch.randn(2, 8), torch.tensor([3, 10]))


def test_biggan_init_spectral_norm_in_g_and_biased_d_output():
    torch.manual_seed(0)
    g, d = build_gan("biggan32", norm_layer("sabn", num_conditions=10), 10, 64, 64, 128)
    conv = g.blocks[0].c1
    assert conv.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.05)  # N02
    assert hasattr(g.l1, "parametrizations") and hasattr(g.to_rgb[2], "parametrizations")
    norms = [m for m in g.modules() if isinstance(m, SandwichBatchNorm2d)]
    assert len(norms) == 6 and not hasattr(norms[0], "parametrizations"), "no SN on the class tables"
    gains = torch.cat([m.condition_weight.flatten() for m in norms])
    betas = torch.cat([m.condition_bias.flatten() for m in norms])
    # BigGAN's 1 + gain(y) and bias(y) with N02 embeddings
    assert gains.mean().item() == pytest.approx(1.0, abs=0.005) and gains.std().item() == pytest.approx(0.02, rel=0.1)
    assert betas.std().item() == pytest.approx(0.02, rel=0.1)
    bn = g.to_rgb[0]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)), "BigGAN's output BN starts at 1 / 0"
    assert d.l5.bias is not None and d.l_y.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.1)


def test_refresh_spectral_norm_gives_the_top_singular_value():
    from tasks.gan.models.spectral import refresh_spectral_norm
    torch.manual_seed(0)
    g, _ = build_gan("biggan32", norm_layer("ccbn", num_conditions=10), 10, 16, 16, 16)
    conv = g.blocks[0].c1
    with torch.no_grad():
        conv.parametrizations.weight.original.normal_()   # as if an EMA moved the weights away from u, v
    refresh_spectral_norm(g, iters=200)
    g.eval()
    w = conv.parametrizations.weight.original.flatten(1)
    sigma = torch.linalg.matrix_norm(w, ord=2)
    torch.testing.assert_close(torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2), torch.tensor(1.0), atol=1e-3, rtol=0)
    assert sigma > 1


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_upsample2x_equals_interpolate_forward_and_backward(fmt):
    from tasks.gan.models.blocks import upsample2x
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6).contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(3, 5, 8, 12)
    y = upsample2x(x)
    (gx,) = torch.autograd.grad(y, x, g)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = torch.nn.functional.interpolate(x_ref, scale_factor=2, mode="nearest")
    (gx_ref,) = torch.autograd.grad(y_ref, x_ref, g)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model", ["sngan32", "biggan32"])
def test_paired_init_gives_ccbn_and_sabn_arms_the_same_weights_and_noise(model, tmp_path, cifar10):
    """task.paired_init: norm layers draw from streams of their own, so the arms of one seed share
    every non-norm weight and spectral-norm vector, and the global RNG (noise, labels) after the
    build; without it the SaBN arm's extra draws shift everything after its first norm layer."""
    from tasks.common.distributed import DistInfo
    from tasks.common.logging import MetricsLogger
    from tasks.common.task import RunContext, get_task
    from tests.conftest import compose

    def build(norm, paired):
        cfg = compose("experiment=gan/smoke", f"norm={norm}", f"task.model={model}", f"task.paired_init={paired}",
                      "task.g_ch=8", "task.d_ch=8")
        torch.manual_seed(0)
        ctx = RunContext(cfg, torch.device("cpu"), DistInfo(), MetricsLogger(tmp_path, enabled=False), tmp_path)
        modules = get_task("gan").build(ctx).modules
        return {f"{n}.{k}": v for n, m in modules.items() for k, v in m.state_dict().items()}, torch.rand(4)

    for paired in (True, False):
        (a, rng_a), (b, rng_b) = build("ccbn", paired), build("sabn", paired)
        shared = [k for k in a if k in b and ".b1." not in k and ".b2." not in k]
        same = all(torch.equal(a[k], b[k]) for k in shared) and torch.equal(rng_a, rng_b)
        assert same == paired, f"paired_init={paired}"
    assert any("discriminator" in k for k in shared) and any(k.endswith("_u") for k in shared)
