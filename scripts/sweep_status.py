"""Where a sweep stands: one line per run directory, read from its files (no checkpoint is loaded).

    python scripts/sweep_status.py                    # every run under runs/
    python scripts/sweep_status.py runs/gan/long_*    # some of them (a folder of seeds or one seed)

For each run: the step reached of the steps its config asks for, the last evaluation, whether a
process holds it now (its pid, from the kernel's lock table, so a killed run never shows as running)
and whether it finished (a final evaluation at the length its config asks for). A run that is neither running nor finished resumes with its
own command (provenance.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.common.rundir import read_jsonl  # noqa: E402   (a torn last line, mid-write, is dropped)


def lock_holder(run_dir: Path, locks: Path = Path("/proc/locks")) -> Optional[int]:
    """The pid holding the run's flock (tasks.common.rundir.RunLock), or None; read from the kernel's
    lock table rather than by trying the lock, so looking never blocks a run that starts meanwhile."""
    lock = run_dir / ".lock"
    try:
        inode, table = os.stat(lock).st_ino, locks.read_text().splitlines()
    except OSError:
        return None
    for line in table:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    return None


def _steps(run_dir: Path) -> Optional[int]:
    """trainer.steps of the run's saved config (None where the task counts epochs instead)."""
    from omegaconf import OmegaConf
    try:
        return OmegaConf.load(run_dir / "config.yaml").trainer.get("steps")
    except Exception:   # a missing or half-written config: the run shows '?'
        return None


def status(run_dir: Path) -> Dict[str, Any]:
    """The state of one run directory, from its metrics, config, lock and provenance."""
    records = read_jsonl(run_dir / "metrics.jsonl")
    step = max((r["step"] for r in records), default=0)
    evals = [r for r in records if any(k.startswith(("eval/", "final/")) for k in r)]
    last_eval = None
    if evals:
        r = evals[-1]
        scores = {k: v for k, v in r.items() if k.startswith(("eval/", "final/")) and isinstance(v, (int, float))}
        last_eval = {"step": r["step"], **dict(list(scores.items())[:3])}
    prov = {}
    try:
        prov = json.loads((run_dir / "provenance.json").read_text())
    except (OSError, ValueError):
        pass
    steps = _steps(run_dir)
    # a final evaluation at the step the config asks for (an extended run keeps its earlier final record)
    finished = any(any(k.startswith("final/") for k in r) and (steps is None or r["step"] == steps) for r in records)
    return {"run": str(run_dir), "step": step, "steps": steps, "last_eval": last_eval,
            "pid": lock_holder(run_dir), "finished": finished, "command": prov.get("command")}


def _run_dirs(args: List[str]) -> List[Path]:
    roots = [Path(a) for a in args] or [ROOT / "runs"]
    return sorted({p.parent for root in roots if root.is_dir() for p in root.rglob("metrics.jsonl")})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="run directories or folders holding them (default: runs/)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    args = parser.parse_args(argv)
    runs = [status(d) for d in _run_dirs(args.paths)]
    if not runs:
        print(f"no run directories (folders with a metrics.jsonl) under {args.paths or [str(ROOT / 'runs')]}")
        return 1
    for r in runs:
        if args.json:
            print(json.dumps(r))
            continue
        state = f"running (pid {r['pid']})" if r["pid"] else ("finished" if r["finished"] else "stopped")
        scores = ", ".join(f"{k}={v:.4g}" for k, v in (r["last_eval"] or {}).items() if k != "step")
        at = f"last evaluation at {r['last_eval']['step']}: {scores}" if r["last_eval"] else "no evaluation yet"
        print(f"{r['run']}: step {r['step']} / {r['steps'] or '?'}, {state}; {at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
