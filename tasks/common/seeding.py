"""Seeding of every random source, and RNG-state capture for exact resume."""
from __future__ import annotations

import itertools
import os
import random
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator

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


def paired_init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Re-draw the initial weights of every layer that is not a norm layer, in module order, from a
    stream of its own seeded by ``seed``: two arms that differ only in their norm layers (whose inits
    draw different amounts from the global RNG) then start from identical shared weights, which is
    what a paired comparison across arms needs. The global RNG streams are left as they were.
    """
    from torch.nn.modules.batchnorm import _NormBase
    from sabn.batchnorm import ConditionalBatchNorm2d
    from sabn.instancenorm import AdaptiveInstanceNorm2d
    norms = (_NormBase, ConditionalBatchNorm2d, AdaptiveInstanceNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    with isolated_rng():
        torch.manual_seed(int(seed) * 1_000_003 + 7)
        for module in model.modules():
            if isinstance(module, norms) or not hasattr(module, "reset_parameters"):
                continue
            if hasattr(module, "parametrizations"):
                raise NotImplementedError(f"paired_init: {type(module).__name__} is parametrized (spectral "
                                          "norm?); its reset would not reach the stored weight")
            if any(True for _ in module.parameters(recurse=False)):
                module.reset_parameters()
    return model


def rng_isolated(make: Callable[..., torch.nn.Module], seed: int) -> Callable[..., torch.nn.Module]:
    """``make`` (a norm constructor) whose calls draw from streams of their own (the i-th call from
    one seeded by ``seed`` and i) and leave the global RNG as it was. Two arms that differ only in
    their norm layers then build every other layer, spectral-norm vectors included, from the same
    global draws, and train on the same noise and labels afterwards: the GAN's paired initialisation,
    which keeps each model's own init scheme (``paired_init`` would replace it with the defaults).
    Init functions that re-draw norm parameters take them from ``own_stream(layer)``."""
    calls = itertools.count()

    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        own = int(seed) * 1_000_003 + 104_729 + next(calls)
        with isolated_rng():
            torch.manual_seed(own)
            module = make(*args, **kwargs)
        module.init_seed = own + 1   # a model's own init scheme re-draws this layer from here (own_stream)
        return module
    return build


def own_stream(module: torch.nn.Module) -> Any:
    """The generator a model's init function draws ``module``'s parameters from: the layer's own stream
    when it was built by ``rng_isolated`` (paired arms), else None (the global RNG, as always)."""
    seed = getattr(module, "init_seed", None)
    return None if seed is None else torch.Generator().manual_seed(seed)
