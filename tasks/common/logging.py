"""Metrics to a JSON-lines file and TensorBoard, rank 0 only."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, Optional

from torch import Tensor

from .nonfinite import sanitize


def run_log() -> logging.Logger:
    """The project's log of a run, written to Hydra's ``train.log`` in the run dir (its file handlers,
    not its console: the terminal keeps the progress bar and the final JSON). Outside a Hydra app
    (tests, scripts) it has no handler and writes nothing."""
    log = logging.getLogger("sabn.run")
    if not getattr(log, "_sabn_configured", False):
        log.propagate = False
        log.setLevel(logging.INFO)
        log._sabn_configured = True
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        if handler not in log.handlers:
            log.addHandler(handler)
    for handler in [h for h in log.handlers if h not in files]:   # a previous job's file (multirun)
        log.removeHandler(handler)
    return log


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class MetricsLogger:
    """Writes ``metrics.jsonl`` in the run directory and TensorBoard scalars and images."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but the library runs without it
                self.writer = None

    def log(self, step: int, metrics: Dict[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        row = sanitize({"step": step, **{f"{prefix}{k}": v for k, v in metrics.items()}})
        with open(self.path, "a") as handle:   # strict JSON: a non-finite value is written as null
            handle.write(json.dumps(row, default=float, allow_nan=False) + "\n")
        run_log().info("step %d %s", step, " ".join(f"{prefix}{k}={_short(v)}" for k, v in metrics.items()
                                                      if isinstance(v, (int, float, str))))
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}{key}", value, step)

    def record(self, name: str, step: int, payload: Dict[str, Any]) -> None:
        """A structured record (not scalars) to ``<run_dir>/<name>.jsonl``, e.g. the per-layer gradient
        analysis; a resumed run trims it with the metrics (``rundir.trim_logs``)."""
        if not self.enabled:
            return
        with open(self.path.parent / f"{name}.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **payload}, default=float) + "\n")

    def tensorboard_only(self, step: int, scalars: Dict[str, float]) -> None:
        """Scalars for TensorBoard alone (many per step, e.g. softmax(alpha) of every edge and op)."""
        if self.enabled and self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: Dict[str, Any], metrics: Dict[str, Any]) -> None:
        """The run's arm (norm, seed, the keys its variant sets) with its final metrics, for TensorBoard's
        HParams tab: runs then filter and compare by arm."""
        if not (self.enabled and self.writer is not None):
            return
        values = {f"hparam/{k}": float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        plain = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        self.writer.add_hparams(plain, values, run_name=".")

    def image(self, tag: str, grid: Tensor, step: int) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, grid, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: Path, prefix: Optional[str] = None):
    """The rows of a run's ``metrics.jsonl`` (optionally only those with a key starting with prefix)."""
    from .rundir import read_jsonl
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    if prefix:
        rows = [r for r in rows if any(k.startswith(prefix) for k in r)]
    return rows
