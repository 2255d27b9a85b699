"""The interface every task implements, and the task registry."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig, read_write

from .distributed import DistInfo
from .logging import MetricsLogger


@dataclass
class RunContext:
    """What the runner hands a task: resolved config, device, distributed info, logger, run dir.
    Building one settles ``trainer.channels_last=null`` for its device (``resolve_layout``)."""

    cfg: DictConfig
    device: torch.device
    dist: DistInfo
    logger: MetricsLogger
    run_dir: Path
    scaler: Optional[Any] = None     # torch.amp.GradScaler for fp16 on CUDA
    monitor: Optional[Any] = None    # sabn.analysis.GradientMonitor when analysis.enabled
    nonfinite_skips: int = 0         # steps undone by trainer.on_nonfinite=skip_step (checkpointed)

    def __post_init__(self) -> None:
        resolve_layout(self.cfg, self.device)

    def autocast(self):
        """Autocast context for the forward passes (a no-op unless trainer.amp)."""
        dtype = self.amp_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, observe=None) -> None:
        """Backward and optimizer step, through the grad scaler when one is in use.

        ``observe=(module, step)`` records the gradient analysis of ``module`` between the two
        when ``analysis.enabled``.
        """
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if observe is not None:
            self.observe_gradients(*observe)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def observe_gradients(self, module: torch.nn.Module, step: int) -> None:
        """Per-condition gradient balance of ``module``'s conditional norms (sabn.analysis)."""
        if not self.cfg.analysis.enabled or not self.dist.is_main:
            return
        from sabn.analysis import GradientMonitor, scalars
        if self.monitor is None:
            self.monitor = GradientMonitor(module, self.cfg.analysis.every, self.cfg.analysis.window)
        summary = self.monitor.observe(step)
        if summary:
            self.logger.log(step + 1, scalars(summary))
            self.logger.record("analysis", step + 1, {"layers": summary})

    def step_generator(self, stream: int, step: int) -> torch.Generator:
        """A CPU generator for one random stream at one training step, seeded from (trainer.seed, stream,
        step) only: a draw (augmentation, crops) never depends on where a run resumed. Each task numbers
        its streams (adv: the rank, nas: 1, nst: 2)."""
        return torch.Generator().manual_seed((self.cfg.trainer.seed * 7919 + stream) * 10**7 + step)

    def batches(self, tensors: Tuple[torch.Tensor, ...], batch_size: int, stream: int, **options: Any):
        """Shuffled, resumable batches over in-memory tensors: iterator number ``stream`` of this run
        (each of a run's iterators its own number), ordered by trainer.seed and data.order."""
        from .data import TensorBatches
        return TensorBatches(tensors, batch_size, self.cfg.trainer.seed, stream=stream, order=self.cfg.data.order,
                             **options)

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        """A float batch on the device, in the run's memory format (channels_last when trainer.channels_last)."""
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.trainer.channels_last else x

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a module to the run's device and memory format."""
        module = module.to(self.device)
        if self.cfg.trainer.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def compiled(self, module: torch.nn.Module):
        """The callable to use for forward passes: ``torch.compile(module)`` when trainer.compile."""
        return torch.compile(module) if self.cfg.trainer.compile else module

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        if not self.cfg.trainer.amp:
            return None
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16


@dataclass
class Checkpointed:
    """Base of a task's checkpointed plain values (subclass it as a dataclass): saved as a dict of its
    fields (tensors, numbers, strings, lists: what ``torch.load(weights_only=True)`` reads back)."""

    def state_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, values: Dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise KeyError(f"{type(self).__name__} has no field(s) {unknown}")
        for name, value in values.items():
            setattr(self, name, value)


@dataclass
class NoExtra(Checkpointed):
    """A task that checkpoints nothing beyond modules, optimizers, schedulers and iterators."""


@dataclass
class TaskState:
    """Everything a task trains and must checkpoint, plus its live objects.

    ``extra``: the task's :class:`Checkpointed` dataclass (saved and restored with the run).
    ``runtime``: the task's own dataclass of live, rebuilt-not-saved objects (data, wrapped forwards).
    """

    modules: Dict[str, torch.nn.Module]
    optimizers: Dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: Dict[str, Any] = field(default_factory=dict)
    iterators: Dict[str, Any] = field(default_factory=dict)   # objects with state_dict/load_state_dict
    extra: Checkpointed = field(default_factory=NoExtra)
    runtime: Any = None


