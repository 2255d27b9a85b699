"""Checkpoints: one file per snapshot, written atomically, loaded with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .cache import atomic_write

FORMAT = "sabn-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, foreign, or from a different config."""


def save_checkpoint(payload: Dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` through a temporary file and an atomic rename.

    A crash mid-write leaves the previous file intact; nothing is ever half-written at ``path``.
    """
    path = Path(path)
    try:
        return atomic_write(path, lambda handle: torch.save({"format": FORMAT, **payload}, handle), durable=True)
    except OSError as error:
        import errno
        fix = {errno.ENOSPC: "Free disk space there", errno.EDQUOT: "Free space within your disk quota",
               errno.EFBIG: "The file system refuses a file this large: use another paths.run_dir",
               errno.EROFS: "The file system is read-only: use another paths.run_dir"}.get(
                   error.errno, "Make the folder writable")
        raise CheckpointError(f"cannot write checkpoint {path} ({error.strerror or error}); the previous "
                              f"checkpoint there is untouched. {fix} and rerun to resume") from None


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "the file is truncated, corrupt, or not a weights-only torch checkpoint. Delete it to "
            "start over, or point ckpt= at another file") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sabn checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, expected {FORMAT!r})")
    return payload


def tensor_digests(path: Path) -> Dict[str, str]:
    """sha256 of every module tensor of a checkpoint, by ``module.key``: equal digests, equal weights."""
    import hashlib
    modules = load_checkpoint(path)["modules"]
    return {f"{name}.{key}": hashlib.sha256(modules[name][key].cpu().contiguous().numpy().tobytes()).hexdigest()
            for name in sorted(modules) for key in sorted(modules[name])}


def find_resume(run_dir: Path) -> Optional[Path]:
    """The ``last.pt`` of a run directory, if there is one."""
    candidate = Path(run_dir) / "checkpoints" / "last.pt"
    return candidate if candidate.is_file() else None


# Keys that control how a run is driven, not what it computes: changing them on resume is allowed.
# (trainer.steps: a longer run continues; a shorter one is refused by the runner.)
RUN_CONTROL_KEYS = ("trainer.resume", "trainer.allow_config_change", "trainer.steps", "trainer.progress",
                    "trainer.log_every", "trainer.device", "trainer.num_threads", "trainer.checkpoint_every",
                    "trainer.keep_every", "trainer.on_nonfinite",
                    "results.write", "results.skip_existing", "paths", "logger")


def config_drift(saved: Dict[str, Any], current: Dict[str, Any], ignore=RUN_CONTROL_KEYS,
                 defaults: Optional[Dict[str, Any]] = None) -> list:
    """Dotted keys whose values differ between two resolved configs (ignoring run-control keys).

    A key the saved config lacks is no drift when the current value is that key's default in
    ``defaults``: options added to the schemas after a run started keep the run's behaviour then.
    """
    diffs = []
    missing = object()

    def walk(a, b, d, prefix):
        if any(prefix == i or prefix.startswith(i + ".") for i in ignore):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key, missing), b.get(key, missing), d.get(key, missing) if isinstance(d, dict) else missing,
                     f"{prefix}.{key}" if prefix else key)
        elif a is missing and d is not missing and b == d:
            return
        elif a != b:
            show = lambda v: "'<missing>'" if v is missing else repr(v)  # noqa: E731
            diffs.append(f"{prefix}: {show(a)} -> {show(b)}")

    walk(saved, current, defaults or {}, "")
    return diffs
