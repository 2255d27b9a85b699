"""AdaIN / SaAdaIN against the pytorch-AdaIN formula (unbiased variance + 1e-5)."""
import pytest
import torch

from sabn import build_norm


def _stats(t):
    flat = t.flatten(2)
    return flat.mean(-1)[:, :, None, None], (flat.var(-1, unbiased=True) + 1e-5).sqrt()[:, :, None, None]


def test_adain_matches_reference_formula():
    torch.manual_seed(0)
    c, s = torch.randn(2, 6, 5, 4) * 3 + 1, torch.randn(2, 6, 7, 7) * 0.5 - 2
    (mc, sc), (ms, ss) = _stats(c), _stats(s)
    torch.testing.assert_close(build_norm("adain", 6)(c, s), ss * (c - mc) / sc + ms, atol=1e-5, rtol=1e-5)


def test_saadain_starts_as_adain_and_applies_shared_affine():
    torch.manual_seed(0)
    c, s = torch.randn(2, 6, 5, 4), torch.randn(2, 6, 7, 7)
    sa = build_norm("saadain", 6)
    assert torch.all(sa.weight == 1) and torch.all(sa.bias == 0)
    torch.testing.assert_close(sa(c, s), build_norm("adain", 6)(c, s))
    with torch.no_grad():
        sa.weight.uniform_(0.5, 1.5)
        sa.bias.normal_()
    (mc, sc), (ms, ss) = _stats(c), _stats(s)
    expected = ss * (sa.weight[:, None, None] * (c - mc) / sc + sa.bias[:, None, None]) + ms
    torch.testing.assert_close(sa(c, s), expected, atol=1e-5, rtol=1e-5)


def test_style_statistics_pair_and_broadcast_single_style():
    c, s = torch.randn(3, 4, 5, 5), torch.randn(1, 4, 6, 6)
    layer = build_norm("adain", 4)
    mean, std = _stats(s)
    torch.testing.assert_close(layer(c, s), layer(c, (mean[:, :, 0, 0], std[:, :, 0, 0])))
    assert layer(c, s).shape == c.shape


def test_adain_bad_style_raises():
    layer = build_norm("saadain", 4)
    with pytest.raises(ValueError, match="style features must have shape"):
        layer(torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="at least 2 spatial"):
        layer(torch.randn(2, 4, 1, 1), torch.randn(2, 4, 5, 5))
