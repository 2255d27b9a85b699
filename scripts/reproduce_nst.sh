#!/usr/bin/env bash
# Style transfer: AdaIN vs SaAdaIN (scales: cpu, paper).
#   scripts/reproduce_nst.sh cpu      (NORMS="..." SEEDS="..." and Hydra overrides pass through)
exec "$(dirname "$0")/reproduce.sh" nst "$@"
