"""Class-conditional GAN training (hinge loss, n_dis D steps per G step, EMA of G) and FID / KID."""
from __future__ import annotations

import copy
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from sabn import condition_value_checks


from ..common.data import NUM_CLASSES, cache_dir, load_dataset
from ..common.config import ConfigError, check_subset, checked
from ..common.distributed import wrap_ddp
from ..common.seeding import isolated_rng, rng_isolated
from ..common.task import Checkpointed, RunContext, Task, TaskState
from .metrics import fid as metrics
from .metrics.inception import FIDInception, resolve_weights
from .models.registry import MODELS, build_gan
from .models.spectral import refresh_spectral_norm

NORMS = ("bn", "ccbn", "sabn")


@dataclass
class FIDConfig:
    enabled: bool = True    # false: evaluations only save the sample sheet (throughput runs, machines without the weights)
    num_samples: int = checked(50000, ge=2)  # generated images per evaluation (paper: 50k)
    batch_size: int = checked(100, ge=1)
    reference_split: str = checked("train", choices=("train", "test"))  # CIFAR-10 train statistics, as the paper
    reference_count: int = checked(50000, ge=2)
    weights_path: Optional[str] = None
    allow_download: bool = False
    kid_subsets: int = checked(100, ge=1)
    kid_subset_size: int = checked(1000, ge=2)
    is_splits: int = checked(10, ge=1)
    # per class; > 0 adds intra-class FID (mean of per-class FIDs) to the final evaluation, from the main
    # sample where it holds that many of a class (task.labels=balanced), else from samples of the class
    intra_class_samples: int = checked(0, ge=0)
    # An .npz with mu / sigma (TTUR's fid_stats_cifar10_train.npz, as the paper): FID against it instead
    # of statistics computed from reference_split (KID and intra-class FID still use the images).
    reference_stats: Optional[str] = None
    sqrtm: str = checked("scipy", choices=("scipy", "newton_schulz"))   # newton_schulz: the official torch FID
    # Inception features (pytorch-fid's --dims): 2048 = pool3, the paper's FID; 64 / 192 / 768 stop at an
    # earlier block (cheap, e.g. for tests; not comparable with 2048-d numbers, and no IS).
    dims: int = checked(2048, choices=(64, 192, 768, 2048))


@dataclass
class GanTaskConfig:
    name: str = "gan"
    model: str = "sngan32"
    num_classes: int = checked(10, ge=1)
    g_ch: int = checked(256, ge=1)
    d_ch: int = checked(128, ge=1)
    z_dim: int = checked(128, ge=1)
    n_dis: int = checked(5, ge=1)
    d_batch_size: int = checked(64, ge=1)
    g_batch_size: int = checked(128, ge=1)
    lr: float = checked(2e-4, gt=0)
    betas: List[float] = checked(factory=lambda: [0.0, 0.9], ge=0, lt=1, length=2)
    ema_decay: float = checked(0.999, ge=0, le=1)
    ema_start: int = checked(0, ge=0)  # G steps during which the EMA copies G (BigGAN: 1000)
    ema_buffers: str = checked("live", choices=("live", "ema"))  # live: BN statistics of the live G (official); ema: averaged too
    sheet_columns: int = checked(10, ge=1)
    # Spectral-norm update: torch (the parametrization: 15 warm-up iterations, u then v) or hook (the
    # official code's nn.utils.spectral_norm: none, v then u); the paper presets use hook.
    sn_update: str = checked("torch", choices=("torch", "hook"))
    drop_last: bool = True            # false: keep the partial last batch of an epoch (782 batches of 64, official)
    # Generator labels: uniform (random, as the official code) or balanced (every class equally often
    # in each batch, up to one, and exactly in the evaluation samples): per-class comparisons then do
    # not inherit label-count noise.
    labels: str = checked("uniform", choices=("uniform", "balanced"))
    # Paired arms: norm layers draw their init from streams of their own, so the arms of one seed
    # (CCBN vs SaBN) start from the same G and D weights and see the same noise, labels and data.
    paired_init: bool = False
    fid: FIDConfig = field(default_factory=FIDConfig)


@dataclass
class GanExtra(Checkpointed):
    """Checkpointed: the fixed noise and labels of the sample sheets."""
    fixed_z: torch.Tensor
    fixed_y: torch.Tensor


@dataclass
class GanRuntime:
    """Live objects of a GAN run (rebuilt, not saved)."""
    g: Any                                     # the generator's forward (DDP-wrapped / compiled)
    d: Any                                     # the discriminator's forward
    data: Any                                  # the training ImageDataset (also the FID reference)
    inception: Optional[FIDInception] = None   # built at the first evaluation


