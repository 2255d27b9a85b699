#!/usr/bin/env bash
# NAS on NAS-Bench-201: DARTS with BN vs CCBN vs SaBN (scales: cpu, paper_cifar100, paper_imagenet16; add task.algorithm=gdas for GDAS).
#   scripts/reproduce_nas.sh cpu      (NORMS="..." SEEDS="..." and Hydra overrides pass through)
exec "$(dirname "$0")/reproduce.sh" nas "$@"
