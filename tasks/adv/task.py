"""Adversarial training (PGD-7, half clean + half adversarial loss) with BN / AuxBN / SaAuxBN."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F


from ..common.data import load_dataset, random_crop_flip
from ..common.config import check_subset, checked
from ..common.distributed import all_reduce_sums, unwrap, wrap_ddp
from ..common.seeding import paired_init
from ..common.task import Checkpointed, RunContext, Task, TaskState
from .attacks import check_eps, pgd
from .preact_resnet import PreActResNet

NORMS = ("bn", "auxbn", "saauxbn")
BRANCH_NAMES = {"clean": 0, "adv": 1}


@dataclass
class AttackConfig:
    eps: float = checked(8 / 255, ge=0)
    step_size: float = checked(2 / 255, ge=0)
    steps: int = checked(7, ge=0)
    random_start: bool = True


@dataclass
class AdvTaskConfig:
    name: str = "adv"
    blocks: List[int] = checked(factory=lambda: [2, 2, 2, 2], ge=1, min_length=1)  # PreAct-ResNet-18
    width: int = checked(64, ge=1)
    epochs: int = checked(200, ge=0)  # sets trainer.steps = epochs * batches per epoch when > 0
    batch_size: int = checked(128, ge=1)
    lr: float = checked(0.1, gt=0)
    momentum: float = checked(0.9, ge=0)
    weight_decay: float = checked(5e-4, ge=0)
    milestones: List[int] = checked(factory=lambda: [50, 150], ge=0)  # epochs, lr x0.1 at each
    warmup_iters: int = checked(200, ge=0)  # epoch 0: lr = min(lr, 0.01 + it * (lr - 0.01) / warmup_iters)
    val_size: int = checked(5000, ge=0)  # 45k/5k split of CIFAR-10 train
    split_seed: int = 10
    train_attack: AttackConfig = field(default_factory=AttackConfig)
    eval_steps: List[int] = checked(factory=lambda: [10, 20], ge=0)
    eval_batch_size: int = checked(256, ge=1)
    val_examples: int = checked(1000, ge=0)  # val images used for the per-evaluation PGD-10 check
    test_examples: int = checked(10000, ge=0)  # test images for the final SA / PGD table
    eval_seed: int = 0
    eval_restarts: int = checked(1, ge=1)  # PGD restarts per example at evaluation (worst case counts)
    # Convs and the classifier drawn from a stream of their own (seeded by trainer.seed), so BN, AuxBN and
    # SaAuxBN runs of one seed start from identical shared weights (a paired comparison). The adv/cpu
    # preset's committed results predate it (false there).
    paired_init: bool = True
    # The official protocol's reporting (the paper preset turns these on; defaults keep the cpu tiers):
    split: str = checked("torch", choices=("torch", "numpy"))   # numpy: np.random.seed(split_seed) shuffle of range(N), val first
    drop_last: bool = True            # false: keep the partial last batch (352 batches of 45k at 128, as the official loader)
    eval_each_epoch: bool = False     # evaluate after every epoch (instead of every trainer.eval_every steps)
    eval_splits: List[str] = checked(factory=lambda: ["val"])            # splits of the periodic evaluation
    robust_branches: List[str] = checked(factory=lambda: ["adv"])        # branches attacked at evaluation
    report_epoch: int = checked(0, ge=0)  # > 0: the final table scores the weights after this many epochs


@dataclass
class AdvExtra(Checkpointed):
    """Checkpointed: the weights after ``task.report_epoch`` (the ones the final table scores)."""
    report_model: Optional[Dict[str, torch.Tensor]] = None


@dataclass
class AdvRuntime:
    """Live objects of an adversarial-training run (rebuilt, not saved)."""
    forward: Any                                            # the model's forward (DDP-wrapped / compiled)
    data: Dict[str, Tuple[torch.Tensor, torch.Tensor]]      # 'val' / 'test' -> (uint8 images, labels)


class AdvTask(Task):
    name = "adv"
    norms = NORMS
    schema = AdvTaskConfig
    score_key = "val/adv/pgd10"
    score_mode = "max"

    def build(self, ctx: RunContext) -> TaskState:
        cfg, t = ctx.cfg, ctx.cfg.task
        check_eps(t.train_attack.eps), check_eps(t.train_attack.step_size, "step_size")
        make_norm = self.norm_layer(cfg, num_conditions=2)   # the two branches
        model = PreActResNet(make_norm, tuple(t.blocks), t.width, num_classes=10)
        if t.paired_init:
            paired_init(model, cfg.trainer.seed)
        model = ctx.prepare(model)
        train = load_dataset(cfg.data.name, "train", cfg.data.root, cfg.data.download)
        test = load_dataset(cfg.data.name, "test", cfg.data.root, cfg.data.download)
        if len(train.classes) != 10:
            raise ValueError(f"task adv expects 10 classes, data set '{cfg.data.name}' has {len(train.classes)}")
        for name, values, allowed in (("eval_splits", t.eval_splits, ("val", "test")),
                                      ("robust_branches", t.robust_branches, tuple(BRANCH_NAMES))):
            if not values or any(v not in allowed for v in values):
                raise ValueError(f"task.{name}={list(values)}: use a non-empty list of {', '.join(allowed)}")
        if t.report_epoch > t.epochs:
            raise ValueError(f"task.report_epoch={t.report_epoch} is after the last epoch (task.epochs={t.epochs})")
        val_idx, train_idx = self._split(len(train), t)
        check_subset("data.train_subset", cfg.data.train_subset, len(train_idx), "images of the training split")
        check_subset("data.test_subset", cfg.data.test_subset, len(test), "test images")
        if cfg.data.train_subset:
            train_idx = train_idx[:cfg.data.train_subset]
        test_n = min(cfg.data.test_subset or t.test_examples, len(test))
        # Subsets are the first n of a fixed permutation: folder-tree copies are sorted by class.
        test_idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:test_n]
        batches = ctx.batches((train.images[train_idx], train.labels[train_idx]), t.batch_size, 0,
                              drop_last=t.drop_last, rank=ctx.dist.rank, world_size=ctx.dist.world_size)
        optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        state = TaskState(modules={"model": model}, optimizers={"model": optimizer},
                          iterators={"train": batches}, extra=AdvExtra())
        state.runtime = AdvRuntime(
            forward=ctx.compiled(wrap_ddp(model, ctx.dist, ctx.device, ctx.cfg.trainer.sync_norms)),
            data={"val": (train.images[val_idx][:t.val_examples], train.labels[val_idx][:t.val_examples]),
                  "test": (test.images[test_idx], test.labels[test_idx])})
        return state

    @staticmethod
    def _split(n: int, t) -> tuple:
        """(validation, training) indices of the train set: a torch permutation, or the official code's
        np.random.seed(split_seed); np.random.shuffle(range(n)) (a private RandomState, same numbers)."""
        if t.split == "numpy":
            order = np.arange(n)
            np.random.RandomState(t.split_seed).shuffle(order)
            order = torch.from_numpy(order)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(t.split_seed))
        return order[:t.val_size], order[t.val_size:]

    def eval_interval(self, ctx: RunContext, state: TaskState) -> int:
        if ctx.cfg.task.eval_each_epoch:
            return state.iterators["train"].batches_per_epoch
        return ctx.cfg.trainer.eval_every

    def length_unit(self, cfg) -> tuple:
        return ("epochs", "task.epochs; task.epochs=0 switches to trainer.steps") if cfg.task.epochs > 0 else ("steps", "")

    def total_steps(self, ctx: RunContext, state: TaskState) -> int:
        t = ctx.cfg.task
        return t.epochs * state.iterators["train"].batches_per_epoch if t.epochs > 0 else ctx.cfg.trainer.steps

    def learning_rate(self, ctx: RunContext, state: TaskState, step: int) -> float:
        """Warm-up over the first iterations of epoch 0, then x0.1 at each milestone epoch."""
        t = ctx.cfg.task
        epoch = step // state.iterators["train"].batches_per_epoch
        lr = t.lr * 0.1 ** sum(epoch >= m for m in t.milestones)
        if epoch == 0 and step < t.warmup_iters:
            lr = min(lr, 0.01 + step * (t.lr - 0.01) / t.warmup_iters)
        return lr

    def _inputs(self, ctx: RunContext, images: torch.Tensor) -> torch.Tensor:
        return ctx.as_input(images.to(ctx.device, non_blocking=True).float().div_(255))

    def train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, float]:
        t, model = ctx.cfg.task, state.runtime.forward
        images, labels = next(state.iterators["train"])
        # A generator per (seed, rank, step): augmentation does not depend on where a run resumed.
        augment = ctx.step_generator(ctx.dist.rank, step)
        x = self._inputs(ctx, random_crop_flip(images, 4, augment))
        y = labels.to(ctx.device)
        lr = self.learning_rate(ctx, state, step)
        for group in state.optimizers["model"].param_groups:
            group["lr"] = lr
        unwrap(model).train()
        a = t.train_attack
        with ctx.autocast():
            # PGD against the adversarial branch in train mode (updates that branch's statistics).
            # The attack runs on the unwrapped model: it needs no gradient synchronisation under DDP.
            x_adv = pgd(unwrap(model), x, y, a.eps, a.step_size, a.steps, branch=1, random_start=a.random_start)
            logits_clean = model(x, 0)
            logits_adv = model(x_adv, 1)
            loss_clean = F.cross_entropy(logits_clean.float(), y)
            loss_adv = F.cross_entropy(logits_adv.float(), y)
            loss = 0.5 * (loss_clean + loss_adv)
        optimizer = state.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        ctx.step(loss, optimizer)
        if t.report_epoch and step + 1 == t.report_epoch * state.iterators["train"].batches_per_epoch:
            # The weights the final table scores (the official model_epoch190.pt is saved after 191 epochs).
            state.extra.report_model = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
        # Tensors, not floats: the runner reads them on the host only when it logs (no sync per step).
        return {"loss": loss.detach(), "loss_clean": loss_clean.detach(), "loss_adv": loss_adv.detach(),
                "acc_clean": (logits_clean.argmax(1) == y).float().mean(),
                "acc_adv": (logits_adv.argmax(1) == y).float().mean(), "lr": lr}

    def _accuracy(self, ctx, state, split: str, branch: int, steps: int) -> Dict[str, float]:
        """Accuracy and mean loss of ``branch`` on clean (steps=0) or PGD-``steps`` inputs, eval mode.

        With ``eval_restarts`` > 1 an example counts as robust only if every restart fails (per-example
        worst case); the loss is the worst restart's. Under DDP the batches are shared out round-robin and
        the counts all-reduced, and every process draws the random starts of every batch (skipping those
        it does not evaluate), so each example gets the same start as in one process: one result, equal
        to a single-process evaluation of the same weights.
        """
        t, model = ctx.cfg.task, unwrap(state.runtime.forward)
        images, labels = state.runtime.data[split]
        gen = torch.Generator(device=ctx.device).manual_seed(t.eval_seed)
        correct, loss_sum = 0, 0.0
        rank, world = ctx.dist.rank, ctx.dist.world_size
        model.eval()
        for block, start in enumerate(range(0, len(labels), t.eval_batch_size)):
            x = self._inputs(ctx, images[start:start + t.eval_batch_size])
            if block % world != rank:   # another process's batch: consume its random starts only
                for _ in range(max(t.eval_restarts, 1) if steps else 0):
                    torch.rand(x.shape, generator=gen, device=gen.device, dtype=x.dtype)
                continue
            y = labels[start:start + t.eval_batch_size].to(ctx.device)
            ok = torch.ones_like(y, dtype=torch.bool)
            worst = torch.full(y.shape, -float("inf"), device=ctx.device)
            for _ in range(max(t.eval_restarts, 1) if steps else 1):
                x_eval = x
                if steps:
                    a = t.train_attack
                    x_eval = pgd(model, x, y, a.eps, a.step_size, steps, branch=branch, random_start=True, generator=gen)
                with torch.no_grad(), ctx.autocast():
                    logits = model(x_eval, branch).float()
                ok &= logits.argmax(1) == y
                worst = torch.maximum(worst, F.cross_entropy(logits, y, reduction="none"))
            correct += ok.sum().item()
            loss_sum += worst.sum().item()
        if world > 1:
            correct, loss_sum = all_reduce_sums([correct, loss_sum], ctx.device)
        return {"acc": 100.0 * correct / len(labels), "loss": loss_sum / len(labels)}

    def evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool = False) -> Dict[str, float]:
        t = ctx.cfg.task
        if final and state.extra.report_model is not None:
            model = unwrap(state.runtime.forward)
            current = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(state.extra.report_model)
            try:
                out = self._scores(state, ctx, ["test"], t.eval_steps)
                out["report_epoch"] = t.report_epoch
            finally:
                model.load_state_dict(current)
        elif final:
            out = self._scores(state, ctx, ["test"], t.eval_steps)
        else:
            return self._scores(state, ctx, list(t.eval_splits), [10])
        # the selection score on val too, so 'best' is comparable across evaluations
        out.update({k: v for k, v in self._scores(state, ctx, ["val"], [10]).items() if k == self.score_key})
        return out

    def _scores(self, state: TaskState, ctx: RunContext, splits, pgd_steps) -> Dict[str, float]:
        """Clean accuracy of every branch and PGD accuracy of task.robust_branches, per split (the
        paper's table attacks only the adversarial branch)."""
        out: Dict[str, float] = {}
        branches = {"adv": 1} if ctx.cfg.norm.name == "bn" else BRANCH_NAMES
        for split in splits:
            for name, branch in branches.items():
                clean = self._accuracy(ctx, state, split, branch, 0)
                out[f"{split}/{name}/clean"], out[f"{split}/{name}/clean_loss"] = clean["acc"], clean["loss"]
                if name not in ctx.cfg.task.robust_branches:
                    continue
                for steps in pgd_steps:
                    robust = self._accuracy(ctx, state, split, branch, steps)
                    out[f"{split}/{name}/pgd{steps}"], out[f"{split}/{name}/pgd{steps}_loss"] = robust["acc"], robust["loss"]
        return out

    def protocol(self, ctx: RunContext, state: Optional[TaskState] = None) -> Dict[str, Any]:
        t = ctx.cfg.task
        return {"threat_model": "Linf", "eps": "8/255" if abs(t.train_attack.eps - 8 / 255) < 1e-9 else str(t.train_attack.eps),
                "step_size": t.train_attack.step_size, "eval_steps": list(t.eval_steps),
                "random_start": True, "restarts": t.eval_restarts,
                "n_test_examples": min(ctx.cfg.data.test_subset or t.test_examples, 10000),
                "n_val_examples": min(t.val_examples, t.val_size),
                "eval_mode": "model.eval(); attack against the evaluated branch",
                "model": f"PreActResNet blocks={list(t.blocks)} width={t.width}",
                "train_attack_steps": t.train_attack.steps,
                "split": f"45k/5k seed {t.split_seed}" + (" (the official numpy shuffle)" if t.split == "numpy" else ""),
                **({"reported_weights": f"after epoch {t.report_epoch} of {t.epochs}"} if t.report_epoch else {}),
                **({"robust_branches": list(t.robust_branches)} if list(t.robust_branches) != ["adv"] else {})}


TASK = AdvTask()
