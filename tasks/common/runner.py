"""The one training loop: setup, resume, steps, evaluation, checkpoints, signals, results."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from . import checkpoint as ckpt
from . import nonfinite
from .distributed import broadcast_buffers, cleanup, init_distributed, unwrap
from .config import schema_defaults
from .logging import MetricsLogger, read_metrics, run_log
from .rundir import RunLock, check_writable, read_jsonl, remove_orphan_temporaries, resolve_run_dir, trim_logs
from .provenance import RunHistory, now, provenance
from .report_spec import deviations
from .results import keep_image, result_path, write_result
from .seeding import isolated_rng, rng_state, seed_everything, set_rng_state
from .task import RunContext, Task, TaskState, get_task


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:<i>``; a device this machine lacks is an error."""
    import re
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(name)):
        raise ValueError(f"device '{name}' is not one of auto, cpu, cuda, cuda:<i>, mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' was asked for but CUDA is not available here; use cpu (or auto)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but MPS is not available here; use cpu (or auto)")
    return torch.device(name)


def run_directory(cfg: DictConfig) -> Path:
    return resolve_run_dir(cfg.paths.run_dir)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes the step, checkpoints and exits cleanly."""

    def __init__(self) -> None:
        self.raised: Optional[str] = None
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, _frame) -> None:
        self.raised = signal.Signals(signum).name
        self.signum = int(signum)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _payload(state: TaskState, ctx: RunContext, step: int, best: Dict[str, Any], history: RunHistory) -> Dict[str, Any]:
    return {
        "step": step,
        "segments": history.upto(step),
        "modules": {k: unwrap(m).state_dict() for k, m in state.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in state.schedulers.items()},
        "iterators": {k: i.state_dict() for k, i in state.iterators.items()},
        "extra": state.extra.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else {},
        "rng": rng_state(),
        "nonfinite_skips": ctx.nonfinite_skips,
        "best": best,
        "config": OmegaConf.to_container(ctx.cfg, resolve=True),
    }


def _restore(state: TaskState, ctx: RunContext, payload: Dict[str, Any]) -> None:
    for group, target in (("modules", state.modules), ("optimizers", state.optimizers),
                          ("schedulers", state.schedulers), ("iterators", state.iterators)):
        missing = set(target) - set(payload[group])
        if missing:
            raise ckpt.CheckpointError(f"checkpoint lacks {group} {sorted(missing)}; it was written by another task or model")
        for name, obj in target.items():
            (unwrap(obj) if group == "modules" else obj).load_state_dict(payload[group][name])
    try:
        state.extra.load_state_dict(payload["extra"])
    except KeyError as error:
        raise ckpt.CheckpointError(f"checkpoint's extra values do not fit this task ({error.args[0]}); "
                                   "it was written by another task or version") from None
    if ctx.scaler is not None and payload.get("scaler"):
        ctx.scaler.load_state_dict(payload["scaler"])
    set_rng_state(payload["rng"])
    ctx.nonfinite_skips = int(payload.get("nonfinite_skips", 0))


def _improved(score: Optional[float], best: Dict[str, Any], mode: str) -> bool:
    if score is None or not math.isfinite(float(score)):   # a NaN score never selects best.pt
        return False
    if best.get("score") is None:
        return True
    return score > best["score"] if mode == "max" else score < best["score"]


def _inject_fault(done: int) -> None:
    """Fault injection for the reliability tests: SABN_FAULT=kill@<step> (SIGKILL, nothing saved) or
    term@<step> (SIGTERM, the normal interrupt path) after training step <step> completes."""
    spec = os.environ.get("SABN_FAULT", "")
    if "@" not in spec:
        return
    kind, at = spec.split("@", 1)
    if int(at) == done:
        os.kill(os.getpid(), {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[kind])


def prepare_device(cfg: DictConfig, device_name: Optional[str] = None) -> torch.device:
    """The device (``device_name`` or trainer.device), torch's thread count and the C++ CPU kernels as
    the config asks: the part of the setup that training and evaluation share."""
    device = resolve_device(device_name or cfg.trainer.device)
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    if device.type == "cpu":
        import sabn
        if cfg.trainer.cpu_kernels:
            sabn.enable_cpu_kernels()   # warns and keeps the Python path when it cannot be built
        sabn.resolve_cpu_kernels()      # settled now, not at the first step: provenance records it
    return device


def _setup(cfg: DictConfig, task: Task):
    """Device, threads, kernels, distributed state, seeds, logger and the task's state."""
    task.check_config(cfg)
    device = prepare_device(cfg)
    info = init_distributed(str(device))
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
    run_dir = run_directory(cfg)
    if info.is_main:
        check_writable(run_dir / "checkpoints")
        remove_orphan_temporaries(run_dir / "checkpoints")
    seed_everything(cfg.trainer.seed, info.rank, cfg.trainer.deterministic)
    logger = MetricsLogger(run_dir, enabled=info.is_main, tensorboard=cfg.logger.tensorboard)
    scaler = torch.amp.GradScaler("cuda") if cfg.trainer.amp and device.type == "cuda" else None
    ctx = RunContext(cfg, device, info, logger, run_dir, scaler)
    return ctx, task.build(ctx)


