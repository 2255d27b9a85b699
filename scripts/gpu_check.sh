#!/usr/bin/env bash
# One prepared GPU check (< 8 min on one GPU), most important first: the Triton tests on CUDA (the
# Triton kernels compiled for the GPU against the reference), the layer benchmark (Triton default vs
# the ATen composition vs compiled, ratios to nn.BatchNorm2d), every task's smoke preset on CUDA with
# AMP and channels_last, a compiled run, the DDP path when several GPUs are present, a 100-step GAN run
# end to end and the step benchmark of the paper-size models with AMP bf16 + channels_last.
#   OUT=gpu_check scripts/gpu_check.sh
# Writes $OUT/summary.txt, gpu_norms.json, step_*.json and logs.tgz (commit the json under results/bench/).
# Environment:
#   SABN_DATA_DIR   data root (the mirror's layout: cifar10/, nasbench201/, style_transfer/)
#   GAN_ARGS        extra overrides for the GAN runs, e.g. task.fid.enabled=false where the Inception
#                   weights are not on the machine
#   NST_ARGS        extra overrides for the style-transfer run, e.g. task.encoder_path=models/vgg_normalised.pth
#   STEP_TIMEOUT    seconds any one step may take (default 240); BUDGET: seconds for the whole check (450)
#   SKIP            step names to leave out (e.g. the smoke runs when only the benchmarks are wanted)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-gpu_check}; mkdir -p "$out/logs"
summary="$out/summary.txt"; : > "$summary"
start=$(date +%s); budget=${BUDGET:-450}
read -r -a gan_args <<< "${GAN_ARGS:-}"
read -r -a nst_args <<< "${NST_ARGS:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$summary" 2>&1
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$summary" 2>&1
step() {
  local name=$1; shift
  case " ${SKIP:-} " in *" $name "*) echo "$name: skipped (SKIP)" | tee -a "$summary"; return;; esac
  local left=$(( budget - ($(date +%s) - start) ))
  if [ "$left" -lt 20 ]; then echo "$name: skipped (budget spent)" | tee -a "$summary"; return; fi
  local limit=${STEP_TIMEOUT:-240}; [ "$left" -lt "$limit" ] && limit=$left
  local t0=$(date +%s) r
  if timeout "$limit" "$@" > "$out/logs/$name.log" 2>&1; then r=ok; else r="FAILED (rc $?)"; fi
  echo "$name: $r ($(( $(date +%s) - t0 )) s)" | tee -a "$summary"
  [ "$r" = ok ] || { echo "--- last lines of $name.log"; tail -n 15 "$out/logs/$name.log"; }
}
smoke() {  # task, name, overrides...
  local task=$1 name=$2; shift 2
  step "$name" "$PY" train.py experiment="$task"/smoke trainer.device=cuda paths.run_dir="$out/runs/$name" \
       trainer.resume=false logger.tensorboard=false "$@"
}
step pytest_triton_cuda "$PY" -m pytest -q -p no:cacheprovider tests/sabn/test_triton.py -k cuda
step bench_norms "$PY" scripts/bench_norms.py --device cuda --quick --out "$out/gpu_norms.json"
smoke adv smoke_adv_amp_cl trainer.amp=true trainer.channels_last=true
smoke nas smoke_nas_amp_cl trainer.amp=true trainer.channels_last=true
smoke gan smoke_gan_amp_cl trainer.amp=true trainer.channels_last=true "${gan_args[@]}"
smoke nst smoke_nst_amp_cl trainer.amp=true trainer.channels_last=true "${nst_args[@]}"
smoke adv smoke_adv_compile trainer.compile=true
ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$ngpu" -gt 1 ]; then
  step ddp_adv torchrun --standalone --nproc_per_node=2 train.py experiment=adv/smoke trainer.device=cuda \
       paths.run_dir="$out/runs/ddp" trainer.resume=false logger.tensorboard=false
fi
smoke gan gan_100_steps trainer.steps=100 trainer.eval_every=0 trainer.amp=true trainer.channels_last=true \
      "${gan_args[@]}"
step bench_step "$PY" scripts/bench_step.py --all --quick --scale paper trainer.device=cuda trainer.amp=true \
     trainer.channels_last=true
cp results/bench/step_*.json "$out/" 2>/dev/null
echo "total: $(( $(date +%s) - start )) s" | tee -a "$summary"
tar czf "$out/logs.tgz" -C "$out" logs 2>/dev/null   # the runs' checkpoints stay behind (too large)
rm -rf "$out/logs" "$out/runs"
