#!/usr/bin/env bash
# One unattended GPU check (NVIDIA), under 8 minutes, everything under one output folder:
#   1 install   what is missing: onnxruntime-gpu, tensorrt (when pip can install its wheel), nvidia-ml-py
#   2 kernels   CUDA render + back-projection vs the CPU kernels on full-size clouds (336x336 organized,
#               112,896 points)
#   3 tensorrt  a ViT-L-14-336 (random weights) fp16 bundle, its TensorRT fp16 engine, `align3d-rt parity`
#   4 bench     `align3d-rt bench` on the GPU: torch fp32 eager, torch fp16 autocast, ONNX Runtime CUDA,
#               TensorRT fp16
# Each step runs under `timeout` (its own limit, and never past the overall budget); a step that fails,
# times out or cannot run is reported with the reason and the next one runs. The report is
# OUT/gpu_check.md (one line per step) and each step's log is OUT/STEP.log.
#
#   bash bench/gpu_check.sh [--dry-run] [OUT]        (default OUT: gpu_check_out)
#
# --dry-run: find the GPU and the tools, print and report what each step would run, run nothing.
# Without an NVIDIA GPU every step is skipped (with the reason) and the script exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DRY=0
OUT=gpu_check_out
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
    *) OUT=$arg ;;
  esac
done
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then echo "$OUT: exists and is not a folder" >&2; exit 2; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

BUDGET_S=${GPU_CHECK_BUDGET_S:-470}   # the whole check stays under 8 minutes
START_S=$SECONDS
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$REPO/.venv/numba-cache} HF_HUB_OFFLINE=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
A3="$PY -c 'import sys; from align3d_rt.cli import main; sys.exit(main())'"
REPORT=$OUT/gpu_check.md

echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ))" > "$REPORT"
echo >> "$REPORT"

GPU=""
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
fi
if [ -n "$GPU" ]; then
  echo "GPU: $GPU" >> "$REPORT"
else
  echo "GPU: none (nvidia-smi missing or lists no GPU)" >> "$REPORT"
fi
echo "Mode: $([ $DRY = 1 ] && echo dry run || echo run); budget ${BUDGET_S} s" >> "$REPORT"
echo >> "$REPORT"
echo "| step | status | seconds | detail |" >> "$REPORT"
echo "|---|---|---:|---|" >> "$REPORT"

report() {  # step status seconds detail
  echo "| $1 | $2 | $3 | $4 |" >> "$REPORT"
  echo "gpu_check: $1: $2 ($3 s) $4" >&2
}

# step NAME LIMIT_S COMMAND: run COMMAND (a bash string) under timeout, log to OUT/NAME.log
FAILED=0
step() {
  local name=$1 limit=$2 cmd=$3
  if [ $DRY = 1 ]; then printf 'timeout %s bash -c %q\n' "$limit" "$cmd" > "$OUT/$name.plan"; fi
  if [ -z "$GPU" ]; then report "$name" skipped 0 "no NVIDIA GPU on this machine"; return 0; fi
  if [ $DRY = 1 ]; then report "$name" "would run" 0 "limit ${limit} s; command: $name.plan"; return 0; fi
  local left=$(( BUDGET_S - (SECONDS - START_S) ))
  if [ $left -lt 15 ]; then report "$name" skipped 0 "overall budget of ${BUDGET_S} s spent"; return 0; fi
  [ $limit -gt $left ] && limit=$left
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" bash -c "$cmd" > "$OUT/$name.log" 2>&1 || rc=$?
  local took=$(( SECONDS - t0 ))
  if [ $rc = 0 ]; then
    report "$name" ok $took "log: $name.log"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then
    FAILED=1; report "$name" "timed out" $took "limit ${limit} s; log: $name.log"
  else
    FAILED=1; report "$name" failed $took "exit $rc: $(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | tr '|' '/') (log: $name.log)"
  fi
}

# The run and the bundles live where `align3d-rt bench --workdir $WORK` looks for them, so step 4 reuses
# the fp16 bundle and engine of step 3 instead of exporting again.
WORK=$OUT/bench/work
RUN=$WORK/run_ViT-L-14-336
FP16=$WORK/bundles/ViT-L-14-336_onnx_fp16

# 1 install: only what is missing; tensorrt only when pip can install its wheel here
step install 120 "
  $PY -c 'import onnxruntime as o, sys; sys.exit(0 if \"CUDAExecutionProvider\" in o.get_available_providers() else 1)' \
    || $PY -m pip install --quiet onnxruntime-gpu
  $PY -c 'import pynvml' 2>/dev/null || $PY -m pip install --quiet nvidia-ml-py
  $PY -c 'import tensorrt' 2>/dev/null || $PY -m pip install --quiet tensorrt || echo 'tensorrt: no wheel installs here'
  $PY -c 'import onnxruntime as o; print(o.get_available_providers())'"

# 2 kernels: CUDA vs CPU render and back-projection on full-size clouds
step kernels 60 "$PY $REPO/bench/gpu_kernels_check.py --json $OUT/kernels.json"

# 3 tensorrt: fp16 bundle of a ViT-L random run, its TensorRT fp16 engine, parity against the torch reference
step tensorrt 170 "
  set -e
  $PY -c 'from align3d_rt.train.random_run import random_run_dir as r; r(\"$RUN\", clip=\"ViT-L-14-336\", dataset=\"mvtec3d\", category=\"bagel\")'
  $PY -c 'from align3d_rt.eval.bench.inputs import generate_real3d as g; from pathlib import Path; g(Path(\"$OUT/data\"), 2)'
  [ -f $FP16/manifest.json ] || $A3 export --run $RUN --out $FP16 --precision fp16 --tensorrt
  $A3 parity $OUT/data --run $RUN --bundle $FP16 --backend tensorrt --device cuda --out $OUT/parity.json"

# 4 bench: the GPU rows of the table (run, bundles and engine reused from $WORK)
step bench 240 "$A3 bench --out $OUT/bench --workdir $WORK --clip ViT-L-14-336 --samples 3 --device cuda \
  --rows torch:fp32,torch:fp16,onnxruntime:cuda-fp32,tensorrt:fp16 --row-timeout 200 \
  --note 'GPU check (bench/gpu_check.sh)'"

echo >> "$REPORT"
echo "Total $(( SECONDS - START_S )) s. Outputs: $OUT" >> "$REPORT"
cat "$REPORT"
[ $DRY = 1 ] && exit 0
exit $FAILED
