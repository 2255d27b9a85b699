"""Every bad condition raises a ValueError naming the layer, K and the bad value."""
import pytest
import torch

from sabn import build_norm


@pytest.fixture
def x():
    return torch.randn(4, 3, 5, 5)


@pytest.mark.parametrize("bad, words", [
    (torch.tensor([0, 1, 5, 1]), ["SandwichBatchNorm2d", "5", "K=3"]),
    (torch.tensor([0, -1, 0, 1]), ["-1", "K=3"]),
    (7, ["7", "K=3"]),
    (torch.tensor([0.0, 1.0, 0.0, 1.0]), ["integer", "float"]),
    (torch.tensor([0, 1, 2]), ["shape", "batch size 4"]),
    (torch.zeros(4, 1, dtype=torch.long), ["shape"]),
    (None, ["needs a condition"]),
    ("cat", ["str"]),
    (True, ["bool"]),
])
def test_bad_conditions_raise_value_error(x, bad, words):
    layer = build_norm("sabn", 3, 3)
    with pytest.raises(ValueError) as info:
        layer(x, bad)
    for word in words:
        assert word in str(info.value)


def test_split_layer_rejects_mixed_conditions(x):
    layer = build_norm("saauxbn", 3, 2)
    with pytest.raises(ValueError, match="one\\s+condition"):
        layer(x, torch.tensor([0, 1, 0, 1]))


def test_wrong_channel_count(x):
    with pytest.raises(ValueError, match="expected input of shape \\(N, 8"):
        build_norm("ccbn", 8, 2)(x, 0)


def test_unknown_norm_and_option_list_the_choices():
    with pytest.raises(ValueError, match="known norms: bn, ccbn, sabn"):
        build_norm("sandwich", 3)
    with pytest.raises(ValueError, match="gamma_init_std"):
        build_norm("sabn", 3, 2, gama_init_std=0.1)
