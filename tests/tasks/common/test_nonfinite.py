"""Non-finite values never become a checkpoint or a number (issue #31): a NaN loss in every task's smoke
preset stops the run with exit 3, last.pt is the last finite checkpoint, no result file is written;
skip_step undoes such steps and counts them; metrics.jsonl stays strict JSON; evaluate.py refuses a
checkpoint with non-finite weights."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tasks.common.checkpoint import load_checkpoint, save_checkpoint, tensor_digests
from tasks.common.nonfinite import EXIT_CODE, first_nonfinite, sanitize
from tasks.common.runner import _improved
from tests.conftest import ROOT, require_data

# Learning rates that overflow after the first step of each smoke preset.
DIVERGE = {
    "adv": ["task.lr=1e8"],
    "gan": ["task.lr=1e8", "task.fid.num_samples=32", "task.fid.reference_count=32", "task.fid.dims=64"],
    "nas": ["task.w_lr=1e4", "task.a_lr=1e4"],
    "nst": ["task.lr=1e8", "trainer.steps=4"],
}


def _train(task, run_dir, *extra):
    require_data(task)
    env = {**os.environ, "SABN_OFFLINE": "1"}
    args = [sys.executable, "train.py", f"experiment={task}/smoke", f"paths.run_dir={run_dir}",
            f"paths.results_dir={run_dir}/results", "results.write=true", "logger.tensorboard=false",
            "trainer.progress=false", "trainer.checkpoint_every=1", "trainer.keep_every=1", *DIVERGE[task], *extra]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _strict_rows(path):
    def refuse(token):
        raise ValueError(f"non-JSON token {token}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("task", sorted(DIVERGE))
def test_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(task, tmp_path):
    run = tmp_path / "run"
    done = _train(task, run)
    assert done.returncode == EXIT_CODE, done.stderr[-2000:]
    assert "non-finite" in done.stderr and "step" in done.stderr
    assert not (run / "results").exists(), "no result file for a diverged run"
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    kept = sorted((run / "checkpoints").glob("step*.pt"))
    assert kept, "the finite steps before the divergence were kept"
    assert last["step"] == load_checkpoint(kept[-1])["step"]
    assert tensor_digests(run / "checkpoints" / "last.pt") == tensor_digests(kept[-1])
    assert first_nonfinite((f"{m}.{k}", v) for m, sd in last["modules"].items() for k, v in sd.items()) is None
    if (run / "checkpoints" / "best.pt").exists():
        best = load_checkpoint(run / "checkpoints" / "best.pt")
        assert first_nonfinite((f"{m}.{k}", v) for m, sd in best["modules"].items() for k, v in sd.items()) is None
    _strict_rows(run / "metrics.jsonl")


def test_skip_step_undoes_nonfinite_updates_and_counts_them(tmp_path):
    run = tmp_path / "run"
    done = _train("adv", run, "trainer.on_nonfinite=skip_step", "trainer.eval_every=0")
    rows = _strict_rows(run / "metrics.jsonl")
    skips = [r["train/nonfinite_skips"] for r in rows if "train/nonfinite_skips" in r]
    assert skips and skips[-1] >= 1 and skips == sorted(skips)
    assert any(r.get("train/loss", 0) is None for r in rows), "the skipped step's loss is logged as null"
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["nonfinite_skips"] == skips[-1]
    assert first_nonfinite((f"{m}.{k}", v) for m, sd in last["modules"].items() for k, v in sd.items()) is None
    # The weights at the end equal those before the first skipped step (every later step was undone here).
    first_skip = next(r["step"] for r in rows if r.get("train/nonfinite_skips", 0) >= 1)
    before = run / "checkpoints" / f"step{first_skip - 1:07d}.pt"
    if skips[-1] == last["step"] - (first_skip - 1):
        assert tensor_digests(run / "checkpoints" / "last.pt") == tensor_digests(before)
    # Whatever the final evaluation gives, a non-finite metric is never a result.
    if done.returncode != 0:
        assert done.returncode == EXIT_CODE and not (run / "results").exists()


def test_evaluate_refuses_a_nonfinite_checkpoint(tmp_path):
    run = tmp_path / "run"
    _train("adv", run)
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    module = next(iter(payload["modules"].values()))
    key = next(k for k, v in module.items() if v.is_floating_point())
    module[key] = torch.full_like(module[key], float("nan"))
    bad = tmp_path / "nan.pt"
    save_checkpoint({k: v for k, v in payload.items() if k != "format"}, bad)
    done = subprocess.run([sys.executable, "evaluate.py", f"ckpt={bad}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == EXIT_CODE and key in done.stderr and "non-finite" in done.stderr


def test_nan_scores_never_select_best_and_metrics_become_null():
    assert not _improved(float("nan"), {}, "max")
    assert not _improved(float("inf"), {"score": 1.0}, "min")
    assert _improved(2.0, {"score": 1.0}, "max")
    assert sanitize({"a": float("nan"), "b": [1.0, float("-inf")], "c": torch.tensor(float("inf"))}) == \
        {"a": None, "b": [1.0, None], "c": None}
