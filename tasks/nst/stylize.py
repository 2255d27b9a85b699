"""Stylise images with a trained decoder.

    python -m tasks.nst.stylize --content A.jpg photos/ --style S.jpg --ckpt runs/nst/.../last.pt --out out/

Writes ``{content}_stylized_{style}.png`` (or ``..._stylized_interpolated.png`` with
``--style-weights``) into ``--out``; never overwrites an input file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from omegaconf import OmegaConf
from torchvision.utils import save_image

from sabn import build_norm

from ..common.checkpoint import CheckpointError, load_checkpoint
from ..common.cli import friendly_errors
from ..common.runner import resolve_device
from .images import coral, list_images, read_image, resize_short_side, to_tensor
from .vgg import decoder


def _load(ckpt: str, device: torch.device):
    payload = load_checkpoint(Path(ckpt))
    cfg = OmegaConf.create(payload["config"])
    if cfg.task.name != "nst":
        raise CheckpointError(f"{ckpt} is a '{cfg.task.name}' checkpoint, not a style-transfer one")
    dec = decoder()
    dec.load_state_dict(payload["modules"]["decoder"])
    norm = build_norm(cfg.norm.name, 512, **cfg.norm.options)
    norm.load_state_dict(payload["modules"]["norm"])
    from .task import NstTask
    task = NstTask()
    # The run's own encoder: its file, or the default rebuilt on the same photos (the cache is keyed by them).
    files = [] if cfg.task.encoder_path is not None else \
        task._split(cfg.task, cfg.task.content_dirs, cfg.task.val_content_dirs, cfg.data.root, 0)[0]
    encoder = task._encoder(cfg.task, cfg.data.root, files)
    return encoder.to(device), dec.to(device).eval(), norm.to(device).eval()


@torch.no_grad()
def stylize(content: torch.Tensor, styles: List[torch.Tensor], encoder, dec, norm, alpha: float = 1.0,
            weights: Optional[List[float]] = None) -> torch.Tensor:
    """One content image (1, 3, H, W) in [0, 1] with one or several styles; alpha blends with the
    content features, weights interpolate between styles (pytorch-AdaIN's test semantics)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1] (1: full style, 0: content only)")
    weights = weights or [1.0 / len(styles)] * len(styles)
    if len(weights) != len(styles) or abs(sum(weights) - 1) > 1e-6 or min(weights) < 0:
        raise ValueError(f"style weights {weights} must be {len(styles)} non-negative numbers summing to 1")
    c_feat = encoder(content)[-1]
    target = sum(w * norm(c_feat, encoder(s)[-1]) for w, s in zip(weights, styles))
    target = alpha * target + (1 - alpha) * c_feat
    out = dec(target)
    return out[..., : content.shape[-2], : content.shape[-1]].clamp(0, 1)


@friendly_errors
def main(argv=None) -> List[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", nargs="+", required=True, help="content images or folders")
    p.add_argument("--style", nargs="+", required=True, help="style images or folders")
    p.add_argument("--ckpt", required=True, help="a style-transfer run's checkpoint (last.pt / best.pt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (CORAL)")
    p.add_argument("--style-weights", type=float, nargs="*", help="interpolate all styles with these weights")
    p.add_argument("--content-size", type=int, default=512, help="short side; 0 keeps the size")
    p.add_argument("--style-size", type=int, default=512, help="short side; 0 keeps the size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:<i>")
    args = p.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha {args.alpha} must be in [0, 1]")
    for flag, size in (("--content-size", args.content_size), ("--style-size", args.style_size)):
        if size < 0:
            raise ValueError(f"{flag} {size} must be >= 0 (a short side in pixels; 0 keeps the size)")
    device = resolve_device(args.device)
    contents, styles = list_images(args.content), list_images(args.style)
    inputs = {f.resolve() for f in contents + styles}
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is an existing file; --out names a folder for the stylised images")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the output folder {out_dir} ({error.strerror}); choose another --out") from None
    encoder, dec, norm = _load(args.ckpt, device)

    def prep(path, size):
        return to_tensor(resize_short_side(read_image(path), size)).float().div(255).unsqueeze(0).to(device)
    written = []
    jobs = [(styles, "interpolated")] if args.style_weights else [([s], s.stem) for s in styles]
    for c_path in contents:
        content = prep(c_path, args.content_size)
        for style_paths, tag in jobs:
            style_imgs = [prep(s, args.style_size) for s in style_paths]
            if args.preserve_color:
                style_imgs = [coral(s[0].cpu(), content[0].cpu()).unsqueeze(0).to(device) for s in style_imgs]
            image = stylize(content, style_imgs, encoder, dec, norm, args.alpha, args.style_weights)
            target = out_dir / f"{c_path.stem}_stylized_{tag}.png"
            if target.resolve() in inputs:
                raise ValueError(f"refusing to overwrite input file {target}; choose another --out")
            save_image(image[0].cpu(), target)
            written.append(target)
            print(target)
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
