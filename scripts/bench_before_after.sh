#!/bin/bash
# Same-run speed of two pocketlm checkouts on the standard workload (GPT-2-small shape,
# random weights seed 0): each converts its own files and runs them with its own runtime,
# three interleaved rounds. Usage:
#   scripts/bench_before_after.sh BEFORE_SRC AFTER_SRC OUTDIR [MODES]
# e.g. git worktree add /tmp/old 7283bc3 &&
#   scripts/bench_before_after.sh /tmp/old/src src /tmp/ba "dynamic-int8 int4"
set -euo pipefail
BEFORE=$(realpath "$1"); AFTER=$(realpath "$2"); OUT=$3; MODES=${4:-"dynamic-int8 int4"}
PY=${PYTHON:-.venv/bin/python}
PY=$(realpath "$PY")
mkdir -p "$OUT"; cd "$OUT"
for q in $MODES; do
  for side in before after; do
    src=$BEFORE; [ $side = after ] && src=$AFTER
    [ -f "$side-$q.tflite" ] || PYTHONPATH=$src "$PY" -m pocketlm.cli convert --random \
      gpt2-small -q "$q" -o "$side-$q.tflite" 2>/dev/null | tail -1
  done
done
for round in 1 2 3; do
  for q in $MODES; do
    for side in before after; do
      src=$BEFORE; [ $side = after ] && src=$AFTER
      PYTHONPATH=$src "$PY" -m pocketlm.bench --worker "$side-$q.tflite" --runs 3 \
        --warmup 1 2>/dev/null | tail -1 | "$PY" -c "
import json, statistics, sys
d = json.loads(sys.stdin.read())
dec = statistics.median(r['decode_tok_s'] for r in d['runs'])
ttft = statistics.median(r['ttft_10_s'] for r in d['runs'])
print(f'round $round $q $side: decode {dec:.1f} tok/s, ttft10 {ttft * 1000:.1f} ms, '
      f'peak {d[\"peak_rss_mb\"]:.0f} MiB')"
    done
  done
done
