#!/bin/bash
# The OpenMP wait policy on an idle machine (benchmarks/RESULTS.md, "The passive OpenMP wait").
# Usage: bash benchmarks/omp_wait_policy.sh DATA_DIR   (a prepared built-in corpus)
# Per policy and round: a `tiny` run of 160 steps at length 64 (median tokens/s after step 40)
# and the demo's recipe for 300 steps (real tokens/s over the run).
set -e
DATA=${1:?give a data directory made by zhbert prepare builtin}
Z=${Z:-.venv/bin/zhbert}
PY=${PY:-.venv/bin/python}
OUT=$(mktemp -d)
report() {
  "$PY" - "$@" <<'PY'
import json, statistics, sys
label, run, skip = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = [json.loads(l) for l in open(run + "/history.jsonl")]
t = [r for r in t if r.get("type") == "train"]
late = [r["tokens_per_s"] for r in t if r["step"] > skip]
print(f"{label}: median tokens/s after step {skip} {statistics.median(late):,.0f}; "
      f"over the run {t[-1]['tokens'] / t[-1]['elapsed']:,.0f}")
PY
}
for round in 1 2; do
  for pol in PASSIVE UNSET ACTIVE; do
    if [ "$pol" = UNSET ]; then export OMP_WAIT_POLICY=""; else export OMP_WAIT_POLICY=$pol; fi
    "$Z" train --data "$DATA" --out "$OUT/full" --config tiny --force --no-progress \
      --set train.steps=160 --set train.eval_every=1000 --set train.checkpoint_every=1000 \
      --set data.warmup_len=0 > /dev/null 2>&1
    report "round $round $pol tiny length 64" "$OUT/full" 40
    "$Z" train --data "$DATA" --out "$OUT/demo" --config tiny --force --no-progress \
      --set train.steps=300 --set data.warmup_len_fraction=0.5 --set data.mask_prob=0.3 \
      --set model.hidden_dropout=0 --set model.attention_dropout=0 \
      --set train.eval_every=1000 --set train.checkpoint_every=1000 > /dev/null 2>&1
    report "round $round $pol demo recipe" "$OUT/demo" 0
  done
done
rm -rf "$OUT"
