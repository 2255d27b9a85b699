"""PyTorch's own BatchNorm2d test inputs as the oracle (issue #30).

Every sample input of ``nn.BatchNorm2d``'s entry in ``torch.testing._internal.common_modules.module_db``
(its constructor arguments: eps, momentum including None, affine, track_running_stats, bias=False, and
its forward inputs, the empty batch included), in training and evaluation, float32 and float64, NCHW,
channels_last and non-contiguous, drives each statistic-computing norm of the family through a
condition adapter. With identity independent affines each layer must agree with ``nn.BatchNorm2d`` in
forward, input gradient, affine gradients and running statistics. Layers without a shared affine
(ccbn, auxbn) carry BN's affine in every row of their independent table, whose gradients then sum to
BN's. Also: ``torch.export`` of every layer in eval mode reproduces eager."""
import itertools

import pytest
import torch

from sabn import build_norm

_frozen_before = torch.backends.flags_frozen()
common_modules = pytest.importorskip("torch.testing._internal.common_modules",
                                     reason="torch's test utilities need the expecttest package")
# Importing torch's test utilities freezes the global cudnn flags (torch.backends.disable_global_flags) for
# the whole process; the runner sets them (trainer.deterministic), so later tests would fail: unfreeze.
if not _frozen_before and torch.backends.flags_frozen():
    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
INFO = next(m for m in common_modules.module_db if m.module_cls is torch.nn.BatchNorm2d)
K = 3
NORMS = ("bn", "ccbn", "sabn", "split_sabn", "auxbn", "saauxbn")
PER_SAMPLE = ("ccbn", "sabn")
SHARED = ("bn", "sabn", "split_sabn", "saauxbn")


def _bn_args(module_input):
    """nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats, bias=...) as a dict."""
    names = ("num_features", "eps", "momentum", "affine", "track_running_stats")
    args = dict(zip(names, module_input.constructor_input.args))
    args.update(module_input.constructor_input.kwargs)
    return args


def _cases():
    cases = []
    for dtype, training in itertools.product((torch.float32, torch.float64), (True, False)):
        for mi in INFO.module_inputs_func(INFO, device="cpu", dtype=dtype, requires_grad=True, training=training):
            cases.append((dtype, training, mi.desc or "default", _bn_args(mi), mi.forward_input.args[0].detach()))
    return cases


CASES = _cases()


def _pair(name, args, dtype):
    """(reference nn.BatchNorm2d, our layer) with the same affine and identity independent affines."""
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm2d(**args).to(dtype)
    affine = args.get("affine", True)
    with torch.no_grad():
        if affine:
            ref.weight.uniform_(0.5, 1.5)
            if ref.bias is not None:
                ref.bias.uniform_(-0.5, 0.5)
    options = {k: args[k] for k in ("eps", "momentum") if k in args}
    options["track_running_stats"] = args.get("track_running_stats", True)   # BN's default, not the registry's
    if name == "bn":
        ours = build_norm("bn", args["num_features"], **options, affine=affine).to(dtype)
        if args.get("bias") is False:
            ours.bias = None
        ours.load_state_dict(ref.state_dict())
        return ref, ours
    ours = build_norm(name, args["num_features"], num_conditions=K, gamma_init_std=0.0, **options).to(dtype)
    weight = ref.weight.detach() if affine else torch.ones(args["num_features"], dtype=dtype)
    bias = ref.bias.detach() if affine and ref.bias is not None else torch.zeros(args["num_features"], dtype=dtype)
    with torch.no_grad():
        if name in SHARED:
            ours.weight.copy_(weight)
            ours.bias.copy_(bias)
        else:
            ours.condition_weight.copy_(weight.expand(K, -1))
            ours.condition_bias.copy_(bias.expand(K, -1))
    return ref, ours


def _layouts(x):
    yield "nchw", x
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    yield "non_contiguous", x.transpose(2, 3).contiguous().transpose(2, 3)


def _affine_grads(name, ref, ours):
    """(reference, ours) pairs of affine gradients that must agree."""
    pairs = []
    if ref.weight is None:
        return pairs
    if name in SHARED:
        pairs.append((ref.weight.grad, ours.weight.grad))
        if ref.bias is not None:
            pairs.append((ref.bias.grad, ours.bias.grad))
    else:   # BN's affine lives in every row of the independent table: their gradients sum to BN's
        pairs.append((ref.weight.grad, ours.condition_weight.grad.sum(0)))
        if ref.bias is not None:
            pairs.append((ref.bias.grad, ours.condition_bias.grad.sum(0)))
    return pairs


@pytest.mark.parametrize("name", NORMS)
@pytest.mark.parametrize("dtype,training,desc,args,x", CASES,
                         ids=[f"{str(c[0])[6:]}-{'train' if c[1] else 'eval'}-{c[2]}" for c in CASES])
def test_agrees_with_batchnorm2d_on_torch_sample_inputs(name, dtype, training, desc, args, x):
    if name not in ("bn",) and args.get("bias") is False and name not in SHARED:
        pytest.skip("a layer without a shared affine has no bias-free form (its table holds a bias per row)")
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-9}
    n = x.shape[0]
    cond = torch.arange(n) % K if name in PER_SAMPLE else 1
    for layout, xin in _layouts(x):
        ref, ours = _pair(name, args, dtype)
        ref.train(training), ours.train(training)
        if name in SHARED and name != "bn" and args.get("bias") is False:
            ours.bias.requires_grad_(False)
        xr, xo = xin.clone().requires_grad_(True), xin.clone().requires_grad_(True)
        yr, yo = ref(xr), ours(xo, cond)
        torch.testing.assert_close(yo, yr, **tol, msg=f"{name} {layout}: forward")
        if n == 0:
            continue
        g = torch.randn_like(yr)
        yr.backward(g)
        yo.backward(g)
        torch.testing.assert_close(xo.grad, xr.grad, **tol, msg=f"{name} {layout}: input gradient")
        for a, b in _affine_grads(name, ref, ours):
            torch.testing.assert_close(b, a, **tol, msg=f"{name} {layout}: affine gradient")
        if ref.running_mean is not None:
            rm, rv = ours.running_mean, ours.running_var
            if getattr(ours, "split_statistics", False):
                rm, rv = rm[cond], rv[cond]
            torch.testing.assert_close(rm, ref.running_mean, **tol)
            torch.testing.assert_close(rv, ref.running_var, **tol)


@pytest.mark.parametrize("name", NORMS + ("adain", "saadain"))
def test_export_in_eval_mode_reproduces_eager(name):
    torch.manual_seed(0)
    layer = build_norm(name, 4, num_conditions=K).eval()
    x = torch.randn(3, 4, 5, 5)
    if name in ("adain", "saadain"):
        args = (x, torch.randn(3, 4, 5, 5))
    elif name in PER_SAMPLE:
        args = (x, torch.tensor([0, 2, 1]))
    elif name == "bn":
        args = (x,)
    else:   # one condition for the batch: a Python int, specialised into the exported graph
        args = (x, 1)
    exported = torch.export.export(layer, args)
    torch.testing.assert_close(exported.module()(*args), layer(*args), atol=1e-6, rtol=1e-6)
