"""The C++ CPU kernels (NCHW and channels_last): the same numbers as the reference composition; used
when enabled or already built (SABN_CPU_KERNELS=auto), never with SABN_CPU_KERNELS=0; a failed build
falls back to the Python path with a warning that says why. (tests/conftest.py starts every test on
the Python path.)"""
import warnings

import pytest
import torch

import sabn
from sabn import build_norm, cpu_kernels, sample_affine_batch_norm, sample_affine_batch_norm_reference


@pytest.fixture
def kernel():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not sabn.enable_cpu_kernels():
            pytest.skip(f"the C++ kernel could not be built here: {sabn.cpu_kernels_status()['error']}")
    yield
    sabn.disable_cpu_kernels()


def _close(a, b, name):
    scale = max(1.0, b.abs().max().item())   # sums over H*W*N terms: compare relative to their size
    torch.testing.assert_close(a, b, atol=1e-5 * scale, rtol=1e-5, msg=name)


@pytest.mark.parametrize("name", ["sabn", "ccbn"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_kernel_matches_reference(kernel, name, training, fmt):
    torch.manual_seed(0)
    layer = build_norm(name, 12, 5)
    ref = build_norm(name, 12, 5, fused=False)
    with torch.no_grad():
        layer.condition_bias.normal_()
        for m in (layer, ref):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    ref.load_state_dict(layer.state_dict())
    layer.train(training), ref.train(training)
    x = (torch.randn(7, 12, 6, 5) * 3 + 1).contiguous(memory_format=fmt)
    y = torch.tensor([0, 4, 4, 1, 2, 0, 3])
    grad = torch.randn(7, 12, 6, 5).contiguous(memory_format=torch.channels_last)   # either layout in

    calls = []
    real = cpu_kernels._state["compiled"]

    class Spy:
        def __getattr__(self, attr):
            calls.append(attr)
            return getattr(real, attr)
    cpu_kernels._state["compiled"] = Spy()
    try:
        xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
        outs = [m(xi, y) for m, xi in zip((layer, ref), xs)]
        for o in outs:
            o.backward(grad)
    finally:
        cpu_kernels._state["compiled"] = real
    assert calls == ["conditional_forward", "conditional_backward"]
    assert outs[0].is_contiguous(memory_format=fmt)
    _close(outs[0], outs[1], "output")
    _close(xs[0].grad, xs[1].grad, "grad x")
    for (pname, p), q in zip(layer.named_parameters(), ref.parameters()):
        _close(p.grad, q.grad, pname)
    _close(layer.running_mean, ref.running_mean, "running_mean")
    _close(layer.running_var, ref.running_var, "running_var")


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_sample_affine_kernel_matches_reference(kernel, fmt):
    torch.manual_seed(1)
    x = torch.randn(6, 8, 4, 4).contiguous(memory_format=fmt)
    scale, shift = torch.randn(6, 8), torch.randn(6, 8)
    grads = []
    for fn in (sample_affine_batch_norm, sample_affine_batch_norm_reference):
        leaves = [t.clone().requires_grad_() for t in (x, scale, shift)]
        fn(leaves[0], leaves[1], leaves[2], None, None, True).backward(torch.randn(6, 8, 4, 4, generator=torch.Generator().manual_seed(2)))
        grads.append([t.grad for t in leaves])
    for a, b, label in zip(*grads, ("x", "scale", "shift")):
        _close(a, b, label)


def test_kernel_is_opt_in_and_skips_what_it_does_not_cover(kernel):
    sabn.disable_cpu_kernels()
    assert not sabn.cpu_kernels_status()["active"]
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert cpu_kernels.cpu_kernel(x) is None
    sabn.enable_cpu_kernels()
    assert cpu_kernels.cpu_kernel(x) is not None and cpu_kernels.cpu_kernel(x.contiguous()) is not None
    assert cpu_kernels.cpu_kernel(x.double()) is None, "float64 stays on the Python path"
    assert cpu_kernels.cpu_kernel(torch.randn(4, 4, 3, 2).transpose(2, 3)) is None, "other strides too"


def test_failed_build_warns_and_keeps_the_python_path(monkeypatch):
    import torch.utils.cpp_extension as ext
    monkeypatch.setattr(cpu_kernels, "_state", {"compiled": None, "active": False, "decided": False, "error": None})

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension\ng++: command not found")
    monkeypatch.setattr(ext, "load_inline", broken)
    with pytest.warns(UserWarning, match="could not be built.*g\\+\\+: command not found"):
        assert sabn.enable_cpu_kernels() is False
    assert sabn.cpu_kernels_status() == {"active": False, "built": False, "error": "RuntimeError: g++: command not found"}
    layer = build_norm("sabn", 3, 2)
    x = torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(layer(x, torch.tensor([0, 1, 1, 0]))).all()


@pytest.mark.parametrize("env, cached, expect", [("auto", True, True), ("auto", False, False),
                                                 ("0", True, False), ("1", False, True)])
def test_environment_decides_on_first_use(kernel, monkeypatch, env, cached, expect):
    built = cpu_kernels._state["compiled"]
    monkeypatch.setattr(cpu_kernels, "_state", {"compiled": built, "active": False, "decided": False, "error": None})
    monkeypatch.setenv("SABN_CPU_KERNELS", env)
    monkeypatch.setattr(cpu_kernels, "_cached_build", lambda: cached)
    assert (cpu_kernels.cpu_kernel(torch.randn(2, 3, 4, 4)) is not None) is expect
    assert sabn.cpu_kernels_status()["active"] is expect


def test_cached_build_is_found_after_a_build(kernel):
    assert cpu_kernels._cached_build(), "enable_cpu_kernels() leaves a build that auto mode picks up"
