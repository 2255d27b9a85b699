#!/usr/bin/env bash
# One prepared GPU check (< 5 min on one GPU): every task's smoke preset on CUDA with AMP and
# channels_last, the DDP path when several GPUs are present, the layer benchmark and the step
# benchmark of the cpu-tier models. Writes a summary to ${OUT:-gpu_check}/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-gpu_check}; mkdir -p "$out"
summary="$out/summary.txt"; : > "$summary"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$summary" 2>&1
step() { local name=$1; shift; local t0=$(date +%s); if "$@" > "$out/$name.log" 2>&1; then r=ok; else r=FAILED; fi
         echo "$name: $r ($(( $(date +%s) - t0 )) s)" | tee -a "$summary"; }
for task in adv nas gan nst; do
  step "smoke_${task}_amp_cl" "$PY" train.py experiment=$task/smoke trainer.device=cuda trainer.amp=true \
       trainer.channels_last=true paths.run_dir="$out/runs/$task" trainer.resume=false
done
step smoke_adv_compile "$PY" train.py experiment=adv/smoke trainer.device=cuda trainer.compile=true \
     paths.run_dir="$out/runs/adv_compile" trainer.resume=false
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$ngpu" -gt 1 ]; then
  step ddp_adv torchrun --standalone --nproc_per_node=2 train.py experiment=adv/smoke trainer.device=cuda \
       paths.run_dir="$out/runs/ddp" trainer.resume=false
fi
step pytest_sabn_cuda "$PY" -m pytest -q tests/sabn
step bench_norms "$PY" scripts/bench_norms.py --device cuda --out "$out/norms_cuda.json"
step bench_step "$PY" scripts/bench_step.py --all --quick --scale cpu trainer.device=cuda
cat "$summary"
