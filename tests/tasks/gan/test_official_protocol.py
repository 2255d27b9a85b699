"""Where the paper presets follow the official code: SNGAN-128's discriminator widths and the
hook-based spectral-norm update (torch.nn.utils.spectral_norm, as the official SNGAN / AutoGAN)."""
import pytest
import torch
from torch import nn

from sabn import norm_layer
from tasks.gan.models.registry import build_gan
from tasks.gan.models.spectral import spectral_norm


def test_sngan128_parameter_counts_match_the_official_models():
    g, d = build_gan("sngan128", norm_layer("sabn", num_conditions=143), 143, 64, 64, 128)
    assert sum(p.numel() for p in g.parameters()) == 10_612_099
    assert sum(p.numel() for p in d.parameters()) == 12_311_296
    block = d.blocks[1]          # 64 -> 128: the hidden width stays at the input's
    assert block.c1.weight.shape[:2] == (64, 64) and block.c2.weight.shape[:2] == (128, 64)


def _pair(update):
    torch.manual_seed(0)
    ours = nn.Conv2d(128, 128, 3)
    torch.manual_seed(1)
    spectral_norm(ours, update=update)
    torch.manual_seed(0)
    ref = nn.Conv2d(128, 128, 3)
    torch.manual_seed(1)
    ref = nn.utils.spectral_norm(ref)      # torch's hook-based SN, as the official code
    return ours, ref


def test_hook_update_follows_torch_hook_spectral_norm_through_training():
    ours, ref = _pair("hook")
    opt_a, opt_b = torch.optim.SGD(ours.parameters(), 0.1), torch.optim.SGD(ref.parameters(), 0.1)
    x = torch.randn(4, 128, 6, 6, generator=torch.Generator().manual_seed(2))
    for step in range(4):
        out_a, out_b = ours(x), ref(x)
        torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6, msg=f"step {step}")
        for opt in (opt_a, opt_b):
            opt.zero_grad()
        out_a.square().mean().backward()
        out_b.square().mean().backward()
        torch.testing.assert_close(ours.parametrizations.weight.original.grad, ref.weight_orig.grad,
                                   rtol=1e-4, atol=1e-7, msg=f"grad at step {step}")
        opt_a.step(), opt_b.step()
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_first_sigma_estimate_official_vs_torch_update():
    """At the first training forward the hook update (no warm-up) underestimates sigma; torch's
    parametrization, warmed up by 15 iterations, is close: the two start from different states."""
    hook, _ = _pair("hook")
    torch_sn, _ = _pair("torch")
    x = torch.randn(2, 128, 6, 6)
    sigma = torch.linalg.matrix_norm(hook.parametrizations.weight.original.detach().flatten(1), ord=2)

    def estimate(module):
        module(x)
        p = module.parametrizations.weight[0]
        w = module.parametrizations.weight.original.detach().flatten(1)
        return float(torch.dot(p._u, w @ p._v) / sigma)
    assert estimate(hook) < 0.9 < estimate(torch_sn) <= 1.0 + 1e-6


def test_reference_statistics_file_is_read_and_checked(tmp_path):
    import numpy as np
    from tasks.gan.metrics.fid import frechet_distance, load_reference_statistics
    rng = np.random.default_rng(0)
    dim = 128   # the reader takes the feature size it is given (2048 by default, checked below); a small
    mu, a = rng.normal(size=dim), rng.normal(size=(dim, 64))   # one keeps the sqrtm fast
    sigma = a @ a.T / 64 + 0.1 * np.eye(dim)
    np.savez(tmp_path / "fid_stats.npz", mu=mu, sigma=sigma)
    ref = load_reference_statistics(str(tmp_path / "fid_stats.npz"), dim=dim)
    shifted = {"mu": mu + 1.0, "sigma": sigma}
    assert frechet_distance(shifted, ref) == pytest.approx(float(dim), rel=1e-6)   # same sigma: |dmu|^2
    with pytest.raises(ValueError, match=r"must hold mu \(2048,\) .* found \{'mu': \(128,\)"):
        load_reference_statistics(str(tmp_path / "fid_stats.npz"))   # Inception pool3 is 2048-d
    np.savez(tmp_path / "bad.npz", mu=mu[:10], sigma=sigma)
    with pytest.raises(ValueError, match=r"must hold mu \(2048,\)"):
        load_reference_statistics(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="not found"):
        load_reference_statistics(str(tmp_path / "none.npz"))


def test_newton_schulz_fid_agrees_with_scipy():
    import numpy as np
    from tasks.gan.metrics.fid import frechet_distance
    rng = np.random.default_rng(1)
    feats_a, feats_b = rng.normal(size=(400, 32)), rng.normal(0.3, 1.2, size=(400, 32))
    a = {"mu": feats_a.mean(0), "sigma": np.cov(feats_a, rowvar=False)}
    b = {"mu": feats_b.mean(0), "sigma": np.cov(feats_b, rowvar=False)}
    assert frechet_distance(a, b, "newton_schulz") == pytest.approx(frechet_distance(a, b), rel=1e-3)


def test_balanced_generator_labels():
    from types import SimpleNamespace

    from tasks.gan.task import TASK
    from tests.conftest import compose
    ctx = SimpleNamespace(cfg=compose("experiment=gan/smoke", "task.labels=balanced"), device=torch.device("cpu"))
    for n in (64, 128, 7):
        counts = torch.bincount(TASK._noise(ctx, n)[1], minlength=10)
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_fid_disabled_trains_and_saves_sheets_without_building_inception(tmp_path, monkeypatch, cifar10):
    from tests.conftest import compose
    from tasks.common.runner import train
    from tasks.gan import task as gan_task

    def refuse(*_a, **_k):
        raise AssertionError("the Inception network must not be built when task.fid.enabled=false")
    monkeypatch.setattr(gan_task, "resolve_weights", refuse)
    cfg = compose("experiment=gan/smoke", "task.fid.enabled=false", "trainer.steps=2", f"paths.run_dir={tmp_path}",
                  "logger.tensorboard=false", "results.write=false", "data.train_subset=64")
    out = train(cfg)
    assert out["status"] == "completed" and "fid" not in out["metrics"]
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.png")) == ["step0000002.png"]


def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch, cifar10):
    """No .item() and no label range check (torch.aminmax) inside a GAN step: on a GPU each is a sync."""
    import sabn.conditions
    from tests.conftest import compose
    from tasks.common.distributed import DistInfo
    from tasks.common.logging import MetricsLogger
    from tasks.common.task import RunContext
    from tasks.gan.task import TASK
    cfg = compose("experiment=gan/smoke", "data.train_subset=64")
    ctx = RunContext(cfg, torch.device("cpu"), DistInfo(), MetricsLogger(tmp_path, enabled=False), tmp_path)
    state = TASK.build(ctx)
    calls = []
    real_item, real_aminmax = torch.Tensor.item, torch.aminmax
    import traceback

    def item(self):   # Adam's step counters live on the host (no sync): only our code's calls count
        if "torch/optim" not in traceback.extract_stack()[-2].filename:
            calls.append("item")
        return real_item(self)
    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: calls.append("aminmax") or real_aminmax(*a, **k))
    for step in range(2):
        out = TASK.train_step(state, step, ctx)
    assert calls == [] and isinstance(out["d_loss"], torch.Tensor)
    assert sabn.conditions._CHECK_VALUES, "the check is back on after the step"
    with pytest.raises(ValueError, match="outside"):   # and still guards a user's call
        state.modules["generator"](torch.randn(2, cfg.task.z_dim), torch.tensor([0, 99]))
