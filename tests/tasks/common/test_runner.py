"""The runner: exact resume after SIGTERM, config-drift refusal, best/last checkpoints, results."""
import json
import os
import signal

import pytest
import torch

from tasks.common.checkpoint import CheckpointError, load_checkpoint
from tasks.common.runner import train
from tasks.common.task import get_task
from tests.conftest import compose


def _cfg(run_dir, *extra):
    return compose("experiment=adv/smoke", "norm=saauxbn", f"paths.run_dir={run_dir}",
                   "trainer.deterministic=true", "logger.tensorboard=false", *extra)


class _KillAt:
    """The adv task, but the process receives SIGTERM during step ``at``."""

    def __init__(self, at):
        self.task, self.at = get_task("adv"), at

    def __getattr__(self, name):
        return getattr(self.task, name)

    def train_step(self, state, step, ctx):
        out = self.task.train_step(state, step, ctx)
        if step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["modules"]["model"]


def test_sigterm_then_resume_ends_with_the_same_weights(tmp_path, cifar10):
    straight = train(_cfg(tmp_path / "a"))
    assert straight["status"] == "completed"
    interrupted = train(_cfg(tmp_path / "b"), _KillAt(1))
    assert interrupted["status"].startswith("interrupted by SIGTERM after step 2")
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 2
    resumed = train(_cfg(tmp_path / "b"))
    assert resumed["status"] == "completed"
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["metrics"] == straight["metrics"]


def test_resume_refuses_changed_config_unless_told(tmp_path, cifar10):
    train(_cfg(tmp_path / "r", "trainer.steps=2"))
    with pytest.raises(CheckpointError, match="task.lr: 0.1 -> 0.05"):
        train(_cfg(tmp_path / "r", "task.lr=0.05"))
    out = train(_cfg(tmp_path / "r", "task.lr=0.05", "trainer.allow_config_change=true"))
    assert out["status"] == "completed"


def test_run_directory_has_provenance_metrics_best_and_result(tmp_path, cifar10):
    out = train(_cfg(tmp_path / "p", "results.write=true", f"paths.results_dir={tmp_path / 'results'}"))
    run = tmp_path / "p"
    prov = json.loads((run / "provenance.json").read_text())
    assert {"commit", "dirty", "host", "command", "hardware", "start_time"} <= prov.keys()
    assert prov["cpu_kernels"] is False   # tests start on the Python path
    assert (run / "config.yaml").read_text().startswith("task:")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]
    assert (run / "checkpoints" / "best.pt").is_file()
    result = json.loads((tmp_path / "results" / "adv" / "smoke_saauxbn" / "seed0.json").read_text())
    assert result["metrics"] == out["metrics"] and result["protocol"]["eps"] == "8/255"
    assert result["norm"] == "saauxbn" and result["wall_time_s"] > 0


def test_a_run_settles_the_kernel_choice_before_its_first_step_and_records_it(monkeypatch):
    """In auto mode the C++ kernels are used when a build exists on disk; a run decides that at setup,
    so a build that another process finishes mid-run cannot switch it over, and provenance says which."""
    from sabn import cpu_kernels
    from tasks.common.provenance import provenance
    from tasks.common.runner import prepare_device
    monkeypatch.setattr(cpu_kernels, "_state", {"compiled": object(), "active": False, "decided": False, "error": None})
    monkeypatch.setenv("SABN_CPU_KERNELS", "auto")
    monkeypatch.setattr(cpu_kernels, "_cached_build", lambda: True)
    prepare_device(compose("experiment=adv/smoke"))
    assert cpu_kernels._state["decided"] and provenance("cpu")["cpu_kernels"] is True
    monkeypatch.setattr(cpu_kernels, "_cached_build", lambda: False)
    assert cpu_kernels.resolve_cpu_kernels() is True, "settled once per process"


def test_trainer_cpu_kernels_flag_enables_the_kernel(tmp_path, cifar10, monkeypatch):
    import sabn
    calls = []
    monkeypatch.setattr(sabn, "enable_cpu_kernels", lambda: calls.append(1) or False)
    train(_cfg(tmp_path / "k", "trainer.steps=1", "trainer.channels_last=true", "trainer.cpu_kernels=true"))
    assert calls == [1]
    train(_cfg(tmp_path / "n", "trainer.steps=1"))
    assert calls == [1], "off by default"


def test_channels_last_null_takes_the_tasks_choice_for_the_device_and_saves_it(tmp_path, cifar10, monkeypatch):
    import yaml
    task = get_task("adv")
    monkeypatch.setattr(type(task), "channels_last_on", {"cpu": True})
    assert compose("experiment=adv/smoke").trainer.channels_last is None, "unset by default"
    train(_cfg(tmp_path / "c", "trainer.steps=1"))
    saved = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert saved["trainer"]["channels_last"] is True
    weight = next(p for p in load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["modules"]["model"].values()
                  if p.dim() == 4 and p.shape[-1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    # the resolved layout is part of the run: forcing the other one on resume is drift
    with pytest.raises(CheckpointError, match="trainer.channels_last: True -> False"):
        train(_cfg(tmp_path / "c", "trainer.steps=2", "trainer.channels_last=false"))
    monkeypatch.setattr(type(task), "channels_last_on", {"cuda": True})
    train(_cfg(tmp_path / "n", "trainer.steps=1"))
    assert yaml.safe_load((tmp_path / "n" / "config.yaml").read_text())["trainer"]["channels_last"] is False


def test_a_resumed_runs_result_lists_every_segment_and_their_total_wall_time(tmp_path, cifar10):
    extra = ("results.write=true", f"paths.results_dir={tmp_path / 'results'}")
    assert train(_cfg(tmp_path / "s", *extra), _KillAt(1))["status"].startswith("interrupted")
    saved = load_checkpoint(tmp_path / "s" / "checkpoints" / "last.pt")["segments"]
    assert [(s["from_step"], s["to_step"]) for s in saved] == [(0, 2)]
    out = train(_cfg(tmp_path / "s", *extra))
    result = json.loads((tmp_path / "results" / "adv" / "smoke_saauxbn" / "seed0.json").read_text())
    segments = result["segments"]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 2), (2, 4)]
    assert segments[0]["wall_time_s"] == saved[0]["wall_time_s"], "the first process's time, as its checkpoint kept it"
    assert all({"commit", "command", "threads", "start_time", "end_time"} <= s.keys() for s in segments)
    assert result["wall_time_s"] == out["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in segments))
    assert result["resumed_from_step"] == 2


def test_a_checkpoint_from_before_histories_gives_one_unrecorded_segment(tmp_path, cifar10):
    from tasks.common.checkpoint import save_checkpoint
    assert train(_cfg(tmp_path / "o", "trainer.steps=2"))["status"] == "completed"
    path = tmp_path / "o" / "checkpoints" / "last.pt"
    payload = load_checkpoint(path)
    del payload["segments"], payload["format"]
    save_checkpoint(payload, path)
    train(_cfg(tmp_path / "o", "trainer.steps=4"))
    segments = load_checkpoint(path)["segments"]
    assert segments[0] == {"from_step": 0, "to_step": 2, "recorded": False}
    assert (segments[1]["from_step"], segments[1]["to_step"]) == (2, 4) and segments[1]["wall_time_s"] > 0
