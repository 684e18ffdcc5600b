#!/usr/bin/env bash
# The GPU sweep of issue 14 item 3, as one short script that ends inside one device call (its
# BUDGET, 540 s by default; each run is cut to what is left, the most important runs first).
# Prepare here with `bash benchmarks/gpu_wheels.sh`, then run it there with .whl carried:
#   bash benchmarks/gpu_sweep.sh                        # everything, on cuda
#   DEVICE=cpu RES=64 BIG=64 STEPS=1 WARMUP=1 bash benchmarks/gpu_sweep.sh   # a dry run of the script here
# Writes sweep.md (every run's table), one JSON per run and memory.json under ${OUT:-benchmarks/out}.
# Rows: bf16 autocast (the default) at every resolution, for "k=8 re-selected every 10 steps" (the
# 300-steps-in-30-s target: seconds for 300 steps = 300 x its s/step) and "all layers"; then
# torch.compile of the synthesis networks and channels-last at BIG px; fp32; peak memory.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-benchmarks/out}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
RES=${RES:-"256 512 1024"}
BIG=${BIG:-1024}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then  # wheels carried from benchmarks/gpu_wheels.sh
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nada_site .whl/*.whl \
    && export PYTHONPATH=/tmp/nada_site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import open_clip" 2>/dev/null || { echo "open_clip is missing: run bash benchmarks/gpu_wheels.sh here and carry .whl"; exit 2; }
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
left() { echo $((BUDGET - SECONDS)); }
capped() {  # cap_seconds, command...: run with the smaller of the cap and the budget left
  local cap=$1; shift
  local t; t=$(left); [ "$cap" -lt "$t" ] && t=$cap
  if [ "$t" -lt 30 ]; then echo "   skipped: ${t} s of the budget left" | tee -a "$OUT/sweep.md"; return; fi
  timeout "$t" "$@" 2>&1 | tee -a "$OUT/sweep.md"
}
run() {  # name, cap_seconds, resolutions, extra flags...
  local name=$1 cap=$2 res=$3; shift 3
  echo "== $name ($res px, $(left) s of the budget left)" | tee -a "$OUT/sweep.md"
  capped "$cap" "$PY" benchmarks/bench_train.py --device "$DEVICE" --resolutions $res --steps "$STEPS" \
    --warmup "$WARMUP" --skip-research --variants interval all --json "$OUT/$name.json" "$@"
}
run bf16 150 "$RES"                                     # the defaults: the table's main rows
run bf16_compile 120 "$BIG" --compile --variants all    # compile time lands in the warm-up steps
run bf16_channels_last 60 "$BIG" --channels-last
run fp32 90 "$RES" --no-mixed-precision
echo "== memory (256 and $BIG px, $(left) s of the budget left)" | tee -a "$OUT/sweep.md"
capped 90 "$PY" benchmarks/bench_memory.py --device "$DEVICE" --resolutions $(echo 256 "$BIG" | tr ' ' '\n' | sort -un) \
  --batch 2 --with-checkpointing --json "$OUT/memory.json"
run bf16_channels_last_compile 90 "$BIG" --channels-last --compile --variants all
echo "== done in $SECONDS s" | tee -a "$OUT/sweep.md"
