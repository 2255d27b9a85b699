"""Where a result came from: commit, versions, device, host, command line, times."""
from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def hardware() -> Dict[str, Any]:
    """The machine, in words and numbers, for benchmark and result files."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(device: str = "cpu") -> Dict[str, Any]:
    """Commit, dirty flag, versions, device, host and command line of this process; on a CPU, whether
    the SaBN family ran on the C++ kernels (numbers agree with the Python path to 1e-5, not bit for bit)."""
    commit = _git("rev-parse", "HEAD")
    extra = {}
    if device == "cpu":
        import sabn
        extra["cpu_kernels"] = sabn.cpu_kernels_status()["active"]
    return {
        "commit": commit or "unknown",
        # Whether the code differs from the commit; results/ is where runs and benchmarks write.
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")) if commit else None,
        "host": socket.gethostname(),
        "device": device,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": hardware(),
        "start_time": now(),
        **extra,
    }
