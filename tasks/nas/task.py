"""Weight-sharing NAS on NAS-Bench-201: first-order DARTS and GDAS with BN / CCBN / SaBN in the ops."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F


from ..common.data import data_search_path, load_dataset, portable_path, random_crop_flip
from ..common.config import check_subset, checked
from ..common.seeding import paired_init
from ..common.task import Checkpointed, RunContext, Task, TaskState
from .benchmark import open_benchmark
from .darts_v2 import unrolled_alpha_gradient
from .space import EDGES, OPS, classify_cell, edge_margins, genotype_from_choices, genotype_to_arch_str
from .supernet import SuperNet

# norm config name -> (registry name, defaults) as in the paper's NAS runs (spec sections 1.3, 3.1).
NORMS = {
    "bn": ("bn", {"affine": False, "track_running_stats": False}),
    "ccbn": ("ccbn", {"track_running_stats": False}),
    "sabn": ("split_sabn", {}),
    "split_sabn": ("split_sabn", {}),
}
MEAN_STD = {"cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
            "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
            "imagenet16-120": ((122.68, 116.66, 104.01), (63.22, 61.26, 65.09))}
ALGORITHMS = ("darts", "darts_v2", "gdas")   # first-order DARTS, second-order DARTS, GDAS


def paired_supernet_init(model: SuperNet, seed: int) -> SuperNet:
    """``paired_init`` for the supernet, its alphas included: the arms of one seed then start from the
    same convolutions and architecture weights, whatever their norms drew from the global RNG."""
    paired_init(model, seed)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 11)
    with torch.no_grad():
        model.alphas.copy_(1e-3 * torch.randn(model.alphas.shape, generator=gen))
    return model


@dataclass
class BenchmarkConfig:
    backend: str = checked("table", choices=("table", "api", "none"))  # table | api | none
    path: Optional[str] = None        # default: nasbench201/nb201_accuracy_table.csv on the data path
    dataset: str = "cifar10"          # the benchmark's data set name for look-ups


@dataclass
class NasTaskConfig:
    name: str = "nas"
    algorithm: str = checked("darts", choices=("darts", "darts_v2", "gdas"))  # darts (first order) | darts_v2 (second order) | gdas
    channels: int = checked(16, ge=1)
    cells: int = checked(5, ge=1)
    epochs: int = checked(50, ge=1)  # the cosine period T
    stop_epoch: int = checked(35, ge=1)  # search stops after this many epochs (the paper's 35)
    batch_size: int = checked(64, ge=1)
    w_lr: float = checked(0.025, gt=0)
    w_lr_min: float = checked(0.001, ge=0)
    w_momentum: float = checked(0.9, ge=0)
    w_weight_decay: float = checked(5e-4, ge=0)
    nesterov: bool = True
    grad_clip: float = checked(5.0, gt=0)  # max gradient norm of the weights (0 would zero every gradient)
    a_lr: float = checked(3e-4, gt=0)
    a_betas: List[float] = checked(factory=lambda: [0.5, 0.999], ge=0, lt=1, length=2)
    a_weight_decay: float = checked(1e-3, ge=0)
    tau_max: float = checked(10.0, gt=0)
    tau_min: float = checked(0.1, gt=0)
    split: str = checked("auto", choices=("auto", "nb201", "seeded"))  # auto | nb201 | seeded (cifar10 25k/25k search split)
    split_seed: int = 0
    # Arms of one seed start from the same weights of everything but the norms, alphas included (the
    # norms' inits draw different amounts from the global RNG); false keeps the older runs' numbers.
    paired_init: bool = False
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)


@dataclass
class NasExtra(Checkpointed):
    """Checkpointed: the search history (per epoch: cell, ground truth, softmax(alpha), margins) and
    how the search split was made."""
    history: List[Dict[str, Any]]
    split: Optional[str] = None


@dataclass
class NasRuntime:
    """Live objects of a search (rebuilt, not saved)."""
    mean: torch.Tensor          # per-channel input normalisation, (1, 3, 1, 1) in [0, 1] units
    std: torch.Tensor
    benchmark: Any              # the NAS-Bench-201 ground-truth table
    forward: Any                # the supernet's forward (compiled when trainer.compile)


class NasTask(Task):
    name = "nas"
    norms = tuple(NORMS)
    sweep_norms = ("bn", "ccbn", "sabn")   # split_sabn is sabn's registry name here, not another arm
    channels_last_on = {"cpu": True}   # the faster layout of the whole step (results/bench/vs_official.json)
    norm_variants = NORMS
    schema = NasTaskConfig
    score_key = ""                    # the paper reports the last epoch's genotype; no 'best'

    def _search_data(self, ctx: RunContext):
        """(weight-step images, labels), (arch-step images, labels), description of the split.

        CIFAR-10: the 25k/25k split of the train set. CIFAR-100 and ImageNet16-120: the whole train
        set for the weights, the x-valid half of the test set (NAS-Bench-201's split file) for alpha.
        """
        cfg = ctx.cfg
        train = load_dataset(cfg.data.name, "train", cfg.data.root, cfg.data.download)
        if cfg.data.name == "cifar10":
            w_idx, a_idx, note = self._split(ctx, train)
            return (train.images[w_idx], train.labels[w_idx]), (train.images[a_idx], train.labels[a_idx]), note, train
        split_name = {"cifar100": "cifar100-test-split.txt", "imagenet16-120": "imagenet-16-120-test-split.txt"}
        if cfg.data.name not in split_name:
            raise ValueError(f"task nas searches on cifar10, cifar100 or imagenet16-120, not '{cfg.data.name}'")
        test = load_dataset(cfg.data.name, "test" if cfg.data.name == "cifar100" else "valid", cfg.data.root, cfg.data.download)
        for root in data_search_path(cfg.data.root):
            f = root / "nasbench201" / "splits" / split_name[cfg.data.name]
            if f.is_file():
                xvalid = torch.tensor([int(i) for i in json.loads(f.read_text())["xvalid"][1]])
                if int(xvalid.max()) >= len(test):
                    raise ValueError(f"{f} indexes {int(xvalid.max()) + 1} test images but the data set has {len(test)}")
                return ((train.images, train.labels), (test.images[xvalid], test.labels[xvalid]),
                        f"train: all; alpha: x-valid of {f.name}", train)
        raise ValueError(f"nasbench201/splits/{split_name[cfg.data.name]} is not on the data search path")

    def _split(self, ctx: RunContext, train) -> tuple:
        t, n = ctx.cfg.task, len(train)
        pickled = "batches-py" in train.source
        if t.split == "nb201" or (t.split == "auto" and pickled and ctx.cfg.data.name == "cifar10"):
            for root in data_search_path(ctx.cfg.data.root):
                f = root / "nasbench201" / "splits" / "cifar-split.txt"
                if f.is_file():
                    split = json.loads(f.read_text())
                    a, b = [torch.tensor([int(i) for i in split[k][1]]) for k in ("train", "valid")]
                    if max(a.max(), b.max()) >= n:
                        raise ValueError(f"{f} indexes {int(max(a.max(), b.max())) + 1} images but the data set has {n}")
                    return a, b, "nb201 cifar-split.txt"
            if t.split == "nb201":
                raise ValueError("task.split=nb201 but nasbench201/splits/cifar-split.txt is not on the data path")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(t.split_seed))
        return order[: n // 2], order[n // 2:], f"seeded 50/50 split (seed {t.split_seed}; image order of {portable_path(train.source)} differs from CIFAR's)"

    def build(self, ctx: RunContext) -> TaskState:
        cfg, t = ctx.cfg, ctx.cfg.task
        if ctx.dist.world_size > 1:
            raise ValueError("task nas runs on one process: each replica would sample its own ops (and "
                             "conditions), as the paper's DataParallel caveat says; launch without torchrun")
        if t.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown NAS algorithm '{t.algorithm}'; use one of {ALGORITHMS}")
        w_data, a_data, split_note, train = self._search_data(ctx)
        check_subset("data.train_subset", cfg.data.train_subset, min(len(w_data[1]), len(a_data[1])),
                     "images of the smaller search half")
        if cfg.data.train_subset:
            w_data = tuple(v[:cfg.data.train_subset] for v in w_data)
            a_data = tuple(v[:cfg.data.train_subset] for v in a_data)
        model = SuperNet(self.norm_layer(ctx.cfg), t.channels, t.cells, len(train.classes))
        if t.paired_init:
            paired_supernet_init(model, cfg.trainer.seed)
        model = ctx.prepare(model)
        w_opt = torch.optim.SGD(model.weight_parameters(), lr=t.w_lr, momentum=t.w_momentum,
                                weight_decay=t.w_weight_decay, nesterov=t.nesterov)
        a_opt = torch.optim.Adam([model.alphas], lr=t.a_lr, betas=tuple(t.a_betas), weight_decay=t.a_weight_decay)
        state = TaskState(modules={"model": model}, optimizers={"weights": w_opt, "alphas": a_opt},
                          iterators={"train": ctx.batches(w_data, t.batch_size, 0),
                                     "valid": ctx.batches(a_data, t.batch_size, 1)},
                          extra=NasExtra(history=[], split=split_note))
        mean, std = MEAN_STD.get(cfg.data.name, MEAN_STD["cifar10"])
        state.runtime = NasRuntime(mean=torch.tensor(mean).view(1, 3, 1, 1) / 255,
                                   std=torch.tensor(std).view(1, 3, 1, 1) / 255,
                                   benchmark=open_benchmark(t.benchmark.backend, t.benchmark.path,
                                                            data_search_path(cfg.data.root)),
                                   forward=ctx.compiled(model))
        return state

    def _epoch_length(self, state: TaskState) -> int:
        return state.iterators["train"].batches_per_epoch

    def length_unit(self, cfg) -> tuple:
        return "epochs", "task.stop_epoch epochs of task.epochs-long cosine"

    def total_steps(self, ctx: RunContext, state: TaskState) -> int:
        return ctx.cfg.task.stop_epoch * self._epoch_length(state)

    def eval_interval(self, ctx: RunContext, state: TaskState) -> int:
        return self._epoch_length(state)

    def _schedule(self, ctx: RunContext, epoch: int) -> tuple:
        t = ctx.cfg.task
        lr = t.w_lr_min + (t.w_lr - t.w_lr_min) * (1 + math.cos(math.pi * epoch / t.epochs)) / 2
        tau = t.tau_max - (t.tau_max - t.tau_min) * epoch / max(t.epochs - 1, 1)
        return lr, tau

    def _inputs(self, ctx, state, images, generator):
        x = random_crop_flip(images, 2 if images.shape[-1] == 16 else 4, generator).float().div_(255)
        return ctx.as_input(((x - state.runtime.mean) / state.runtime.std).to(ctx.device))

    def train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, float]:
        t, model, forward = ctx.cfg.task, state.modules["model"], state.runtime.forward
        lr, tau = self._schedule(ctx, step // self._epoch_length(state))
        w_opt, a_opt = state.optimizers["weights"], state.optimizers["alphas"]
        for group in w_opt.param_groups:
            group["lr"] = lr
        gen = ctx.step_generator(1, step)
        xw, yw = next(state.iterators["train"])
        xa, ya = next(state.iterators["valid"])
        xw, xa = self._inputs(ctx, state, xw, gen), self._inputs(ctx, state, xa, gen)
        yw, ya = yw.to(ctx.device), ya.to(ctx.device)
        model.train()
        mode = "gdas" if t.algorithm == "gdas" else "darts"
        if t.algorithm == "darts_v2":
            # Second order: the architecture step comes first, through an unrolled weight step.
            a_opt.zero_grad(set_to_none=True)
            a_loss = unrolled_alpha_gradient(model, w_opt, xw, yw, xa, ya, mode)
            a_opt.step()
        # Weight step. Like the reference, only the weights' gradients are zeroed first, so the clip
        # norm also sees the alphas' gradients; the alphas are then zeroed before their own step.
        w_opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            logits = forward(xw, mode, tau)
            loss = F.cross_entropy(logits.float(), yw)
        loss.backward()
        ctx.observe_gradients(model, step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        w_opt.step()
        # Tensors, not floats: the runner reads them on the host only when it logs (no sync per step).
        out = {"loss": loss.detach(), "acc": (logits.argmax(1) == yw).float().mean() * 100, "lr": lr, "tau": tau}
        if t.algorithm != "darts_v2":
            a_opt.zero_grad(set_to_none=True)
            with ctx.autocast():
                a_logits = forward(xa, mode, tau)
                a_loss = F.cross_entropy(a_logits.float(), ya)
            a_loss.backward()
            a_opt.step()
            out["arch_acc"] = (a_logits.argmax(1) == ya).float().mean() * 100
        out["arch_loss"] = a_loss.detach()
        return out

    def evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool = False) -> Dict[str, Any]:
        model, bench = state.modules["model"], state.runtime.benchmark
        arch = genotype_to_arch_str(genotype_from_choices(model.genotype_choices()))
        dataset = ctx.cfg.task.benchmark.dataset
        test, valid = bench.query(arch, dataset, "test"), None
        if dataset == "cifar10":
            valid = bench.query(arch, dataset, "valid")
        epoch = step // self._epoch_length(state)
        history = state.extra.history
        if not history or history[-1]["epoch"] != epoch:
            probs = model.alphas.detach().softmax(-1).cpu()
            softmax = [[round(float(p), 5) for p in row] for row in probs]
            history.append({"epoch": epoch, "step": step, "arch_str": arch, "gt_test": test, "gt_valid": valid,
                            "alphas_softmax": softmax, "margins": edge_margins(softmax)})
            ctx.logger.tensorboard_only(step, {f"alpha/edge{dst}<-{src}/{op}": p
                                               for (dst, src), row in zip(EDGES, softmax) for op, p in zip(OPS, row)})
            ctx.logger.text("genotype", f"epoch {epoch}: {arch} (ground truth {test})", step)
        # None, not NaN, where there is no ground truth (benchmark.backend=none): NaN would read as divergence
        out: Dict[str, Any] = {"epoch": epoch, "arch_str": arch, "gt_test": test, "gt_valid": valid,
                               "params_free_ops": sum(OPS[c] in ("none", "skip_connect", "avg_pool_3x3")
                                                      for c in model.genotype_choices())}
        out["min_margin"] = min(history[-1]["margins"])
        out["cell_class"] = classify_cell(arch)
        if final:
            out["gt_test_per_epoch"] = [h["gt_test"] for h in history]
            out["search_history"] = history   # softmax(alpha) and margins per epoch
            if dataset == "cifar10":   # the same cell trained on the other data sets: transfer, not searched there
                for other, key in (("cifar100", "transfer_gt_cifar100"), ("ImageNet16-120", "transfer_gt_imagenet16")):
                    value = bench.query(arch, other, "test")
                    out[key] = value   # None without ground truth (as gt_test)
        return out

    def protocol(self, ctx: RunContext, state: Optional[TaskState] = None) -> Dict[str, Any]:
        t = ctx.cfg.task
        return {"split": state.extra.split if state else None, "algorithm": t.algorithm, "supernet": f"C={t.channels} N={t.cells}",
                "norm": ctx.cfg.norm.name, "norm_layer": self.norm_description(ctx.cfg),
                "search_epochs": t.stop_epoch, "cosine_T": t.epochs, "batch_size": t.batch_size,
                "ground_truth": f"{t.benchmark.backend}:{t.benchmark.dataset} (test = NAS-Bench-201 200-epoch "
                                "mean over seeds; ori-test for cifar10, x-test otherwise)",
                "genotype": "argmax of alpha per edge after the last epoch"}


TASK = NasTask()
