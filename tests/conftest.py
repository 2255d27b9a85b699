"""Shared fixtures: Hydra composition of the real configs, and the real-data guard."""
import functools
from pathlib import Path
from typing import Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _python_path():
    """Every test starts on the Python path; tests/sabn/test_cpu_kernels.py turns the C++ kernels on."""
    import sabn
    sabn.disable_cpu_kernels()


def compose(*overrides: str):
    """The validated config that ``python train.py <overrides>`` would run."""
    from tasks.common.store import compose as store_compose
    return store_compose(*overrides)


def script(relative_path: str):
    """A command-line script of the repository as a module (loaded by path: "evaluate" is also a PyPI
    package's name), so tests call its ``main(argv)`` in process: same parsing, same one-message
    errors (SystemExit 2)."""
    import importlib.util
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"sabn_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_cli():
    """evaluate.py as a module (see ``script``)."""
    return script("evaluate.py")


def style_root() -> Optional[Path]:
    """The style_transfer/ folder on the data search path, or None."""
    from tasks.common.data import data_search_path
    return next((root / "style_transfer" for root in data_search_path()
                 if (root / "style_transfer" / "content").is_dir()), None)


@functools.lru_cache(maxsize=None)
def _cifar10_test():
    from tasks.common.data import load_dataset
    return load_dataset("cifar10", "test")


@functools.lru_cache(maxsize=None)
def _missing_data(task: str) -> Optional[str]:
    """Why the data a task's smoke preset reads are not on the search path (None when they are)."""
    from tasks.common.data import DataNotFoundError
    if task == "nst":
        return None if style_root() else "style_transfer/ images are not on the data search path"
    try:
        _cifar10_test()
    except DataNotFoundError as error:
        return f"CIFAR-10 not found on the data search path: {str(error).splitlines()[0]}"
    return None


def require_data(task: str) -> None:
    """Skip the calling test, naming what is missing, when ``task``'s real data are absent (a fresh
    machine without the mirror): a run on absent data would fail for a reason the test is not about."""
    reason = _missing_data(task)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar10():
    """CIFAR-10 from the data search path; tests that need it skip when it is absent."""
    require_data("cifar10")
    return _cifar10_test()
