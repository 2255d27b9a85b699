"""Atomic writes, weights-only loading, clear errors for truncated or foreign files, drift detection."""
import os

import pytest
import torch

from tasks.common.checkpoint import CheckpointError, config_drift, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    path = save_checkpoint({"step": 3, "w": torch.arange(4)}, tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.arange(4))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "last.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*disk full.*untouched"):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "no temp file left behind"


def test_truncated_file_gives_clear_error(tmp_path):
    path = save_checkpoint({"step": 1, "w": torch.randn(1000)}, tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


def test_foreign_file_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a sabn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_objects_are_not_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save({"format": "sabn-checkpoint-v1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


def test_config_drift_lists_changed_keys_and_ignores_run_control():
    a = {"task": {"lr": 0.1}, "trainer": {"steps": 10, "seed": 0}, "paths": {"run_dir": "x"},
         "results": {"skip_existing": True}}
    b = {"task": {"lr": 0.2}, "trainer": {"steps": 20, "seed": 0}, "paths": {"run_dir": "y"},
         "results": {"skip_existing": False}}   # extending a finished run means turning skipping off
    assert config_drift(a, b) == ["task.lr: 0.1 -> 0.2"]


def test_a_key_added_after_the_run_started_is_no_drift_at_its_default():
    from tasks.common.checkpoint import config_drift
    saved = {"task": {"lr": 0.1}}
    defaults = {"task": {"lr": 0.2, "paired_init": False}}
    assert config_drift(saved, {"task": {"lr": 0.1, "paired_init": False}}, defaults=defaults) == []
    assert config_drift(saved, {"task": {"lr": 0.1, "paired_init": True}}, defaults=defaults) == \
        ["task.paired_init: '<missing>' -> True"]
    assert config_drift(saved, {"task": {"lr": 0.3, "paired_init": False}}, defaults=defaults) == ["task.lr: 0.1 -> 0.3"]
    assert config_drift(saved, {"task": {"lr": 0.1, "paired_init": False}}) == \
        ["task.paired_init: '<missing>' -> False"], "without defaults every new key is drift"


@pytest.mark.parametrize("code,advice", [(28, "Free disk space"), (27, "refuses a file this large"),
                                         (13, "Make the folder writable")])
def test_write_errors_say_what_to_do(tmp_path, monkeypatch, code, advice):
    """ENOSPC, EFBIG and EACCES each get their own fix (EFBIG said 'make the folder writable')."""
    import errno
    from tasks.common import checkpoint as ckpt

    def fail(*args, **kwargs):
        raise OSError(code, errno.errorcode[code])
    monkeypatch.setattr(ckpt, "atomic_write", fail)
    with pytest.raises(ckpt.CheckpointError, match=advice):
        ckpt.save_checkpoint({"step": 1}, tmp_path / "last.pt")
