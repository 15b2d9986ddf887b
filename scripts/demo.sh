#!/usr/bin/env bash
# Install everything, then run the end-to-end demo (generated data, tiny CLIP, train, evaluate, export, report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.venv/numba-cache}
exec .venv/bin/align3d-rt demo --out "${1:-demo_out}"
