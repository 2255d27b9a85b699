"""Shared fixtures: Hydra composition of the real configs, and the real-data guard."""
from pathlib import Path

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


@pytest.fixture(scope="session")
def cifar10():
    """CIFAR-10 from the data search path; tests that need it skip when it is absent."""
    from tasks.common.data import DataNotFoundError, load_dataset
    try:
        return load_dataset("cifar10", "test")
    except DataNotFoundError as error:
        pytest.skip(f"CIFAR-10 not found on the data search path: {str(error).splitlines()[0]}")
