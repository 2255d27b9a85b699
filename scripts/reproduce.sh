#!/usr/bin/env bash
# Run one task's comparison over norms and seeds, then build its table:
#   scripts/reproduce.sh <task> <scale> [extra Hydra overrides...]
# <scale> names a preset configs/experiment/<task>/<scale>.yaml (cpu, paper, paper_cifar100, ...).
# NORMS and SEEDS override the task's default norms (Task.sweep_norms) and seeds 0 1 2. Runs already finished resume to
# their end at once (same run directory), so an interrupted sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
task=$1; scale=${2:-cpu}; shift 2 || shift $#
PY=${PYTHON:-.venv/bin/python}
# The task's own default arms (Task.sweep_norms, else every norm it takes) unless NORMS says otherwise.
NORMS=${NORMS:-$("$PY" -c "from tasks.common.task import get_task; t = get_task('$task'); print(' '.join(t.sweep_norms or t.norms))")}
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736}
for seed in ${SEEDS:-0 1 2}; do
  for norm in $NORMS; do
    "$PY" train.py experiment=$task/$scale norm=$norm trainer.seed=$seed trainer.progress=false "$@"
  done
done
"$PY" scripts/make_tables.py "$task"
