#!/usr/bin/env bash
# Adversarial training table: BN vs AuxBN vs SaAuxBN over seeds, then the Markdown table.
#   scripts/reproduce_adv.sh cpu      # the CPU tier (~4 min a run on 2 cores, 9 runs)
#   scripts/reproduce_adv.sh paper    # the paper's protocol (GPU; days per run)
# SEEDS="0 1 2" and extra Hydra overrides after the scale are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-cpu}; shift || true
PY=${PYTHON:-.venv/bin/python}
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736}
for seed in ${SEEDS:-0 1 2}; do
  for norm in bn auxbn saauxbn; do
    "$PY" train.py experiment=adv/$scale norm=$norm trainer.seed=$seed trainer.progress=false "$@"
  done
done
"$PY" scripts/make_tables.py adv
