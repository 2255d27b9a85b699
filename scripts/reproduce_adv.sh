#!/usr/bin/env bash
# Adversarial training: BN vs AuxBN vs SaAuxBN (scales: cpu, paper).
#   scripts/reproduce_adv.sh cpu      (NORMS="..." SEEDS="..." and Hydra overrides pass through)
exec "$(dirname "$0")/reproduce.sh" adv "$@"