class GanTask(Task):
    name = "gan"
    norms = NORMS
    sweep_norms = ("ccbn", "sabn")   # the paper's comparison; bn is an unconditional reference
    schema = GanTaskConfig
    score_key = "fid"
    score_mode = "min"
    channels_last_on = {"cpu": True}   # the faster layout of the whole step (results/bench/vs_official.json)

    def build(self, ctx: RunContext) -> TaskState:
        cfg, t = ctx.cfg, ctx.cfg.task
        if t.ema_buffers not in ("live", "ema"):
            raise ValueError(f"task.ema_buffers must be 'live' or 'ema', got '{t.ema_buffers}'")
        known = NUM_CLASSES.get(cfg.data.name)
        if known is not None and known != t.num_classes:   # before the (slow) load
            raise ConfigError(f"bad config: task.num_classes={t.num_classes} but data set '{cfg.data.name}' has "
                              f"{known} classes; set task.num_classes={known}")
        data = load_dataset(cfg.data.name, "train", cfg.data.root, cfg.data.download)
        if len(data.classes) != t.num_classes:
            raise ValueError(f"data set '{cfg.data.name}' has {len(data.classes)} classes but "
                             f"task.num_classes={t.num_classes}")
        resolution = MODELS[t.model][1] if t.model in MODELS else None
        if resolution and data.images.shape[-1] != resolution:
            raise ValueError(f"model {t.model} makes {resolution} px images; data set '{cfg.data.name}' "
                             f"has {data.images.shape[-1]} px")
        if t.paired_init:   # norm_layer's option check builds a probe layer: keep its draws off the global RNG too
            with isolated_rng():
                make_norm = rng_isolated(self.norm_layer(cfg, num_conditions=t.num_classes), cfg.trainer.seed)
        else:
            make_norm = self.norm_layer(cfg, num_conditions=t.num_classes)
        g, d = build_gan(t.model, make_norm, t.num_classes, t.g_ch, t.d_ch, t.z_dim, t.sn_update)
        g, d = ctx.prepare(g), ctx.prepare(d)
        g_ema = copy.deepcopy(g).requires_grad_(False)
        images, labels = data.images, data.labels
        check_subset("data.train_subset", cfg.data.train_subset, len(labels), f"training images of {cfg.data.name}")
        if cfg.data.train_subset:
            keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:cfg.data.train_subset]
            images, labels = images[keep], labels[keep]
        fixed = torch.Generator().manual_seed(12345)
        rows = t.num_classes
        state = TaskState(
            modules={"generator": g, "discriminator": d, "generator_ema": g_ema},
            optimizers={"generator": torch.optim.Adam(g.parameters(), t.lr, betas=tuple(t.betas)),
                        "discriminator": torch.optim.Adam(d.parameters(), t.lr, betas=tuple(t.betas))},
            iterators={"real": ctx.batches((images, labels), t.d_batch_size, 0, drop_last=t.drop_last,
                                             rank=ctx.dist.rank, world_size=ctx.dist.world_size)},
            extra=GanExtra(fixed_z=torch.randn(rows * t.sheet_columns, t.z_dim, generator=fixed),
                           fixed_y=torch.arange(rows).repeat_interleave(t.sheet_columns)))
        state.runtime = GanRuntime(g=ctx.compiled(wrap_ddp(g, ctx.dist, ctx.device, ctx.cfg.trainer.sync_norms)),
                                   d=ctx.compiled(wrap_ddp(d, ctx.dist, ctx.device, ctx.cfg.trainer.sync_norms)), data=data)
        return state

    def _real(self, ctx, images):
        return ctx.as_input(images.to(ctx.device).float().div_(127.5).sub_(1))

    def _noise(self, ctx, n):
        t = ctx.cfg.task
        z = torch.randn(n, t.z_dim, device=ctx.device)
        if t.labels == "balanced":   # each class n // K or n // K + 1 times, in a random order
            offset = int(torch.randint(0, t.num_classes, ()))
            y = ((torch.arange(n) + offset) % t.num_classes)[torch.randperm(n)].to(ctx.device)
        else:
            y = torch.randint(0, t.num_classes, (n,), device=ctx.device)
        return z, y

    @torch.no_grad()
    def _update_ema(self, state: TaskState, decay: float, buffers: bool) -> None:
        """ema <- decay * ema + (1 - decay) * live, for the parameters and, with ``buffers``, the floating
        buffers too (BigGAN averages its whole state dict); integer counters are copied."""
        live, ema = state.modules["generator"], state.modules["generator_ema"]
        ema_params, live_params = list(ema.parameters()), list(live.parameters())
        torch._foreach_lerp_(ema_params, live_params, 1.0 - decay)
        if buffers:
            for b_ema, b_live in zip(ema.buffers(), live.buffers()):
                b_ema.lerp_(b_live, 1.0 - decay) if b_ema.is_floating_point() else b_ema.copy_(b_live)

    def train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, Any]:
        # Every label here comes from the data set (its class count is checked against K at build) or
        # from [0, K) by construction, so the layers' per-call range check (a GPU sync each) is off.
        with condition_value_checks(False):
            return self._train_step(state, step, ctx)

    def _train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, Any]:
        t = ctx.cfg.task
        g, d = state.runtime.g, state.runtime.d
        g_opt, d_opt = state.optimizers["generator"], state.optimizers["discriminator"]
        state.modules["generator"].train()
        images, labels = next(state.iterators["real"])
        x, y = self._real(ctx, images), labels.to(ctx.device)
        z, y_fake = self._noise(ctx, len(y))
        with ctx.autocast():
            with torch.no_grad():
                fake = g(z, y_fake)
            d_real, d_fake = d(x, y).float(), d(fake, y_fake).float()
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        d_opt.zero_grad(set_to_none=True)
        ctx.step(d_loss, d_opt)
        # Tensors, not floats: the runner reads them on the host only when it logs (no sync per step).
        out = {"d_loss": d_loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
        if step % t.n_dis == 0:   # G on the 1st, (n_dis+1)-th, ... D step, as the reference
            z, y_fake = self._noise(ctx, t.g_batch_size)
            with ctx.autocast():
                g_loss = -d(g(z, y_fake), y_fake).float().mean()
            g_opt.zero_grad(set_to_none=True)
            ctx.step(g_loss, g_opt, observe=(state.modules["generator"], step))
            g_step = step // t.n_dis
            self._update_ema(state, t.ema_decay if g_step >= t.ema_start else 0.0, t.ema_buffers == "ema")
            out["g_loss"] = g_loss.detach()
        return out

    def _eval_generator(self, state: TaskState, ctx: RunContext):
        """EMA generator in eval mode; with ema_buffers=live its BN statistics are the live G's."""
        g_ema = state.modules["generator_ema"]
        if ctx.cfg.task.ema_buffers == "live":
            for b_ema, b_live in zip(g_ema.buffers(), state.modules["generator"].buffers()):
                b_ema.copy_(b_live)
        refresh_spectral_norm(g_ema)
        return g_ema.eval()

    def _inception(self, state: TaskState, ctx: RunContext) -> FIDInception:
        if state.runtime.inception is None:
            f = ctx.cfg.task.fid
            weights = resolve_weights(f.weights_path, f.allow_download)
            net = FIDInception(weights, f.dims).to(ctx.device)
            # the run's layout (trainer.channels_last): channels_last where it is the faster one
            state.runtime.inception = net.channels_last() if ctx.cfg.trainer.channels_last else net
        return state.runtime.inception

    def _reference(self, state: TaskState, ctx: RunContext, net: FIDInception) -> Dict[str, np.ndarray]:
        cfg, f = ctx.cfg, ctx.cfg.task.fid
        data = state.runtime.data if f.reference_split == "train" else \
            load_dataset(cfg.data.name, f.reference_split, cfg.data.root, cfg.data.download)
        count = min(f.reference_count, len(data))
        key = metrics.reference_key(cfg.data.name, f.reference_split, count, data.images.shape[-1], net.source, f.dims,
                                    net.layout)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:count]

        def compute():
            batches = (data.images[order[i:i + f.batch_size]].float() / 255 for i in range(0, count, f.batch_size))
            return metrics.extract(net, batches, ctx.device, desc="FID reference (real images)", total=count)["features"]
        ref = metrics.load_or_compute_reference(key, compute, cache_dir())
        ref["labels"] = data.labels[order].numpy()   # the order is seeded, so not cached
        return ref

    def evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool = False) -> Dict[str, Any]:
        with condition_value_checks(False), torch.no_grad():   # labels in [0, K) by construction, as in training
            return self._evaluate(state, step, ctx, final)

    def _evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool) -> Dict[str, Any]:
        t, f = ctx.cfg.task, ctx.cfg.task.fid
        g = self._eval_generator(state, ctx)
        self._save_sheet(state, ctx, g, step)
        if not f.enabled:
            return {}
        net = self._inception(state, ctx)
        gen = torch.Generator(device=ctx.device).manual_seed(2024)

        drawn, main_labels = [0], []

        def sample(n, label=None):
            z = torch.randn(n, t.z_dim, generator=gen, device=ctx.device)
            if label is not None:
                y = torch.full((n,), label, dtype=torch.long, device=ctx.device)
            else:
                if t.labels == "balanced":   # cyclic: every class equally often over the whole sample
                    y = ((torch.arange(n) + drawn[0]) % t.num_classes).to(ctx.device)
                else:
                    y = torch.randint(0, t.num_classes, (n,), generator=gen, device=ctx.device)
                main_labels.append(y.cpu())
            drawn[0] += n
            return (g(z, y).float() + 1) / 2
        fake = metrics.extract(net, metrics.batches_from(sample, f.num_samples, f.batch_size), ctx.device,
                               desc=f"FID samples (step {step})", total=f.num_samples,
                               want_logits=net.has_logits)
        ref = self._reference(state, ctx, net)
        fid_ref = metrics.load_reference_statistics(f.reference_stats, f.dims) if f.reference_stats else ref
        out: Dict[str, Any] = {"fid": metrics.frechet_distance(metrics.statistics(fake["features"]), fid_ref, f.sqrtm)}
        out.update(metrics.kid(fake["features"], ref["features"].astype(np.float64), f.kid_subsets, f.kid_subset_size))
        out.update(metrics.optional_inception_score(fake.get("logits"), net.source, f.is_splits, f.dims))
        if f.intra_class_samples > 0 and final:
            per_class = self._class_features(fake["features"], torch.cat(main_labels).numpy(), f.intra_class_samples,
                                             t.num_classes)
            for c in (c for c in range(t.num_classes) if c not in per_class):
                per_class[c] = metrics.extract(net, metrics.batches_from(lambda n, c=c: sample(n, c), f.intra_class_samples,
                                                                         f.batch_size), ctx.device)["features"]
            out.update(metrics.intra_class_fid(per_class, ref["features"], ref["labels"]))
        return out

    @staticmethod
    def _class_features(features: np.ndarray, labels: np.ndarray, count: int, num_classes: int) -> Dict[int, np.ndarray]:
        """The first ``count`` features of each class in the main sample, for the classes it holds that many
        of (all of them under task.labels=balanced with num_samples >= count x K): intra-class FID then costs
        no extra Inception passes. The other classes are sampled on their own."""
        out = {}
        for c in range(num_classes):
            rows = np.flatnonzero(labels == c)
            if len(rows) >= count:
                out[c] = features[rows[:count]]
        return out

    def _save_sheet(self, state, ctx, g, step: int) -> None:
        if not ctx.dist.is_main:
            return
        z, y = state.extra.fixed_z.to(ctx.device), state.extra.fixed_y.to(ctx.device)
        images = (g(z, y).float().cpu() + 1) / 2
        grid = make_grid(images.clamp(0, 1), nrow=ctx.cfg.task.sheet_columns, padding=1)
        path = ctx.run_dir / "samples" / f"step{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        ctx.logger.image("samples", grid, step)

    def result_images(self, ctx: RunContext, step: int) -> Dict[str, Path]:
        """The final sample sheet (fixed noise, every class; EMA generator)."""
        return {"samples": ctx.run_dir / "samples" / f"step{step:07d}.png"}

    def protocol(self, ctx: RunContext, state: Optional[TaskState] = None) -> Dict[str, Any]:
        t, f = ctx.cfg.task, ctx.cfg.task.fid
        source = state.runtime.inception.source if state is not None and state.runtime.inception is not None else None
        return {"model": t.model, "num_samples": f.num_samples, "reference": f"{ctx.cfg.data.name}/{f.reference_split}",
                "reference_count": f.reference_count, "inception_weights": source,
                "generator": f"EMA({t.ema_decay}) in eval mode, BN buffers: {t.ema_buffers}",
                "labels": t.labels,
                "fid": "pytorch-fid preprocessing, " + ("" if f.dims == 2048 else f"{f.dims}-d features, ")
                       + ("Inception in channels_last, " if ctx.cfg.trainer.channels_last else "") + "float64 statistics, "
                       + ("scipy sqrtm" if f.sqrtm == "scipy" else "Newton-Schulz sqrtm (50 iterations, float32)"),
                "fid_reference": (f"statistics file {Path(f.reference_stats).name}" if f.reference_stats
                                  else f"computed from {ctx.cfg.data.name}/{f.reference_split} ({f.reference_count} images)"),
                "inception_score": "TF inception-2015-12-05 graph as ported by pytorch-fid (1008-way logits); "
                                   "only with pytorch-fid's own weights file, else unavailable",
                "kid": f"cubic polynomial kernel, {f.kid_subsets} subsets of <= {f.kid_subset_size}",
                "intra_class_fid": (f"final evaluation: {f.intra_class_samples} samples per class (the main sample's "
                                    "first of each class where it holds that many) vs that class's reference images"
                                    if f.intra_class_samples > 0 else "off"),
                "n_dis": t.n_dis, "batch": f"D {t.d_batch_size} / G {t.g_batch_size}"}


TASK = GanTask()
