"""Structured-config schemas: every key a run accepts, with its type; validation with clear errors."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def _repo_path(path: str) -> str:
    """``${repo_path:<p>}``: a relative path taken from the repository root (Hydra's run dir uses it, so
    its log file lands in the run directory whatever the working directory). Hydra creates that folder
    before any of the project's code runs, so an unusable one is reported here: one message, exit 2."""
    import sys
    from .rundir import RunDirError, resolve_run_dir, usable_run_dir
    resolved = resolve_run_dir(str(path))
    try:
        usable_run_dir(resolved)
    except RunDirError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return str(resolved)


def _run_variant() -> str:
    from .variant import run_variant
    return run_variant()


OmegaConf.register_new_resolver("repo_path", _repo_path, replace=True)
OmegaConf.register_new_resolver("run_variant", _run_variant, replace=True)


class ConfigError(ValueError):
    """A config key or value that the schema does not accept."""


def checked(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: Optional[float] = None,
            gt: Optional[float] = None, le: Optional[float] = None, lt: Optional[float] = None,
            choices: Optional[tuple] = None, pattern: Optional[str] = None, length: Optional[int] = None,
            min_length: Optional[int] = None) -> Any:
    """A schema field with the values it accepts (bounds, for lists on every item; choices; a regex; a
    list's exact or least length). Floats must be finite. :func:`validate` refuses anything else,
    naming the key and the rule."""
    rules = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", choices),
                               ("pattern", pattern), ("length", length), ("min_length", min_length)) if v is not None}
    return field(default=default, default_factory=factory, metadata={"rules": rules})


def _violation(value: Any, rules: Dict[str, Any]) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if "length" in rules and len(value) != rules["length"]:
            return f"must have {rules['length']} items, not {len(value)}"
        if "min_length" in rules and len(value) < rules["min_length"]:
            return f"must have at least {rules['min_length']} item(s), not {len(value)}"
    if isinstance(value, (list, tuple)) and any(k in rules for k in ("ge", "gt", "le", "lt")):
        return next((f"item {v!r}: {why}" for v in value if (why := _violation(v, rules))), None)
    for name, fails, text in (("ge", lambda v, r: v < r, ">= {}"), ("gt", lambda v, r: v <= r, "> {}"),
                              ("le", lambda v, r: v > r, "<= {}"), ("lt", lambda v, r: v >= r, "< {}")):
        if name in rules and isinstance(value, (int, float)) and fails(value, rules[name]):
            return "must be " + text.format(rules[name])
    if "choices" in rules and value not in rules["choices"]:
        return f"must be one of {', '.join(map(str, rules['choices']))}"
    if "pattern" in rules and not re.fullmatch(rules["pattern"], str(value)):
        return f"must match {rules['pattern']}"
    return None


def _nonfinite(key: str, value: Any) -> Optional[tuple]:
    """(dotted key, value) of the first non-finite float in ``value`` (lists and dicts searched)."""
    if isinstance(value, float) and not math.isfinite(value):
        return key, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    if isinstance(value, (list, tuple)) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
        return key, value
    for sub, v in items:
        found = _nonfinite(f"{key}.{sub}", v)
        if found:
            return found
    return None


def check_values(cfg: Any, schema: type, prefix: str = "") -> None:
    """Apply the rules of :func:`checked` fields of ``schema`` (nested schemas too) to ``cfg``."""
    for f in dataclasses.fields(schema):
        key, value = f"{prefix}{f.name}", cfg.get(f.name)
        nested = _nested_schema(f)
        if nested is not None and value is not None:
            check_values(value, nested, key + ".")
            continue
        rules = f.metadata.get("rules") or {}
        plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        found = _nonfinite(key, plain) if nested is None else None   # NaN passes every bound: refuse it here
        if found:
            raise ConfigError(f"bad config: {found[0]}={found[1]!r} must be finite (a number, not nan or inf)")
        if rules:
            why = _violation(plain, rules)
            if why:
                raise ConfigError(f"bad config: {key}={plain!r} {why}")


def _nested_schema(f: dataclasses.Field) -> Optional[type]:
    if f.default_factory is dataclasses.MISSING:
        return None
    sample = f.default_factory()
    return type(sample) if dataclasses.is_dataclass(sample) else None


DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


@dataclass
class TrainerConfig:
    # The run's length in optimisation steps, for tasks that count in steps (gan, nst, adv with
    # task.epochs=0); tasks that count in epochs (nas, adv) refuse it rather than ignore it.
    steps: Optional[int] = checked(None, ge=0)
    eval_every: int = checked(50, ge=0)  # steps between evaluations (0: only at the end)
    checkpoint_every: int = checked(50, ge=0)  # steps between 'last' checkpoints (0: only at the end)
    keep_every: int = checked(0, ge=0)  # also keep a numbered snapshot every this many steps (0: never)
    log_every: int = checked(10, ge=1)
    device: str = checked("auto", pattern=DEVICE_PATTERN)  # auto | cpu | cuda | cuda:<i>
    amp: bool = False                # autocast (bf16 on CPU, fp16 with a grad scaler on CUDA)
    # null: the task's measured choice on the run's device (Task.channels_last_on), settled when the run
    # starts and saved resolved in its config; true / false force it
    channels_last: Optional[bool] = None
    compile: bool = False
    deterministic: bool = False
    seed: int = checked(0, ge=0)
    resume: bool = True              # continue from <run_dir>/checkpoints/last.pt when present
    allow_config_change: bool = False
    num_threads: int = checked(0, ge=0)  # torch threads on CPU (0: leave torch's default)
    # C++ CPU kernels of the SaBN family: true builds them when no build exists; false does NOT turn
    # them off: a build on disk (make install makes one) is used unless SABN_CPU_KERNELS=0. The run
    # records which path it took (cpu_kernels in provenance.json and in each segment).
    cpu_kernels: bool = False
    progress: bool = True
    # Under DDP (torchrun): batch-norm statistics over all processes (sabn.convert_sync_norms), as
    # nn.SyncBatchNorm / BigGAN's cross-replica BN; false keeps them per process
    sync_norms: bool = False
    # A non-finite loss or weight: stop (exit 3, last.pt keeps the last finite state, no result file)
    # or skip_step (undo that step's update, count it in the metrics as nonfinite_skips)
    on_nonfinite: str = checked("stop", choices=("stop", "skip_step"))


