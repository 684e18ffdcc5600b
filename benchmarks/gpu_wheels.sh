#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before benchmarks/gpu_sweep.sh: the GPU machine's image has
# PyTorch (Python 3.12) but not open_clip_torch (which the benchmarks' ViT-B/32 is built with) nor
# its two small dependencies, and it cannot reach a registry. This puts their wheels in .whl/
# (git-ignored, about 2.3 MB); carry that folder with the run:
#   device run: command "bash benchmarks/gpu_sweep.sh", carry [".whl"], timeout_s 580
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
ls -l .whl
