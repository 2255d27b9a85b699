"""The official GAN checkpoints (SNGAN-32, AutoGAN-32, SNGAN-128 of VITA-Group/Sandwich-Batch-
Normalization) in this repository's layout.

Official layout: generator blocks ``block2..`` with norms ``b1/b2`` (SNGAN) or cells ``cell1..3`` with
``n1/n2`` (AutoGAN), each norm an ``nn.BatchNorm2d`` under ``.bn`` (affine for SaBN, not for CCBN)
plus an ``embed`` table holding (gamma | beta) per class; the last BN and conv as ``b5/c5`` (``b7/c7``
at 128 px) or ``to_rgb``; discriminator blocks ``block1..`` and hook-based spectral norm
(``weight_orig``, ``weight_u``, ``weight_v``). A file is either the generator's state dict (the
model zoo's test checkpoints) or a training checkpoint with ``gen_state_dict``, ``dis_state_dict``
and ``avg_gen_state_dict``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

from ..common.official import ConversionError, StateDict, check_complete, split_embedding

_NORM = re.compile(r"^(?P<norm>.+\.(?:b1|b2|n1|n2))\.(?P<kind>bn|embed)\.(?P<name>\w+)$")
_SN = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
       "weight_v": "parametrizations.weight.0._v"}


def _generator_key(key: str, last: int) -> str:
    key = re.sub(r"^block(\d+)\.", lambda m: f"blocks.{int(m.group(1)) - 2}.", key)
    key = re.sub(rf"^b{last}\.", "to_rgb.0.", key)
    return re.sub(rf"^c{last}\.", "to_rgb.2.", key)


def convert_generator(official: StateDict, target: StateDict) -> StateDict:
    """SNGAN / AutoGAN generator tensors renamed onto ours; embeddings split into gamma and beta."""
    blocks = [int(m.group(1)) for k in official for m in [re.match(r"^b(\d+)\.", k)] if m]
    last = max(blocks) if blocks else -1
    out: StateDict = {}
    for key, value in official.items():
        key = _generator_key(key, last)
        match = _NORM.match(key)
        if match and match["kind"] == "embed":
            prefix = match["norm"]
            if f"{prefix}.condition_weight" not in target:
                raise ConversionError(f"official key {key} is a conditional norm, but this model has none at {prefix}")
            channels = target[f"{prefix}.condition_weight"].shape[1]
            out[f"{prefix}.condition_weight"], out[f"{prefix}.condition_bias"] = split_embedding(value, channels)
        elif match:
            out[f"{match['norm']}.{match['name']}"] = value.clone()
        else:
            out[key] = value.clone()
    check_complete(out, target)
    return out


def convert_discriminator(official: StateDict, target: StateDict) -> StateDict:
    """Projection discriminator: ``blockN`` -> ``blocks.N-1``, ``l5``/``l7`` -> ``l5``, hook SN -> ours."""
    out: StateDict = {}
    for key, value in official.items():
        key = re.sub(r"^block(\d+)\.", lambda m: f"blocks.{int(m.group(1)) - 1}.", key)
        key = re.sub(r"^l7\.", "l5.", key)
        stem, _, leaf = key.rpartition(".")
        out[f"{stem}.{_SN[leaf]}" if leaf in _SN else key] = value.clone()
    check_complete(out, target)
    return out


def convert(content: Dict[str, Any], targets: Dict[str, StateDict]) -> Tuple[Dict[str, StateDict], Dict[str, Any]]:
    """Our ``generator`` / ``generator_ema`` / ``discriminator`` state dicts from an official file."""
    if "avg_gen_state_dict" in content or "gen_state_dict" in content:
        live = content.get("gen_state_dict", content.get("avg_gen_state_dict"))
        ema = content.get("avg_gen_state_dict", live)
        modules = {"generator": convert_generator(live, targets["generator"]),
                   "generator_ema": convert_generator(ema, targets["generator_ema"])}
        if "dis_state_dict" in content:
            modules["discriminator"] = convert_discriminator(content["dis_state_dict"], targets["discriminator"])
        kind = "training checkpoint (gen / avg_gen" + (" / dis)" if "dis_state_dict" in content else ")")
    else:
        generator = convert_generator(content, targets["generator"])
        modules = {"generator": generator, "generator_ema": generator}
        kind = "generator state dict (the evaluated generator; no discriminator)"
    missing = sorted(set(targets) - set(modules))
    for name in missing:   # not in the file: left as built, so the checkpoint loads; never trained
        modules[name] = targets[name]
    return modules, {"content": kind, "not_in_official_file": missing}


def targets(cfg) -> Dict[str, StateDict]:
    """Our freshly built modules for a composed GAN config (no data needed)."""
    from sabn import norm_layer

    from .models.registry import build_gan
    t = cfg.task
    g, d = build_gan(t.model, norm_layer(cfg.norm.name, num_conditions=t.num_classes, **cfg.norm.options),
                     t.num_classes, t.g_ch, t.d_ch, t.z_dim, t.sn_update)
    return {"generator": g.state_dict(), "generator_ema": g.state_dict(), "discriminator": d.state_dict()}
