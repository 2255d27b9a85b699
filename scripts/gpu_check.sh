#!/usr/bin/env bash
# One prepared GPU check (< 8 min on one GPU): every task's smoke preset on CUDA with AMP and
# channels_last, the DDP path when several GPUs are present, the library tests on CUDA (the Triton
# kernels compiled for the GPU against the reference), the layer benchmark (Triton default vs the
# ATen composition vs compiled, ratios to nn.BatchNorm2d), a 100-step GAN run end to end and the
# step benchmark of the paper-size models with AMP bf16 + channels_last. Writes
# ${OUT:-gpu_check}/summary.txt and gpu_norms.json / gpu_step.json there (commit them under results/bench/).
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
step bench_norms "$PY" scripts/bench_norms.py --device cuda --quick --out "$out/gpu_norms.json"
step gan_100_steps "$PY" train.py experiment=gan/smoke trainer.steps=100 trainer.eval_every=0 trainer.device=cuda \
     trainer.amp=true trainer.channels_last=true paths.run_dir="$out/runs/gan100" trainer.resume=false
step bench_step "$PY" scripts/bench_step.py --all --quick --scale paper trainer.device=cuda trainer.amp=true \
     trainer.channels_last=true
cp results/bench/step_*.json "$out/" 2>/dev/null
cat "$summary"
