"""Derived files in the cache directory (decoded images, converted weights, reference statistics).

A cache entry is only ever a copy of something that can be rebuilt, so a corrupt one (a killed
write, a disk error, a stray file) is removed with a warning and rebuilt, never fatal. Entries are
written through a unique temporary file and an atomic rename; keys describe their sources' content.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch


def load_entry(path: Path, loader: Optional[Callable[[Path], Any]] = None) -> Optional[Any]:
    """The cached object at ``path``; None when absent or corrupt (then the file is removed)."""
    path = Path(path)
    if not path.is_file():
        return None
    loader = loader or (lambda p: torch.load(p, map_location="cpu", weights_only=True))
    try:
        return loader(path)
    except Exception as error:  # truncated zip, bad pickle opcode, short read: all mean "rebuild"
        warnings.warn(f"cache entry {path} is unreadable ({type(error).__name__}: "
                      f"{str(error).splitlines()[0][:120] if str(error) else ''}); rebuilding it")
        try:
            path.unlink()
        except OSError:
            pass
        return None


@contextlib.contextmanager
def building(path: Path):
    """Hold a blocking ``flock`` on ``<path>.lock`` while an entry is looked up and, if missing, built:
    runs started together (the arms of a sweep) build an expensive entry once; the others wait, then
    load it. The kernel drops the lock when its holder dies, so a killed build never blocks anyone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_write(path: Path, write: Callable[[Any], None], durable: bool = False) -> Path:
    """``write(handle)`` into a unique temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the new one, never half of one. ``durable`` fsyncs before the rename
    (checkpoints). Raises OSError when the folder cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_entry(path: Path, obj: Any, writer: Optional[Callable[[Any, Any], None]] = None) -> Path:
    """Write ``obj`` to ``path`` atomically (``writer(obj, handle)``; default ``torch.save``)."""
    return atomic_write(path, lambda handle: (writer or torch.save)(obj, handle))


def save_npz(stats: dict, handle) -> None:
    np.savez(handle, **stats)


def load_npz(path: Path) -> dict:
    with np.load(path) as blob:
        return {k: blob[k] for k in blob.files}


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """Content key of a (possibly large) file: size, mtime and a hash of its first and last MiB.

    A different file under the same name (another archive, a re-download) gets another key.
    """
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha1(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        if stat.st_size > chunk:
            handle.seek(max(stat.st_size - chunk, chunk))
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:12]


def tree_fingerprint(root: Path, files: Iterable[Path]) -> str:
    """Content key of a folder tree: each file's relative path, size and mtime."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]
