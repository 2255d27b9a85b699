#!/usr/bin/env bash
# Conditional GANs: CCBN vs SaBN (scales: cpu, paper_sngan, paper_autogan, paper_biggan, paper_sngan128).
#   scripts/reproduce_gan.sh cpu      (NORMS="..." SEEDS="..." and Hydra overrides pass through)
exec "$(dirname "$0")/reproduce.sh" gan "$@"