@dataclass
class DataConfig:
    name: str = "cifar10"
    root: Optional[str] = None       # explicit data root; else $SABN_DATA_DIR, ./data, ../shared/data
    train_subset: int = checked(0, ge=0)  # first-k of a seeded permutation (0: all)
    test_subset: int = checked(0, ge=0)
    num_workers: int = checked(0, ge=0)  # data is preloaded as tensors; workers are rarely useful
    download: bool = True            # fetch CIFAR with torchvision when no copy is found (needs network)
    # Batch orders: "independent" (each (seed, iterator, epoch) its own permutation) or "legacy" (seed +
    # iterator + epoch: seeds and iterators replayed each other's orders one epoch apart), which the
    # presets of results made with it keep so that their commands reproduce them.
    order: str = checked("independent", choices=("independent", "legacy"))


@dataclass
class NormConfig:
    name: str = "bn"
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PathsConfig:
    run_dir: str = "runs/default"
    results_dir: str = "results"


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    jsonl: bool = True


@dataclass
class ResultsConfig:
    write: bool = False              # write results/<task>/<experiment>/seed<k>.json at the end
    skip_existing: bool = False      # a run whose result file exists is not run again (sweeps resume on a new machine)
    experiment: str = "default"
    scale: str = "smoke"  # smoke | cpu | paper


@dataclass
class AnalysisConfig:
    enabled: bool = False            # record per-condition gradient balance / diversity (sabn.analysis)
    every: int = checked(50, ge=1)  # steps between records
    window: int = checked(1, ge=1)  # steps accumulated per record (NAS split layers need > 1)


@dataclass
class RunConfig:
    task: Any = None
    norm: NormConfig = field(default_factory=NormConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


def _explain(error: OmegaConfBaseException, where: str, schema) -> ConfigError:
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    allowed = ""
    node = OmegaConf.structured(schema)
    parent = str(key).rsplit(".", 1)[0] if key and "." in str(key) else ""
    try:
        sub = OmegaConf.select(node, parent) if parent else node
        if isinstance(sub, DictConfig):
            allowed = f"; allowed keys{' under ' + parent if parent else ''}: {', '.join(sub.keys())}"
    except OmegaConfBaseException:
        pass
    first = str(error).splitlines()[0]
    return ConfigError(f"bad config in {where}: key '{key}': {first}{allowed}")


def validate(cfg: DictConfig, task_schema) -> DictConfig:
    """Merge ``cfg`` into the run and task schemas; unknown keys and wrong types raise ConfigError."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    task_section = plain.pop("task", None) or {}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), plain)
    except OmegaConfBaseException as error:
        raise _explain(error, "the run config", RunConfig) from None
    try:
        task_cfg = OmegaConf.merge(OmegaConf.structured(task_schema), task_section)
    except OmegaConfBaseException as error:
        raise _explain(error, "task", task_schema) from None
    merged.task = task_cfg
    OmegaConf.set_struct(merged, True)
    check_values(merged, RunConfig)
    check_values(merged.task, task_schema, "task.")
    return merged


# What runs made before a key existed did, where that differs from the key's default now: a
# checkpoint without the key resumes only under this value (it would otherwise change course silently).
BEFORE_KEY = {("data", "order"): "legacy"}


def schema_defaults(task_schema) -> Dict[str, Any]:
    """Every key's default (run and task schemas) as a plain dict, shaped like a resolved config; for
    the keys of ``BEFORE_KEY``, the behaviour of runs made before the key existed."""
    out = OmegaConf.to_container(OmegaConf.structured(RunConfig), resolve=False)
    out["task"] = OmegaConf.to_container(OmegaConf.structured(task_schema), resolve=False)
    for (group, key), value in BEFORE_KEY.items():
        out[group][key] = value
    return out


def check_length(cfg: DictConfig, unit: str, where: str) -> None:
    """Training length has one explicit unit per task: ``steps`` needs trainer.steps; an epoch-counted
    task refuses trainer.steps (it would be silently ignored). ``where`` names the epoch keys."""
    if unit == "steps" and cfg.trainer.steps is None:
        raise ConfigError(f"task {cfg.task.name} counts its length in steps: set trainer.steps")
    if unit == "epochs" and cfg.trainer.steps is not None:
        raise ConfigError(f"task {cfg.task.name} counts its length in epochs ({where}); trainer.steps="
                          f"{cfg.trainer.steps} would be ignored: remove it")


def check_subset(key: str, requested: int, available: int, what: str) -> None:
    """A subset larger than what it is drawn from is refused (it would silently mean 'all of it')."""
    if requested and requested > available:
        raise ConfigError(f"bad config: {key}={requested} exceeds the {available} {what}; "
                          f"use at most {available}, or 0 for all of them")
