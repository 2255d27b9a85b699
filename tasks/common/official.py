"""Shared pieces for converting the official implementation's checkpoints (VITA-Group/Sandwich-Batch-
Normalization) into this repository's layout. Each task module maps its keys; this module checks that
every official tensor was used and every one of ours was filled, and writes the checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch
from omegaconf import OmegaConf
from torch import Tensor

from . import checkpoint as ckpt

StateDict = Dict[str, Tensor]


class ConversionError(ValueError):
    """An official checkpoint that does not fit the model it is converted to."""


def load_official(path: str) -> Dict[str, Any]:
    """The official file, read with ``weights_only=True`` (the official files are plain state dicts)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConversionError(f"no official checkpoint at {file}")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - one message for truncated, foreign or code-carrying files
        raise ConversionError(f"cannot read {file} as a weights-only checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:150] if str(error) else ''})") from None


def split_embedding(table: Tensor, channels: int) -> tuple:
    """The official conditional norms keep (gamma | beta) side by side in one embedding row."""
    if table.dim() != 2 or table.shape[1] != 2 * channels:
        raise ConversionError(f"an official embedding of shape {tuple(table.shape)} does not fit {channels} channels "
                              f"(expected (K, {2 * channels})): wrong model, norm or width for this file?")
    return table[:, :channels].clone(), table[:, channels:].clone()


def check_complete(converted: StateDict, target: StateDict) -> None:
    """Every key of ours filled with the right shape and no key we do not have (every official tensor
    is renamed onto one of ours, so an unused one shows up as an unknown key)."""
    missing = sorted(set(target) - set(converted))
    wrong = [f"{k}: {tuple(converted[k].shape)} vs {tuple(target[k].shape)}" for k in converted
             if k in target and converted[k].shape != target[k].shape]
    extra = sorted(set(converted) - set(target))
    problems = [f"not filled: {missing[:6]}" if missing else "", f"shape mismatches: {wrong[:4]}" if wrong else "",
                f"unknown keys: {extra[:6]}" if extra else ""]
    problems = [p for p in problems if p]
    if problems:
        raise ConversionError("the official checkpoint does not fit this model (wrong experiment, norm or "
                              "width?): " + "; ".join(problems))


def write_converted(cfg, modules: Dict[str, StateDict], source: str, out: str, notes: Dict[str, Any]) -> Path:
    """A checkpoint of this repository (``evaluate.py ckpt=<out>`` scores it) carrying the preset's config."""
    payload = {"step": 0, "modules": modules, "optimizers": {}, "schedulers": {}, "iterators": {},
               "extra": {}, "scaler": {}, "rng": {}, "best": {"score": None, "step": None},
               "config": OmegaConf.to_container(cfg, resolve=True),
               "converted_from": {"file": Path(source).name, **notes}}
    return ckpt.save_checkpoint(payload, Path(out))
