#!/usr/bin/env bash
# Round-robin `align3d-rt bench` rows, each row in its own process, alternating, one shared workdir
# (bundles reused); ROW@HINT sets the C++ inspector's performance hint (default LATENCY).
#   bash bench/bench_rows_round_robin.sh CLIP ROUNDS SAMPLES BATCHES ROW[@HINT]... (OUT=folder, EXTRA=options)
# e.g. bash bench/bench_rows_round_robin.sh ViT-L-14-336 2 2 1,2 openvino:int8 cpp:inspector cpp:inspector@THROUGHPUT
set -euo pipefail
CLIP=$1; ROUNDS=$2; SAMPLES=$3; BATCHES=$4; shift 4
cd "$(dirname "$0")/.."
B=${OUT:-/tmp/align3d-bench-rr/$CLIP}
mkdir -p "$B/rounds"
for r in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    row=${spec%@*}; hint=LATENCY; [[ $spec == *@* ]] && hint=${spec#*@}
    name=r${r}_${row/:/_}_$hint
    echo "== round $r row $row $hint $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    set +e
    # shellcheck disable=SC2086  # EXTRA is a list of options
    .venv/bin/python -m align3d_rt bench --clip "$CLIP" --rows "$row" --out "$B/rounds/$name" --workdir "$B/work" \
      --samples "$SAMPLES" --batch-sizes "$BATCHES" ${EXTRA:-} --inspector-performance-hint "$hint" \
      --note "round $r of $ROUNDS, round-robin" > "$B/rounds/$name.log" 2>&1
    echo "rc $?"
    set -e
  done
done
echo "done $(date -u +%T)"
