"""Seeding of every random source, and RNG-state capture for exact resume."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0, deterministic: bool = False) -> int:
    """Seed python, numpy and torch (all devices) with ``seed + rank``; returns that seed.

    ``deterministic`` asks torch for deterministic kernels (errors on ops that have none) and turns
    cuDNN benchmarking off, as needed for bit-exact resume.
    """
    effective = int(seed) + int(rank)
    random.seed(effective)
    np.random.seed(effective % 2**32)
    torch.manual_seed(effective)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return effective


def rng_state() -> Dict[str, Any]:
    """All global RNG states, in a form ``torch.load(weights_only=True)`` accepts."""
    state = {
        "python": repr(random.getstate()),
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import ast
    version, internal, gauss = ast.literal_eval(state["python"])
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block without consuming any global random stream (python, numpy, torch CPU and CUDA).

    Whatever the block draws (building a frozen network, converting weights, evaluating) is taken
    from a copy of the states, which are restored afterwards: training gets the same numbers
    whether a cache was cold or warm and whether or when an evaluation ran.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
