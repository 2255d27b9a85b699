"""train.py and evaluate.py run the adv smoke preset end to end on real CIFAR-10."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_train_then_evaluate_smoke(tmp_path, cifar10):
    run_dir = tmp_path / "run"
    done = _run("train.py", "experiment=adv/smoke", "norm=auxbn", f"paths.run_dir={run_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    trained = json.loads(done.stdout[done.stdout.index("{"):])
    assert set(trained["metrics"]) >= {"test/clean/clean", "test/adv/clean", "test/adv/pgd2", "test/adv/pgd3"}
    ckpt = run_dir / "checkpoints" / "last.pt"
    evaluated = _run("evaluate.py", "task=adv", f"ckpt={ckpt}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    out = json.loads(evaluated.stdout)
    assert out["metrics"] == pytest.approx(trained["metrics"])
    wrong = _run("evaluate.py", "task=adv", "norm=saauxbn", f"ckpt={ckpt}")
    assert wrong.returncode == 2 and "trained with norm 'auxbn'" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_bad_norm_for_task_is_a_clear_error(tmp_path, cifar10):
    done = _run("train.py", "experiment=adv/smoke", "norm=sabn", f"paths.run_dir={tmp_path}")
    assert done.returncode == 2 and "task adv takes norm in" in done.stderr and "Traceback" not in done.stderr
