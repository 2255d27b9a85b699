"""Config values the schema used to let through (issue #31): non-finite floats, wrong list lengths,
empty stage lists, a zero clip norm, subsets larger than the data, a class count the data set does
not have. Each is one ConfigError naming the key, before anything is built or loaded."""
import pytest

from tasks.common.config import ConfigError, check_subset
from tests.conftest import compose


@pytest.mark.parametrize("overrides,match", [
    (("experiment=adv/smoke", "task.lr=nan"), r"task.lr=nan must be finite"),
    (("experiment=adv/smoke", "task.lr=inf"), r"task.lr=inf must be finite"),
    (("experiment=nst/smoke", "task.style_weight=inf"), r"task.style_weight=inf must be finite"),
    (("experiment=nst/smoke", "task.style_weight=-inf"), r"must be finite"),
    (("experiment=gan/smoke", "task.betas=[0.5]"), r"task.betas=\[0.5\] must have 2 items, not 1"),
    (("experiment=nas/smoke", "task.a_betas=[0.5,0.9,0.99]"), r"task.a_betas=.* must have 2 items, not 3"),
    (("experiment=gan/smoke", "task.betas=[0.0,nan]"), r"must be finite"),
    (("experiment=adv/smoke", "task.blocks=[]"), r"task.blocks=\[\] must have at least 1 item"),
    (("experiment=nas/smoke", "task.grad_clip=0"), r"task.grad_clip=0.0 must be > 0"),
])
def test_bad_values_are_refused_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        compose(*overrides)


def test_subset_larger_than_the_data_is_refused():
    check_subset("data.train_subset", 100, 100, "images")
    check_subset("data.train_subset", 0, 100, "images")
    with pytest.raises(ConfigError, match=r"data.train_subset=101 exceeds the 100 training images"):
        check_subset("data.train_subset", 101, 100, "training images")


def test_train_subset_above_the_split_size_fails_in_the_task(cifar10):
    from tasks.common.runner import train
    cfg = compose("experiment=adv/smoke", "data.train_subset=10000000", "paths.run_dir=/tmp/sabn_subset_probe",
                  "logger.tensorboard=false")
    with pytest.raises(ConfigError, match=r"data.train_subset=10000000 exceeds the \d+ images of the training split"):
        train(cfg)


def test_gan_class_count_mismatch_is_refused_before_loading(monkeypatch, tmp_path):
    import tasks.gan.task as gan_task
    from tasks.common.runner import train

    def no_load(*args, **kwargs):
        raise AssertionError("the data set must not be loaded before the class count is checked")
    monkeypatch.setattr(gan_task, "load_dataset", no_load)
    cfg = compose("experiment=gan/smoke", "task.num_classes=7", f"paths.run_dir={tmp_path}/run", "logger.tensorboard=false")
    with pytest.raises(ConfigError, match=r"task.num_classes=7 but data set 'cifar10' has 10 classes"):
        train(cfg)


@pytest.mark.parametrize("run_dir,match", [("/proc/sabn_not_here/run", "cannot create run directory /proc/sabn_not_here/run"),
                                           ("/tmp/" + "a" * 300, "has a folder name of 300 bytes")])
def test_unusable_run_dir_is_one_message_before_hydra_creates_it(run_dir, match):
    import subprocess
    import sys
    from tests.conftest import ROOT
    done = subprocess.run([sys.executable, "train.py", "experiment=adv/smoke", f"paths.run_dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-1500:]
    assert match in done.stderr and "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
