"""The official adversarial-training checkpoints (PreAct-ResNet-18 with BN, AuxBN or SaAuxBN, of
VITA-Group/Sandwich-Batch-Normalization) in this repository's layout.

Official layout: ``layer{1..4}.{i}.{bn1,conv1,bn2,conv2,shortcut.0}``, the input normalisation as
``normal.mean/std``; AuxBN holds ``bn_list.{branch}`` affine BNs; SaAuxBN holds non-affine
``bn_list.{branch}`` plus an ``embed`` table of (gamma | beta) rows: one per branch, then the shared
one (row ``num_bns``). A file is the model's state dict or a training checkpoint with ``state_dict``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

import torch

from ..common.official import ConversionError, StateDict, check_complete, split_embedding

_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _layer_key(key: str, blocks) -> str:
    """``layer{s}.{i}.`` -> ``layers.{flat index}.``; bn -> norm, shortcut.0 -> shortcut."""
    match = re.match(r"^layer(\d+)\.(\d+)\.(.*)$", key)
    if not match:
        return key
    stage, index, rest = int(match.group(1)) - 1, int(match.group(2)), match.group(3)
    flat = sum(blocks[:stage]) + index
    rest = re.sub(r"^bn(\d)\.", r"norm\1.", rest)
    rest = re.sub(r"^shortcut\.0\.", "shortcut.", rest)
    return f"layers.{flat}.{rest}"


def convert_model(official: StateDict, target: StateDict, blocks=(2, 2, 2, 2)) -> StateDict:
    """BN / AuxBN / SaAuxBN PreAct-ResNet tensors onto ours (split statistics stacked per branch)."""
    out: StateDict = {}
    branches: Dict[str, Dict[int, Dict[str, torch.Tensor]]] = {}
    for key, value in official.items():
        if key.startswith("normal."):
            continue   # ImageNet mean / std: constants of our model, checked below
        key = _layer_key(key, list(blocks))
        match = re.match(r"^(?P<norm>.+\.norm\d)\.bn_list\.(?P<k>\d+)\.(?P<name>\w+)$", key)
        if match:
            branches.setdefault(match["norm"], {}).setdefault(int(match["k"]), {})[match["name"]] = value
            continue
        match = re.match(r"^(?P<norm>.+\.norm\d)\.embed\.weight$", key)
        if match:   # SaAuxBN: rows 0..K-1 the branches' affines, row K the shared one
            prefix = match["norm"]
            gamma, beta = split_embedding(value, value.shape[1] // 2)
            out[f"{prefix}.condition_weight"], out[f"{prefix}.condition_bias"] = gamma[:-1].clone(), beta[:-1].clone()
            out[f"{prefix}.weight"], out[f"{prefix}.bias"] = gamma[-1].clone(), beta[-1].clone()
            continue
        out[key] = value.clone()
    for prefix, per_branch in branches.items():
        order = [per_branch[k] for k in sorted(per_branch)]
        for name in _STATS:
            out[f"{prefix}.{name}"] = torch.stack([b[name] for b in order])
        if "weight" in order[0]:   # AuxBN: each branch's affine BN is that branch's affine
            out[f"{prefix}.condition_weight"] = torch.stack([b["weight"] for b in order])
            out[f"{prefix}.condition_bias"] = torch.stack([b["bias"] for b in order])
    for name in ("mean", "std"):
        # compared in float64: an official file saved in another dtype (float64, half) is still the same normalisation
        if f"normal.{name}" in official and not torch.allclose(official[f"normal.{name}"].flatten().double(),
                                                               target[name].flatten().double()):
            raise ConversionError(f"the official input normalisation {name} differs from ours")
        out[name] = target[name].clone()
    check_complete(out, target)
    return out


def convert(content: Dict[str, Any], targets: Dict[str, StateDict], blocks=(2, 2, 2, 2)) -> Tuple[Dict[str, StateDict], Dict[str, Any]]:
    """Our ``model`` state dict from an official file (a state dict, or a checkpoint with ``state_dict``)."""
    state = content.get("state_dict", content)
    if not isinstance(state, dict) or not state:
        raise ConversionError("the official file holds no state dict")
    return {"model": convert_model(state, targets["model"], blocks)}, \
        {"content": "training checkpoint" if "state_dict" in content else "state dict",
         "epoch": int(content["epoch"]) if isinstance(content.get("epoch"), int) else None}


def targets(cfg) -> Dict[str, StateDict]:
    """Our freshly built model for a composed adv config (no data needed)."""
    from sabn import norm_layer

    from .preact_resnet import PreActResNet
    t = cfg.task
    model = PreActResNet(norm_layer(cfg.norm.name, num_conditions=2, **cfg.norm.options), tuple(t.blocks), t.width)
    return {"model": model.state_dict()}
