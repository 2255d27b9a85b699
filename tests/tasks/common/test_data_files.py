"""Data-set batch files never run code (issue #31): CIFAR and ImageNet16 pickles are read with a
restricted unpickler. Real CIFAR-10 images written in torchvision's pickle layout (numpy arrays,
protocol 2 as the original files) still load; a file that names any other callable is refused, naming
the file, before that callable runs."""
import os
import pickle

import numpy as np
import pytest

from tasks.common.data import load_dataset
from tasks.common.data.paths import DataError
from tests.conftest import cifar10  # noqa: F401 (fixture)


class _Payload:
    """Unpickling this calls os.system: the classic code-execution pickle."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _write_cifar(folder, train, test, classes, evil_in=None):
    base = folder / "cifar10" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(train.labels)), 5)
    for i, idx in enumerate(chunks, start=1):
        entry = {b"data": train.images[idx].numpy().reshape(len(idx), -1), b"labels": train.labels[idx].tolist()}
        if evil_in == f"data_batch_{i}":
            entry[b"extra"] = _Payload()
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(entry, protocol=2))
    (base / "test_batch").write_bytes(pickle.dumps(
        {b"data": test.images.numpy().reshape(len(test.labels), -1), b"labels": test.labels.tolist()}, protocol=2))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in classes]}, protocol=2))
    return folder


def _real(cifar10, n=200):  # noqa: F811
    """Real CIFAR-10 test images (the fixture's), split into a 'train' and a 'test' part."""
    part = lambda a, b: type(cifar10)(cifar10.images[a:b], cifar10.labels[a:b], cifar10.classes, cifar10.source)  # noqa: E731
    return part(0, n), part(n, 2 * n), cifar10.classes


def test_real_cifar_pickles_load_with_the_restricted_unpickler(cifar10, tmp_path):  # noqa: F811
    train, test, classes = _real(cifar10)
    root = _write_cifar(tmp_path, train, test, classes)
    loaded = load_dataset("cifar10", "train", str(root))
    assert loaded.source.endswith("cifar-10-batches-py")
    assert (loaded.images == train.images).all() and (loaded.labels == train.labels).all()
    assert loaded.classes == classes


def test_a_cifar_pickle_with_code_is_refused_naming_the_file(cifar10, tmp_path, monkeypatch):  # noqa: F811
    train, test, classes = _real(cifar10)
    root = _write_cifar(tmp_path, train, test, classes, evil_in="data_batch_3")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data_batch_3 is not a plain data file: it asks to load '(posix|os)\.system'"):
        load_dataset("cifar10", "train", str(root))
    assert not (tmp_path / "PWNED").exists(), "the payload must never run"


def test_imagenet16_batch_files_load_and_code_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "ImageNet16"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 11):
        entry = {"data": rng.integers(0, 256, (6, 768), dtype=np.uint8), "labels": [1, 2, 120, 121, 5, 999],
                 "mean": rng.random(768)}
        (folder / f"train_data_batch_{i}").write_bytes(pickle.dumps(entry, protocol=2))
    loaded = load_dataset("imagenet16-120", "train", str(tmp_path))
    assert loaded.images.shape == (40, 3, 16, 16) and sorted(set(loaded.labels.tolist())) == [0, 1, 4, 119]
    (folder / "train_data_batch_7").write_bytes(pickle.dumps({"data": _Payload(), "labels": []}, protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="train_data_batch_7 is not a plain data file"):
        load_dataset("imagenet16-120", "train", str(tmp_path))
    assert not (tmp_path / "PWNED").exists()
