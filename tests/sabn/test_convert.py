"""Converting an existing model's BatchNorm2d layers, and routing the condition without code edits."""
import pytest
import torch
import torchvision

from sabn import (SandwichBatchNorm2d, conditional_layers, convert_norms, norm_layer, route_condition,
                  set_condition)


@pytest.fixture(scope="module")
def trained_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.train()
    with torch.no_grad():  # give the BNs non-trivial statistics and affines
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["sabn", "ccbn", "saauxbn", "auxbn"])
def test_converted_resnet18_computes_the_same_function(trained_resnet, name):
    import copy
    converted = convert_norms(copy.deepcopy(trained_resnet), name, num_conditions=2 if "aux" in name else 10)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in trained_resnet.modules())
    assert len(list(conditional_layers(converted))) == n_bn == 20
    x = torch.randn(4, 3, 32, 32)
    cond = 1 if "aux" in name else torch.tensor([3, 1, 4, 1])
    with torch.no_grad(), route_condition(converted, cond):
        torch.testing.assert_close(converted(x), trained_resnet(x), atol=1e-5, rtol=1e-5)
    assert all(layer.routed_condition is None for layer in conditional_layers(converted))


def test_conditions_change_the_output_after_training_the_independent_affines(trained_resnet):
    import copy
    model = convert_norms(copy.deepcopy(trained_resnet), "sabn", 10, identity_init=False)
    x = torch.randn(2, 3, 32, 32)
    set_condition(model, torch.tensor([0, 0]))
    with torch.no_grad():
        a = model(x)
        set_condition(model, torch.tensor([7, 7]))
        b = model(x)
    assert not torch.allclose(a, b)


def test_norm_layer_constructor_validates_early():
    make = norm_layer("sabn", num_conditions=10)
    assert isinstance(make(32), SandwichBatchNorm2d) and make(32).num_conditions == 10
    with pytest.raises(ValueError, match="known norms"):
        norm_layer("nope")


def test_convert_rejects_non_conditional_norm(trained_resnet):
    with pytest.raises(ValueError, match="not a conditional batch norm"):
        convert_norms(trained_resnet, "adain", 2)
