"""The run directory: where it is, one process at a time (a lock), leftovers of killed saves, logs."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from .cache import atomic_write
from .provenance import REPO_ROOT


class RunDirError(RuntimeError):
    """A run directory that cannot be used: held by another process, not writable, torn logs."""


def resolve_run_dir(path: str) -> Path:
    """A relative ``paths.run_dir`` is taken from the repository root, whatever the working directory,
    so that every launch of one run (and Hydra's own log file) lands in the same place."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def usable_run_dir(path: Path) -> Path:
    """Create ``path`` (as Hydra would) or raise :class:`RunDirError` saying why it cannot be a run dir:
    a name component over the file system's 255-byte limit, a read-only or virtual file system, no
    permission, a file in the way."""
    long = [part for part in Path(path).parts if len(part.encode()) > 255]
    if long:
        raise RunDirError(f"paths.run_dir {path} has a folder name of {len(long[0].encode())} bytes "
                          f"('{long[0][:40]}...'); file systems allow 255: shorten paths.run_dir")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run directory {path} ({error.strerror}); choose a writable "
                          "paths.run_dir") from None
    return Path(path)


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` for the life of a run.

    The kernel drops the lock when the holder dies (kill -9 included), so it never goes stale. A
    second launch on a held run directory raises :class:`RunDirError` naming the holder's pid.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.handle: Optional[Any] = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise RunDirError(f"cannot use run directory {self.path.parent} ({error.strerror}); choose a "
                              "writable paths.run_dir") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirError(f"run directory {self.path.parent} is in use by process {holder} (it holds "
                              f"{self.path}); wait for it to finish, stop it, or use another paths.run_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def check_writable(folder: Path) -> None:
    """Fail at the start, not after hours of training, when checkpoints cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunDirError(f"cannot write checkpoints to {folder} ({error.strerror}); make it writable or "
                          "choose another paths.run_dir") from None


def remove_orphan_temporaries(folder: Path) -> List[Path]:
    """Delete ``.<name>.*.tmp`` files left by saves that were killed mid-write (only the lock holder
    calls this, so no live save is touched)."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """Rows of a JSON-lines log. A torn last line (a write cut by a kill) is dropped with a warning;
    a bad line anywhere else is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: dropped a torn last line (an interrupted write): {line[:80]!r}")
                break
            raise RunDirError(f"{path} line {number} is not JSON ({line[:80]!r}); the log is corrupt: "
                              f"move it aside to resume (the checkpoints are intact)") from None
    return rows


def trim_logs(run_dir: Path, start: int, names=("metrics", "analysis")) -> None:
    """Keep the log rows of the steps a resumed run keeps; a fresh start sets old logs aside."""
    for name in names:
        path = Path(run_dir) / f"{name}.jsonl"
        if not path.is_file():
            continue
        if start == 0:
            path.rename(Path(run_dir) / f"{name}.before-{int(time.time())}.jsonl")
            continue
        rows = [row for row in read_jsonl(path) if row.get("step", 0) <= start]
        text = "".join(json.dumps(row, default=float) + "\n" for row in rows)
        atomic_write(path, lambda handle: handle.write(text.encode()))
