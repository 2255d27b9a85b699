"""Bit-exact resume holds on one CPU model, thread count, device and kernel path (issue #31): a resume
under another thread count warns, naming the change, and provenance.json records every segment's
threads, CPU model, device and kernel path."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT, require_data


def _train(run_dir, threads, fault=None):
    require_data("adv")
    env = {**os.environ, "SABN_OFFLINE": "1"}
    env.pop("SABN_FAULT", None)
    if fault:
        env["SABN_FAULT"] = fault
    return subprocess.run([sys.executable, "train.py", "experiment=adv/smoke", f"paths.run_dir={run_dir}",
                           "logger.tensorboard=false", "trainer.progress=false", "trainer.checkpoint_every=1",
                           f"trainer.num_threads={threads}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_resume_with_other_threads_warns_and_records_each_segment(tmp_path):
    run = tmp_path / "run"
    first = _train(run, 1, fault="term@2")
    assert first.returncode == 143, first.stderr[-1500:]
    same = json.loads((run / "provenance.json").read_text())
    assert [s["threads"] for s in same["segments"]] == [1]
    second = _train(run, 2)
    assert second.returncode == 0, second.stderr[-1500:]
    assert "another environment (threads 1 -> 2)" in second.stderr
    assert "bit for bit" in second.stderr
    prov = json.loads((run / "provenance.json").read_text())
    assert [(s["from_step"], s["threads"]) for s in prov["segments"]] == [(0, 1), (2, 2)]
    assert all(s["cpu"] and s["device"] == "cpu" and "cpu_kernels" in s for s in prov["segments"])


def test_resume_in_the_same_environment_does_not_warn(tmp_path):
    run = tmp_path / "run"
    assert _train(run, 1, fault="term@2").returncode == 143
    second = _train(run, 1)
    assert second.returncode == 0 and "another environment" not in second.stderr
