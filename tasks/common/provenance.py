"""Where a result came from: commit, versions, device, host, command line, times."""
from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

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


class RunHistory:
    """The segments of one run: one per process that trained it (the start, each resume, an extension
    to more steps), each with its commit, command, threads, steps and wall time. Every checkpoint holds
    the history up to its step, so a resumed run's result file names every commit that made it and its
    whole training time; work after the last checkpoint that a killed process lost is not counted (it
    was done again). A checkpoint from before histories were kept gives one unrecorded segment."""

    def __init__(self, prov: Dict[str, Any], start: int, prior: Optional[List[Dict[str, Any]]] = None) -> None:
        if prior is None:
            prior = [{"from_step": 0, "to_step": start, "recorded": False}] if start > 0 else []
        self.prior, self.prov, self.start = [dict(s) for s in prior], prov, start
        self.t0 = time.perf_counter()

    def upto(self, step: int) -> List[Dict[str, Any]]:
        """The history with this process's segment ending at ``step`` (now)."""
        prov = self.prov
        current = {"commit": prov["commit"], "dirty": prov["dirty"], "command": prov["command"],
                   "threads": prov["hardware"]["threads"], "cpu": prov["hardware"]["cpu"],
                   "device": prov["device"], "cpu_kernels": prov.get("cpu_kernels"),
                   "start_time": prov["start_time"], "end_time": now(),
                   "from_step": self.start, "to_step": step, "wall_time_s": round(time.perf_counter() - self.t0, 2)}
        return self.prior + [current]

    def environment_changes(self) -> List[str]:
        """What differs between the process that wrote the last checkpoint and this one, among the
        things bit-exact resume depends on: CPU model, thread count, device, C++ kernel path."""
        if not self.prior or self.prior[-1].get("recorded") is False:
            return []
        last, now_ = self.prior[-1], self.upto(self.start)[-1]
        return [f"{key} {last[key]!r} -> {now_[key]!r}" for key in ("cpu", "threads", "device", "cpu_kernels")
                if key in last and last[key] != now_[key]]

    @staticmethod
    def wall_time_s(segments: List[Dict[str, Any]]) -> float:
        """Total wall time of the recorded segments."""
        return round(sum(s.get("wall_time_s", 0.0) for s in segments), 2)
