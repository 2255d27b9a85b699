"""Training and evaluate.py run the adv smoke preset end to end on real CIFAR-10 (in process)."""
import pytest
import torch


def test_train_then_evaluate_smoke(tmp_path, cifar10, capsys):
    """Training, then evaluate.py's main on the checkpoint: the same metrics; the wrong norm is one
    message (exit code 2, no traceback). In process; train.py's command line is exercised by
    tests/tasks/common/test_fault_injection.py."""
    from tasks.common.runner import train
    from tests.conftest import compose, evaluate_cli
    run_dir = tmp_path / "run"
    trained = train(compose("experiment=adv/smoke", "norm=auxbn", f"paths.run_dir={run_dir}",
                            "logger.tensorboard=false", "results.write=false"))
    assert set(trained["metrics"]) >= {"test/clean/clean", "test/adv/clean", "test/adv/pgd2", "test/adv/pgd3"}
    ckpt = run_dir / "checkpoints" / "last.pt"
    evaluate = evaluate_cli()
    out = evaluate.main(["task=adv", f"ckpt={ckpt}"])
    assert out["metrics"] == pytest.approx(trained["metrics"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        evaluate.main(["task=adv", "norm=saauxbn", f"ckpt={ckpt}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "trained with norm 'auxbn'" in err and "Traceback" not in err


def test_bad_norm_for_task_is_a_clear_error(tmp_path, cifar10):
    from tasks.common.cli import USER_ERRORS
    from tasks.common.runner import train
    from tests.conftest import compose
    with pytest.raises(USER_ERRORS, match="task adv takes norm in"):
        train(compose("experiment=adv/smoke", "norm=sabn", f"paths.run_dir={tmp_path}", "logger.tensorboard=false"))


def test_official_split_is_numpys_seeded_shuffle():
    import numpy as np
    from tasks.adv.task import AdvTask
    from tests.conftest import compose
    t = compose("experiment=adv/paper").task
    val, train = AdvTask._split(50000, t)
    np.random.seed(10)                  # the official Adv/train.py, literally
    indices = list(range(50000))
    np.random.shuffle(indices)
    assert val.tolist() == indices[:5000] and train.tolist() == indices[5000:]


def test_paper_protocol_reporting_on_a_small_run(tmp_path, cifar10):
    """Per-epoch val+test evaluation of both branches, partial last batches, and the final table from
    the weights after report_epoch (not the last ones)."""
    import json

    from tasks.common.checkpoint import load_checkpoint
    from tasks.common.runner import train
    from tests.conftest import compose
    cfg = compose("experiment=adv/smoke", "norm=saauxbn", f"paths.run_dir={tmp_path}", "logger.tensorboard=false",
                  "task.epochs=2", "trainer.steps=null", "data.train_subset=80", "task.batch_size=32", "task.drop_last=false",
                  "task.eval_each_epoch=true", "task.eval_splits=[val,test]", "task.robust_branches=[clean,adv]",
                  "task.report_epoch=1", "task.split=numpy")
    out = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/test/clean/pgd10" in r]
    assert [r["step"] for r in evals] == [3], "one evaluation after epoch 1 of 3 batches (80 = 2 x 32 + 16)"
    assert out["metrics"]["report_epoch"] == 1 and "test/clean/pgd2" in out["metrics"]
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert payload["step"] == 6
    report, final = payload["extra"]["report_model"], payload["modules"]["model"]
    assert not torch.equal(report["linear.weight"], final["linear.weight"])
