"""Bad config keys and values fail with the key's name; missing data lists where it looked."""
import pytest
import torch
from hydra.errors import ConfigCompositionException

from tasks.common.config import ConfigError, validate
from tasks.common.data import DataNotFoundError, TensorBatches, load_dataset, random_crop_flip
from tests.conftest import compose


def test_experiment_preset_overrides_root_config():
    cfg = compose("experiment=adv/cpu", "norm=saauxbn", "trainer.seed=2")
    assert cfg.results.scale == "cpu" and cfg.results.experiment == "cpu_saauxbn"
    assert cfg.paths.run_dir == "runs/adv/cpu_saauxbn/seed2"
    assert cfg.task.epochs == 4 and cfg.trainer.seed == 2


def test_unknown_key_names_the_key_and_allowed_keys():
    from omegaconf import OmegaConf
    from tasks.adv.task import AdvTaskConfig
    cfg = compose("experiment=adv/smoke")
    raw = OmegaConf.to_container(cfg)
    raw["trainer"]["stepz"] = 3
    with pytest.raises(ConfigError, match="stepz.*allowed keys under trainer: steps"):
        validate(OmegaConf.create(raw), AdvTaskConfig)
    raw["trainer"].pop("stepz")
    raw["task"]["width"] = "wide"
    with pytest.raises(ConfigError, match="width"):
        validate(OmegaConf.create(raw), AdvTaskConfig)


def test_hydra_refuses_unknown_override():
    with pytest.raises(ConfigCompositionException, match="trainer.stepz"):
        compose("trainer.stepz=3")


def test_missing_dataset_lists_search_path_and_layouts(tmp_path, monkeypatch):
    import tasks.common.data.paths as paths
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("SABN_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "explicit").mkdir()   # an explicit data.root must exist (else that is the error); it is empty
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", "train", root=str(tmp_path / "explicit"))
    text = str(info.value)
    for where in ("explicit", "env", "repo/data", "shared/data", "cifar-10-batches-py", "tar.gz"):
        assert where in text


def test_unknown_dataset():
    with pytest.raises(ValueError, match="known: cifar10, cifar100"):
        load_dataset("mnist", "train")


def test_cifar10_test_split_is_real(cifar10):
    assert cifar10.images.shape == (10000, 3, 32, 32) and cifar10.images.dtype == torch.uint8
    assert cifar10.labels.bincount().tolist() == [1000] * 10
    assert cifar10.classes[:3] == ["airplane", "automobile", "bird"]
    assert 80 < cifar10.images.float().mean() < 160


def test_tensor_batches_resume_exactly_and_cover_each_epoch():
    data = (torch.arange(20), torch.arange(20) * 10)
    a = TensorBatches(data, 4, seed=3)
    first = [next(a)[0] for _ in range(7)]
    seen = torch.cat(first[:5]).sort().values
    assert torch.equal(seen, torch.arange(20)), "one epoch covers every example once"
    b = TensorBatches(data, 4, seed=3)
    b.load_state_dict(TensorBatches(data, 4, seed=3).state_dict())
    for _ in range(3):
        next(b)
    c = TensorBatches(data, 4, seed=3)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(next(b)[0], next(c)[0]) for _ in range(6))


def _epoch_orders(batches, epochs):
    return [torch.cat([next(batches)[0] for _ in range(batches.batches_per_epoch)]) for _ in range(epochs)]