class Task:
    """A task: ``build`` the state, do one ``train_step``, ``evaluate``. The runner owns the loop.

    ``score_key`` names the evaluation metric that selects the 'best' checkpoint and
    ``score_mode`` whether higher ('max') or lower ('min') is better.
    """

    name: str = ""
    schema: type = object
    norms: Tuple[str, ...] = ()       # the norm config names this task accepts
    sweep_norms: Tuple[str, ...] = ()  # the arms scripts/reproduce.sh compares by default (empty: all of norms)
    # norm config name -> (registry name, default options) where the task's paper setting differs
    # from the registry's (NAS: 'sabn' is the split-statistics variant, 'bn' has no affine)
    norm_variants: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    score_key: str = ""
    score_mode: str = "max"
    # device type -> whether trainer.channels_last=null means channels_last there: the faster layout of
    # the task's whole training step, measured (results/bench/vs_official.json; tests/test_bench_layout.py
    # keeps the two in step); absent: NCHW
    channels_last_on: Dict[str, bool] = {}

    def norm_layer(self, cfg: DictConfig, num_conditions: int = 1) -> Callable[..., torch.nn.Module]:
        """The configured norm as a constructor ``make(num_features, num_conditions=num_conditions)``:
        the registry name and defaults from ``norm_variants``, the user's ``norm.options`` on top.
        Bad options fail here, before any model is built."""
        from sabn import build_norm
        name, defaults = self.norm_variants.get(cfg.norm.name, (cfg.norm.name, {}))
        options = {**defaults, **cfg.norm.options}
        build_norm(name, 1, num_conditions, **options)   # (draws what sabn.norm_layer's check draws: same runs)

        def make(num_features: int, k: int = num_conditions) -> torch.nn.Module:
            return build_norm(name, num_features, k, **options)
        return make

    def norm_description(self, cfg: DictConfig) -> str:
        """The registry name the configured norm resolves to (for result files)."""
        return self.norm_variants.get(cfg.norm.name, (cfg.norm.name, {}))[0]

    def length_unit(self, cfg: DictConfig) -> tuple:
        """("steps", "") or ("epochs", the keys that set the length): the one unit of training length."""
        return "steps", ""

    def check_config(self, cfg: DictConfig) -> None:
        """Checks of a whole validated config that the schema cannot express."""
        from .config import check_length
        self.check_norm(cfg)
        check_length(cfg, *self.length_unit(cfg))

    def check_norm(self, cfg: DictConfig) -> None:
        """Refuse a norm the task does not support, naming the ones it does."""
        if cfg.norm.name not in self.norms:
            raise ValueError(f"task {self.name} takes norm in {self.norms}, got '{cfg.norm.name}'")

    def build(self, ctx: RunContext) -> TaskState:
        raise NotImplementedError

    def train_step(self, state: TaskState, step: int, ctx: RunContext) -> Dict[str, float]:
        raise NotImplementedError

    def total_steps(self, ctx: RunContext, state: TaskState) -> int:
        """Number of training steps; tasks that count in epochs override this."""
        return ctx.cfg.trainer.steps

    def eval_interval(self, ctx: RunContext, state: TaskState) -> int:
        """Steps between evaluations (0: only at the end); tasks that evaluate per epoch override it."""
        return ctx.cfg.trainer.eval_every

    def evaluate(self, state: TaskState, step: int, ctx: RunContext, final: bool = False) -> Dict[str, float]:
        raise NotImplementedError

    def protocol(self, ctx: RunContext, state: Optional[TaskState] = None) -> Dict[str, Any]:
        """The evaluation protocol, written into every result file."""
        return {}

    def result_images(self, ctx: RunContext, step: int) -> Dict[str, Path]:
        """Images of the final evaluation kept beside the result file (as
        ``results/<task>/<name>_<experiment>_seed<k>.png``, which the report shows); none by default."""
        return {}


def resolve_layout(cfg: DictConfig, device: torch.device) -> bool:
    """Settle ``trainer.channels_last=null`` to the task's choice on ``device`` (``Task.channels_last_on``),
    in ``cfg`` itself: the run's saved config, its resume check and its result file hold the layout used."""
    if cfg.trainer.channels_last is None:
        choice = bool(get_task(cfg.task.name).channels_last_on.get(device.type, False))
        with read_write(cfg):
            cfg.trainer.channels_last = choice
    return bool(cfg.trainer.channels_last)


TASKS_DIR = Path(__file__).resolve().parents[1]


def task_names() -> Tuple[str, ...]:
    """Tasks are found by convention: every ``tasks/<name>/task.py`` (defining ``TASK``) but the
    shared ``tasks/common``."""
    return tuple(sorted(p.parent.name for p in TASKS_DIR.glob("*/task.py") if p.parent.name != "common"))


def get_task(name: str) -> Task:
    """The task ``name`` (``tasks.<name>.task.TASK``, imported lazily so tasks stay independent)."""
    if name not in task_names():
        raise ValueError(f"unknown task '{name}'; known tasks: {', '.join(task_names())}")
    return importlib.import_module(f"tasks.{name}.task").TASK