def _resume(cfg: DictConfig, task: Task, ctx: RunContext, state: TaskState):
    """Restore ``last.pt`` when there is one; returns (start step, best, total steps, the run's
    segments so far or None)."""
    start, best, prior = 0, {"score": None, "step": None}, None
    resume_from = ckpt.find_resume(ctx.run_dir) if cfg.trainer.resume else None
    if resume_from is not None:
        payload = ckpt.load_checkpoint(resume_from, map_location=ctx.device)
        drift = ckpt.config_drift(payload["config"], OmegaConf.to_container(cfg, resolve=True),
                                  defaults=schema_defaults(task.schema))
        if drift and not cfg.trainer.allow_config_change:
            raise ckpt.CheckpointError(
                f"{resume_from} was written with a different config:\n  " + "\n  ".join(drift) +
                "\nUse another paths.run_dir, trainer.resume=false to start over, or "
                "trainer.allow_config_change=true to resume anyway")
        _restore(state, ctx, payload)
        start, best, prior = payload["step"], payload["best"], payload.get("segments")
    steps = task.total_steps(ctx, state)
    if start > steps:
        raise ckpt.CheckpointError(
            f"{resume_from} is at step {start}, past the {steps} steps this config asks for; a run cannot be "
            "shortened after the fact. Evaluate that checkpoint (evaluate.py), keep snapshots with "
            "trainer.keep_every, or start a shorter run in another paths.run_dir")
    return start, best, steps, prior


def train(cfg: DictConfig, task: Optional[Task] = None) -> Dict[str, Any]:
    """Run (or resume) the training described by a validated config; returns the final metrics.

    The run directory is locked for the whole run: a second process on it fails at once.
    """
    task = task or get_task(cfg.task.name)
    if cfg.results.write and cfg.results.skip_existing:
        done = result_path(cfg.paths.results_dir, task.name, cfg.results.experiment, cfg.trainer.seed)
        if done.is_file():
            return {"status": f"skipped: {done} exists (results.skip_existing=true)", "result_file": str(done)}
    run_dir = run_directory(cfg)
    rank = int(os.environ.get("RANK", "0"))
    with RunLock(run_dir) if rank == 0 else contextlib.nullcontext():
        return _train_locked(cfg, task)


