"""The supernet's conditional norms: K = 5^j, and the mixed-radix code of the sampled ops."""
import torch

from sabn import build_norm
from tasks.nas.space import EDGES
from tasks.nas.supernet import SearchCell, SuperNet


def _cell():
    return SearchCell(4, lambda c, k: build_norm("split_sabn", c, k))


def test_norms_have_five_to_the_source_node_conditions():
    cell = _cell()
    for (i, j), edge in zip(EDGES, cell.edges):
        for op in edge.ops:
            if hasattr(op, "norm"):
                assert op.norm.num_conditions == 5 ** j, (i, j)


def test_condition_is_mixed_radix_code_of_sampled_incoming_ops():
    cell = _cell()
    seen = {}
    for e, edge in enumerate(cell.edges):
        for op in edge.ops:
            if hasattr(op, "norm"):
                op.norm.register_forward_hook(lambda m, args, out, e=e: seen.setdefault(e, args[1]))
    sampled = torch.tensor([3, 2, 4, 1, 0, 3])  # edges (1,0) (2,0) (2,1) (3,0) (3,1) (3,2)
    cell(torch.randn(2, 4, 6, 6), torch.full((6, 5), 0.2), sampled)
    code_node1 = 3                     # a_{1<-0}
    code_node2 = 2 + 5 * 4             # a_{2<-0} + 5 a_{2<-1}
    expected = {0: 0, 1: 0, 3: 0, 2: code_node1, 4: code_node1, 5: code_node2}
    assert seen == expected


def test_supernet_darts_and_gdas_give_alpha_gradients():
    torch.manual_seed(0)
    net = SuperNet(lambda c, k: build_norm("split_sabn", c, k), channels=4, cells=1)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for mode in ("darts", "gdas"):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x, mode, tau=5.0), y).backward()
        assert net.alphas.grad is not None and (net.alphas.grad != 0).all(), mode
    assert len(net.genotype_choices()) == 6


def test_second_order_gradient_matches_first_order_when_lr_is_zero():
    import torch.nn.functional as F
    from tasks.nas.darts_v2 import unrolled_alpha_gradient
    torch.manual_seed(0)
    net = SuperNet(lambda c, k: build_norm("bn", c, k, affine=False, track_running_stats=False), channels=4, cells=1)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.0, momentum=0.9)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    unrolled_alpha_gradient(net, opt, x, y, x, y)
    second = net.alphas.grad.clone()
    # lr = 0: w' = w, so the implicit term vanishes and the gradient is the first-order one
    # (plain BN ignores the sampled conditions, so the forward is deterministic).
    first = torch.autograd.grad(F.cross_entropy(net(x), y), [net.alphas])[0]
    torch.testing.assert_close(second, first, atol=1e-6, rtol=1e-4)
