"""scripts/sweep_status.py: a sweep's state read from its run directories."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from tasks.common.rundir import RunLock
from tests.conftest import ROOT


def _module():
    spec = importlib.util.spec_from_file_location("sweep_status", ROOT / "scripts" / "sweep_status.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(path: Path, steps: int, records) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"task:\n  name: gan\ntrainer:\n  steps: {steps}\n  seed: 0\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_an_extended_run_is_not_finished_until_its_final_evaluation_at_the_new_length(tmp_path):
    ss = _module()
    records = [{"step": 10, "train/loss": 1.0}, {"step": 4000, "final/fid": 85.9}, {"step": 4500, "train/loss": 0.5}]
    extended = ss.status(_run(tmp_path / "a", 8000, records))
    assert (extended["step"], extended["steps"], extended["finished"]) == (4500, 8000, False)
    assert extended["last_eval"] == {"step": 4000, "final/fid": 85.9} and extended["pid"] is None
    done = ss.status(_run(tmp_path / "b", 8000, records + [{"step": 8000, "final/fid": 56.8}]))
    assert done["finished"] and done["last_eval"]["final/fid"] == 56.8


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs the kernel's lock table (/proc/locks)")
def test_a_run_shows_as_running_exactly_while_its_lock_is_held(tmp_path):
    ss = _module()
    run = _run(tmp_path / "r", 100, [{"step": 10, "train/loss": 1.0}])
    (run / ".lock").write_text("12345\n")   # a dead holder's pid left in the file: not running
    with RunLock(run.parent / "other"):
        assert ss.lock_holder(run) is None, "another run's lock is not this one's"
        with RunLock(run):
            assert ss.lock_holder(run) == os.getpid()
    assert ss.lock_holder(run) is None
    assert ss.main([str(tmp_path)]) == 0 and ss.main([str(tmp_path / "none")]) == 1
