#!/bin/bash
# round-robin: each row in its own bench invocation, alternating, shared workdir (bundles reused)
CLIP=$1; ROUNDS=$2; SAMPLES=$3; BATCHES=$4; shift 4
cd /work/wt/speed-cpp
export PYTHONPATH=$PWD NUMBA_CACHE_DIR=/tmp/numba-speed-cpp
B=/tmp/speedcpp-bench/$CLIP
mkdir -p $B
for r in $(seq 1 $ROUNDS); do
  for row in "$@"; do
    echo "== round $r row $row $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    /work/main/.venv/bin/python -m align3d_rt bench --clip $CLIP --rows $row --out $B/r${r}_${row/:/_} --workdir $B/work \
      --samples $SAMPLES --batch-sizes $BATCHES $EXTRA --note "round $r of $ROUNDS, round-robin; shared 2-vCPU machine" > $B/r${r}_${row/:/_}.log 2>&1
    echo "rc $?"
  done
done
echo DONE $(date -u +%T)
