"""The DDP path on CPU: torchrun with 2 gloo processes trains the adv smoke preset."""
import json
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT


def test_torchrun_two_processes_gloo(tmp_path, cifar10):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "train.py", "experiment=adv/smoke", "norm=saauxbn",
         "trainer.device=cpu", f"paths.run_dir={tmp_path}", "logger.tensorboard=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4], "rank 0 logs once per step"
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert done.stdout.count('"status": "completed"') == 1, "one result per job: only rank 0 prints"
    result = json.loads(done.stdout[done.stdout.index("{"):])
    # The job's evaluation counts the whole test subset across both processes (each example with the random
    # start it has in one process): its accuracies equal evaluate.py's on last.pt in a single process.
    single = subprocess.run([sys.executable, "evaluate.py", f"ckpt={tmp_path}/checkpoints/last.pt"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads(single.stdout[single.stdout.index("{"):])["metrics"]
    accuracies = {k: v for k, v in result["metrics"].items() if k.startswith("test/") and not k.endswith("_loss")}
    assert any("clean" in k for k in accuracies) and any("pgd" in k for k in accuracies)
    for key, value in accuracies.items():
        assert alone[key] == value, (key, value, alone[key])


def test_torchrun_sync_norms_changes_the_statistics_to_the_whole_batch(tmp_path, cifar10):
    """trainer.sync_norms=true under 2 gloo processes: every norm layer is synchronized, so the running
    statistics after training differ from the per-process ones of the same command without it."""
    import torch
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stats = {}
    for sync in ("false", "true"):
        run = tmp_path / sync
        done = subprocess.run(
            [torchrun, "--standalone", "--nproc_per_node=2", "train.py", "experiment=adv/smoke", "norm=saauxbn",
             "trainer.device=cpu", f"paths.run_dir={run}", "logger.tensorboard=false", "trainer.steps=2",
             f"trainer.sync_norms={sync}"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        model = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["modules"]["model"]
        stats[sync] = {k: v for k, v in model.items() if k.endswith("running_mean")}
    assert stats["true"].keys() == stats["false"].keys() and stats["true"]
    assert any(not torch.equal(stats["true"][k], stats["false"][k]) for k in stats["true"])