def test_independent_orders_share_no_epoch_across_seeds_and_iterators_and_legacy_keeps_the_old_ones():
    data = (torch.arange(64),)
    orders = {(seed, stream): _epoch_orders(TensorBatches(data, 8, seed, stream=stream), 4)
              for seed in range(3) for stream in range(2)}
    flat = [tuple(o.tolist()) for run in orders.values() for o in run]
    assert len(set(flat)) == len(flat), "every (seed, iterator, epoch) its own permutation"
    legacy = {(seed, stream): _epoch_orders(TensorBatches(data, 8, seed, stream=stream, order="legacy"), 4)
              for seed in range(2) for stream in range(2)}
    old = lambda seed, epoch: torch.randperm(64, generator=torch.Generator().manual_seed(seed + epoch))  # noqa: E731
    assert all(torch.equal(legacy[(s, k)][e], old(s + k, e)) for s in range(2) for k in range(2) for e in range(4))
    # The flaw the legacy order has: seed 0's epoch 1 is seed 1's epoch 0, and a run's second
    # iterator (stream 1) replays its first one an epoch ahead.
    assert torch.equal(legacy[(0, 0)][1], legacy[(1, 0)][0]) and torch.equal(legacy[(0, 1)][0], legacy[(0, 0)][1])
    with pytest.raises(ValueError, match="data order 'shuffled' is not one of"):
        TensorBatches(data, 8, 0, order="shuffled")


def test_a_run_from_before_data_order_existed_resumes_only_in_the_legacy_order(tmp_path, cifar10):
    from tasks.common.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from tasks.common.runner import train
    from tests.conftest import compose
    run = lambda *extra: train(compose("experiment=adv/smoke", f"paths.run_dir={tmp_path}",  # noqa: E731
                                       "logger.tensorboard=false", *extra))
    run("trainer.steps=2", "data.order=legacy")
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    del payload["config"]["data"]["order"]   # as written before the key existed
    save_checkpoint(payload, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="data.order: '<missing>' -> 'independent'"):
        run("trainer.steps=4")
    assert run("trainer.steps=4", "data.order=legacy")["status"] == "completed"


def test_random_crop_flip_keeps_content():
    img = torch.arange(2 * 3 * 8 * 8).reshape(2, 3, 8, 8).float()
    out = random_crop_flip(img, 0, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], img[i]) or torch.equal(out[i], img[i].flip(-1))
    padded = random_crop_flip(img, 2, torch.Generator().manual_seed(1))
    assert padded.shape == img.shape


def test_imagenet_subset_needs_all_class_folders(tmp_path):
    from tasks.common.data.imagenet import load_dogs_and_cats
    root = tmp_path / "imagenet" / "train"
    for i in range(5):
        (root / f"n{i:08d}").mkdir(parents=True)
    with pytest.raises(ValueError, match="has 5 class folders"):
        load_dogs_and_cats(tmp_path, "train")
    assert load_dogs_and_cats(tmp_path / "nothing", "train") is None


def test_sngan128_shapes():
    from sabn import norm_layer
    from tasks.gan.models.registry import build_gan
    g, d = build_gan("sngan128", norm_layer("sabn", num_conditions=143), 143, 4, 4, 16)
    x = g(torch.randn(2, 16), torch.tensor([0, 142]))
    assert x.shape == (2, 3, 128, 128) and d(x, torch.tensor([0, 142])).shape == (2,)


def test_failed_download_is_reported_with_the_search_path(tmp_path, monkeypatch):
    import tasks.common.data.paths as paths
    import tasks.common.data.registry as registry
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv("SABN_DATA_DIR", raising=False)
    monkeypatch.delenv("SABN_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(registry, "_download", lambda name, target: calls.append(target) or "URLError: offline")
    with pytest.raises(DataNotFoundError, match="download failed \\(URLError: offline\\)"):
        load_dataset("cifar10", "train", root=str(tmp_path / "mine"), download=True)
    assert calls == [tmp_path / "mine"]


def test_dogs_and_cats_preprocessing_is_the_official_one():
    """Short-side centre crop, then torchvision's Resize((128, 128)) on the PIL image (bilinear)."""
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    from tasks.common.data.imagenet import centre_crop_resize
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (301, 447, 3), dtype=np.uint8))
    w, h = img.size
    side = min(w, h)
    official = T.Resize((128, 128))(img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)))
    assert np.array_equal(centre_crop_resize(img, 128), np.asarray(official))
