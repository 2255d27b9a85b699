"""Run one training command with another checkout of this repository and with this one, on this
machine, and say whether they end with the same numbers: every ``final/`` metric and every tensor of
``last.pt``. A refactor that claims "same behaviour" is checked with it:

    python scripts/compare_commits.py --old ../sabn-f53999d --out results/bench/same_numbers.json \\
        experiment=nas/cpu norm=bn trainer.seed=0

The old checkout runs with its own ``.venv`` when it has one (``--old-python`` overrides). Both runs
use the same thread count (``--threads``, default 2: the committed cpu-tier results used 2), since
CPU kernels reduce in a thread-dependent order, and the same SaBN path (``--cpu-kernels``, default off:
the two checkouts' C++ builds are keyed by their own sources, so auto mode could pick different
paths). Exit status 1 when anything differs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def final_metrics(run_dir: Path) -> Dict[str, object]:
    """The last row of metrics.jsonl that holds ``final/`` keys (the run's final evaluation)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    finals = [{k: v for k, v in r.items() if k.startswith("final/")} for r in rows]
    finals = [f for f in finals if f]
    if not finals:
        raise SystemExit(f"{run_dir}: no final/ metrics in metrics.jsonl (did the run finish?)")
    return finals[-1]


def run(python: str, checkout: Path, overrides: List[str], run_dir: Path, threads: int, kernels: bool) -> float:
    args = [python, "train.py", *overrides, f"paths.run_dir={run_dir}", "results.write=false",
            "logger.tensorboard=false", "trainer.resume=false", "trainer.progress=false",
            f"trainer.num_threads={threads}"]
    start = time.perf_counter()
    env = {**os.environ, "SABN_CPU_KERNELS": "1" if kernels else "0"}
    done = subprocess.run(args, cwd=checkout, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {' '.join(args[1:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _commit(checkout: Path) -> str:
    """The short commit, with "-dirty" when tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")
    return (git("rev-parse", "--short=10", "HEAD") or "unknown") + ("-dirty" if dirty else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="another checkout of this repository")
    parser.add_argument("--old-python", help="its Python (default: <old>/.venv/bin/python, else this one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-kernels", action="store_true", help="both runs on the C++ kernels")
    parser.add_argument("--out", type=Path, help="append the comparison to this JSON list")
    parser.add_argument("--new-only", nargs="*", default=[], metavar="OVERRIDE",
                        help="overrides for this checkout only (keys the old one lacks, e.g. data.order=legacy)")
    parser.add_argument("--note", default="", help="a remark kept with the record (e.g. what else ran)")
    parser.add_argument("overrides", nargs="+", help="train.py overrides, e.g. experiment=adv/cpu norm=bn")
    args = parser.parse_args(argv)
    old = args.old.resolve()
    old_python = args.old_python or (str(old / ".venv/bin/python") if (old / ".venv/bin/python").is_file()
                                     else sys.executable)
    commits = {"old": _commit(old), "new": _commit(ROOT)}   # before the runs: the code they run
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        walls = {}
        for label, python, checkout, extra in (("old", old_python, old, []),
                                               ("new", sys.executable, ROOT, args.new_only)):
            walls[label] = run(python, checkout, [*args.overrides, *extra], Path(tmp) / label, args.threads,
                               args.cpu_kernels)
        metrics = {label: final_metrics(Path(tmp) / label) for label in ("old", "new")}
        from tasks.common.checkpoint import tensor_digests
        tensors = {label: tensor_digests(Path(tmp) / label / "checkpoints" / "last.pt") for label in ("old", "new")}
    differing = sorted(k for k in metrics["old"].keys() | metrics["new"].keys()
                       if metrics["old"].get(k) != metrics["new"].get(k))
    tensor_diff = sorted(k for k in tensors["old"].keys() | tensors["new"].keys()
                         if tensors["old"].get(k) != tensors["new"].get(k))
    from tasks.common.provenance import hardware, now
    record = {"command": "train.py " + " ".join(args.overrides), "new_only": args.new_only, "threads": args.threads,
              "cpu_kernels": args.cpu_kernels,
              "old_commit": commits["old"], "new_commit": commits["new"],
              "same_metrics": not differing, "same_tensors": not tensor_diff,
              "metrics": metrics["new"], "differing_metrics": {k: [metrics["old"].get(k), metrics["new"].get(k)]
                                                               for k in differing},
              "tensors_compared": len(tensors["new"]), "differing_tensors": tensor_diff[:20],
              "wall_time_s": {k: round(v, 1) for k, v in walls.items()}, "hardware": {**hardware(), "threads": args.threads}, "date": now(),
              **({"note": args.note} if args.note else {})}
    print(json.dumps(record, indent=2))
    if args.out:
        existing = json.loads(args.out.read_text()) if args.out.is_file() else []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([*existing, record], indent=2) + "\n")
    return 0 if not differing and not tensor_diff else 1


if __name__ == "__main__":
    sys.exit(main())
