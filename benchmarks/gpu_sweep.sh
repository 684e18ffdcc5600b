#!/usr/bin/env bash
# The GPU sweep of issue 14 item 3, as one short script (GPU time is scarce: about 6-8 minutes on an
# H200-class card). Writes markdown tables and JSON rows under ${OUT:-benchmarks/out}.
#   bash benchmarks/gpu_sweep.sh            # everything
#   STEPS=5 RES="256 1024" bash benchmarks/gpu_sweep.sh
# Rows: bf16 autocast on/off, channels-last on/off, torch.compile of the synthesis networks on/off,
# for "k=8 re-selected every 10 steps" (the 300-steps-in-30-s target) and "all layers"; then the
# peak memory per image. Seconds for 300 steps at 1024 px = 300 x the s/step of that row.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-benchmarks/out}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
RES=${RES:-"256 512 1024"}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
run() {  # name, extra flags...
  local name=$1; shift
  echo "== $name" | tee -a "$OUT/sweep.md"
  timeout 240 $PY benchmarks/bench_train.py --device cuda --resolutions $RES --steps "$STEPS" --warmup "$WARMUP" \
    --skip-research --variants interval all --json "$OUT/$name.json" "$@" 2>&1 | tee -a "$OUT/sweep.md"
}
run bf16                                   # the defaults
run fp32 --no-mixed-precision
run bf16_channels_last --channels-last
run bf16_compile --compile
run bf16_channels_last_compile --channels-last --compile
run bf16_flops --flops --steps 1 --warmup 1 --variants select interval all
timeout 180 $PY benchmarks/bench_memory.py --device cuda --resolutions $RES --batch 2 --unchunked --with-checkpointing \
  --json "$OUT/memory.json" 2>&1 | tee "$OUT/memory.md"
