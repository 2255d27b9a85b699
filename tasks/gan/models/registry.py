"""Generator / discriminator pairs by name: ``task.model`` picks one, ``norm`` picks the G norm."""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from torch import nn

from .blocks import NormLayer
from .sngan import AutoGANGenerator, ProjectionDiscriminator, SNGANGenerator

Builder = Callable[..., Tuple[nn.Module, nn.Module]]


def _sngan32(norm_layer, num_classes, g_ch, d_ch, z_dim, sn_update="torch"):
    g = SNGANGenerator(norm_layer, (g_ch,) * 4, z_dim, bottom=4)
    return g, ProjectionDiscriminator(num_classes, (d_ch,) * 4, (True, True, False, False), sn_update=sn_update)


def _autogan32(norm_layer, num_classes, g_ch, d_ch, z_dim, sn_update="torch"):
    return AutoGANGenerator(norm_layer, g_ch, z_dim, bottom=4), \
        ProjectionDiscriminator(num_classes, (d_ch,) * 4, (True, True, False, False), sn_update=sn_update)


def _sngan128(norm_layer, num_classes, g_ch, d_ch, z_dim, sn_update="torch"):
    g = SNGANGenerator(norm_layer, [g_ch * m for m in (8, 8, 4, 4, 2, 1)], z_dim, bottom=4)
    d = ProjectionDiscriminator(num_classes, [d_ch * m for m in (1, 2, 4, 8, 8, 8)],
                                (True, True, True, True, True, False), sn_update=sn_update)
    return g, d


def _biggan32(norm_layer, num_classes, g_ch, d_ch, z_dim, sn_update="torch"):
    """BigGAN-PyTorch's CIFAR architecture (G_ch = D_ch = 64, widths x4 = 256, no attention, not
    hierarchical, no shared embedding): SNGAN-32's block layout with N02 init, spectral norm in G
    as well, and a biased D output linear. ``g_ch`` / ``d_ch`` are the block widths (256 / 256)."""
    g = SNGANGenerator(norm_layer, (g_ch,) * 4, z_dim, bottom=4, init="n02", spectral=True, sn_update=sn_update)
    d = ProjectionDiscriminator(num_classes, (d_ch,) * 4, (True, True, False, False), init="n02",
                                linear_bias=True, sn_update=sn_update)
    return g, d


MODELS: Dict[str, Tuple[Builder, int]] = {   # name -> (builder, image resolution)
    "sngan32": (_sngan32, 32),
    "autogan32": (_autogan32, 32),
    "sngan128": (_sngan128, 128),
    "biggan32": (_biggan32, 32),
}


def build_gan(name: str, norm_layer: NormLayer, num_classes: int, g_ch: int, d_ch: int, z_dim: int,
              sn_update: str = "torch"):
    """G and D of model ``name``; ``sn_update`` picks the spectral-norm update (see models.spectral)."""
    if name not in MODELS:
        raise ValueError(f"unknown GAN model '{name}'; known: {', '.join(MODELS)} (set task.model)")
    return MODELS[name][0](norm_layer, num_classes, g_ch, d_ch, z_dim, sn_update)
