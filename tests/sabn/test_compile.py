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