def _finished(cfg: DictConfig, task: Task, ctx: RunContext, steps: int, best: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The result of a run that already ended at ``steps`` (its final evaluation is in metrics.jsonl):
    rerunning its command trains and evaluates nothing, rewrites nothing, and says where the result is."""
    final = [r for r in read_metrics(ctx.run_dir) if r.get("step") == steps and any(k.startswith("final/") for k in r)]
    if not final:
        return None
    out = {"status": "completed", "already_finished": True,
           "note": f"finished earlier at step {steps}: nothing to do (raise trainer.steps to continue it)",
           "metrics": {k[len("final/"):]: v for k, v in final[-1].items() if k.startswith("final/")},
           "best": best, "run_dir": str(ctx.run_dir)}
    path = result_path(cfg.paths.results_dir, task.name, cfg.results.experiment, cfg.trainer.seed)
    if cfg.results.write and path.is_file():
        out["result_file"] = str(path)
    ctx.logger.close()
    cleanup()
    return out


def _train_locked(cfg: DictConfig, task: Task) -> Dict[str, Any]:
    ctx, state = _setup(cfg, task)
    start, best, steps, prior = _resume(cfg, task, ctx, state)
    if start == steps and start > 0:
        done = _finished(cfg, task, ctx, steps, best)
        if done is not None:
            return done
    prov = provenance(str(ctx.device))
    run_log().info("%s %s at step %d of %d in %s (commit %s)", "resuming" if start else "starting",
                   cfg.results.experiment, start, steps, ctx.run_dir, prov["commit"][:10])
    history = RunHistory(prov, start, prior)
    changes = history.environment_changes()
    if changes and ctx.dist.is_main:   # the continuation is valid, but not the bits of an uninterrupted run
        warnings.warn(f"resuming {ctx.run_dir} at step {start} in another environment ({'; '.join(changes)}): the "
                      "run continues correctly but will not match an uninterrupted run bit for bit, which holds only "
                      "on the same CPU model, thread count, device and kernel path; each segment is recorded in "
                      "provenance.json", stacklevel=2)
    if ctx.dist.is_main:
        trim_logs(ctx.run_dir, start)
        (ctx.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (ctx.run_dir / "provenance.json").write_text(json.dumps(
            {**prov, "resumed_from_step": start, "segments": history.upto(start)}, indent=2))
    status, signum, best = _fit(cfg, task, ctx, state, start, steps, best, history)
    if status != "completed":
        ctx.logger.close()
        cleanup()
        return {"status": status, "signal": signum}
    return _finish(cfg, task, ctx, state, steps, best, start, prov, history)


def _save(ctx: RunContext, state: TaskState, name: str, at: int, best: Dict[str, Any], history: RunHistory) -> None:
    if ctx.dist.is_main:
        payload = _payload(state, ctx, at, best, history)
        nonfinite.check_payload(payload, f"not writing checkpoints/{name}")   # the previous file stays
        ckpt.save_checkpoint(payload, ctx.run_dir / "checkpoints" / name)


def _fit(cfg: DictConfig, task: Task, ctx: RunContext, state: TaskState, start: int, steps: int,
         best: Dict[str, Any], history: RunHistory):
    """The training loop from ``start`` to ``steps``: logging, evaluations, checkpoints and a clean stop
    on SIGTERM / SIGINT. Returns (status, signal number, best)."""
    logger = ctx.logger
    eval_every = task.eval_interval(ctx, state)
    status, signum = "completed", 0
    bar = tqdm(total=steps, initial=start, desc=f"{task.name}/{cfg.norm.name}", dynamic_ncols=True,
               disable=not (cfg.trainer.progress and ctx.dist.is_main))
    mode = cfg.trainer.on_nonfinite
    guard = nonfinite.StepGuard(state) if mode == "skip_step" else None
    with _StopFlag() as stop:
        for step in range(start, steps):
            if guard is not None:
                guard.snapshot()
            metrics = task.train_step(state, step, ctx)
            done = step + 1
            if nonfinite.check_step(metrics, state, done, mode, guard):
                ctx.nonfinite_skips += 1
            if guard is not None:
                metrics["nonfinite_skips"] = ctx.nonfinite_skips
            bar.update(1)
            _inject_fault(done)
            if done % max(cfg.trainer.log_every, 1) == 0 or done == steps:
                metrics = {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
                logger.log(done, metrics, "train/")
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(metrics.items())[:3]})
            if eval_every and done % eval_every == 0 and done < steps:
                broadcast_buffers(state.modules.values(), ctx.dist)
                with isolated_rng():
                    scores = task.evaluate(state, done, ctx)
                logger.log(done, scores, "eval/")
                if _improved(scores.get(task.score_key), best, task.score_mode):
                    best = {"score": scores[task.score_key], "step": done}
                    _save(ctx, state, "best.pt", done, best, history)
            if cfg.trainer.keep_every and done % cfg.trainer.keep_every == 0:
                _save(ctx, state, f"step{done:07d}.pt", done, best, history)
            # The last step is saved before the final evaluation, so a failing evaluation loses nothing.
            if stop.raised or done == steps or (cfg.trainer.checkpoint_every and done % cfg.trainer.checkpoint_every == 0):
                _save(ctx, state, "last.pt", done, best, history)
            if stop.raised:
                status, signum = f"interrupted by {stop.raised} after step {done}; rerun the same command to resume", stop.signum
                break
    bar.close()
    return status, signum, best


def run_hparams(cfg: DictConfig) -> Dict[str, Any]:
    """The arm of a run for TensorBoard's HParams tab: task, experiment, norm, seed and every key its
    command sets on top of its preset (the run variant, tasks/common/variant.py)."""
    from .variant import run_variant
    out: Dict[str, Any] = {"task": cfg.task.name, "experiment": cfg.results.experiment, "norm": cfg.norm.name,
                           "seed": cfg.trainer.seed}
    for item in run_variant().lstrip("+").split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key] = value
    return out


def _finish(cfg: DictConfig, task: Task, ctx: RunContext, state: TaskState, steps: int, best: Dict[str, Any],
            start: int, prov: Dict[str, Any], history: RunHistory) -> Dict[str, Any]:
    """The final evaluation, the last checkpoints and the result file (wall time: every recorded segment
    of the run, from each loop's start to its last kept checkpoint, the final evaluation included)."""
    broadcast_buffers(state.modules.values(), ctx.dist)
    with isolated_rng():
        final = task.evaluate(state, steps, ctx, final=True)
    ctx.logger.log(steps, final, "final/")
    ctx.logger.hparams(run_hparams(cfg), final)
    bad = nonfinite.first_nonfinite((k, v) for k, v in final.items())
    if bad:
        raise nonfinite.NonFiniteError(f"the final evaluation at step {steps} gave a non-finite {bad[0]} ({bad[1]}); "
                                       "no result file is written (checkpoints/last.pt holds the weights)")
    if _improved(final.get(task.score_key), best, task.score_mode):
        best = {"score": final[task.score_key], "step": steps}
        _save(ctx, state, "best.pt", steps, best, history)
    segments = history.upto(steps)
    _save(ctx, state, "last.pt", steps, best, history)
    wall = RunHistory.wall_time_s(segments)
    out = {"status": "completed", "metrics": final, "best": best, "wall_time_s": wall,
           "run_dir": str(ctx.run_dir)}
    if ctx.dist.is_main and cfg.results.write:
        path = result_path(cfg.paths.results_dir, task.name, cfg.results.experiment, cfg.trainer.seed)
        write_result(path, {
            "task": task.name, "experiment": cfg.results.experiment, "scale": cfg.results.scale,
            "norm": cfg.norm.name, "seed": cfg.trainer.seed, "metrics": final, "best": best,
            "protocol": task.protocol(ctx, state), "deviations": deviations(task.name, cfg.results.scale),
            "provenance": {**prov, "end_time": now()},
            "wall_time_s": wall, "resumed_from_step": start, "segments": segments, "curves": read_metrics(ctx.run_dir),
            "analysis": read_jsonl(ctx.run_dir / "analysis.jsonl"),
            "config": OmegaConf.to_container(cfg, resolve=True)})
        out["result_file"] = str(path)
        for name, image in task.result_images(ctx, steps).items():
            if image.is_file():
                keep_image(image, path, name, cfg.results.experiment, cfg.trainer.seed)
    ctx.logger.close()
    cleanup()
    return out
