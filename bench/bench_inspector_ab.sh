#!/usr/bin/env bash
# Two align3d-inspect binaries (A, B: e.g. two commits' builds) timed round-robin by `align3d-rt bench`'s C++
# row, one process per row, alternating, on one shared workdir (the bundle is exported once and reused).
#   bash bench/bench_inspector_ab.sh CLIP ROUNDS SAMPLES BINARY_A BINARY_B   (OUT=folder, EXTRA=options)
# e.g. bash bench/bench_inspector_ab.sh ViT-L-14-336 2 2 /tmp/old/align3d-inspect build/cpp/cpp/align3d-inspect
set -euo pipefail
CLIP=$1; ROUNDS=$2; SAMPLES=$3; A=$(realpath "$4"); BIN_B=$(realpath "$5")
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-/tmp/align3d-bench-ab/$CLIP}
mkdir -p "$OUTDIR/rounds"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    binary=$A; [[ $side == B ]] && binary=$BIN_B
    name=r${r}_$side
    echo "== round $r binary $side ($binary) $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    set +e
    # shellcheck disable=SC2086  # EXTRA is a list of options
    ALIGN3D_INSPECT=$binary .venv/bin/python -m align3d_rt bench --clip "$CLIP" --rows cpp:inspector \
      --out "$OUTDIR/rounds/$name" --workdir "$OUTDIR/work" --samples "$SAMPLES" --batch-sizes 1 ${EXTRA:-} \
      --note "round $r of $ROUNDS, binary $side: $binary" > "$OUTDIR/rounds/$name.log" 2>&1
    echo "rc $?"
    set -e
  done
done
echo "done $(date -u +%T)"
