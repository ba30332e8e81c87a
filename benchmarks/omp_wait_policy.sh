#!/bin/bash
# The OpenMP wait policy on an idle machine (benchmarks/RESULTS.md, "The passive OpenMP wait").
# Per policy and round: a `tiny` run of 160 steps at length 64 (median tokens/s after step 40)
# and the demo's recipe for 300 steps (real tokens/s over the run).
usage() {
  cat <<'TXT'
usage: bash benchmarks/omp_wait_policy.sh DATA_DIR
  DATA_DIR  a data directory made by `zhbert prepare builtin` (the built-in corpus)
Trains the tiny preset under OMP_WAIT_POLICY=PASSIVE, unset and ACTIVE, two rounds, and
prints tokens/s per run. Environment: Z (zhbert, default .venv/bin/zhbert), PY (python,
default .venv/bin/python). Exit 2: no or a bad DATA_DIR; a failed training shows its
last lines and exits with its code.
TXT
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
set -e
DATA=$1
if [ ! -f "$DATA/manifest.json" ]; then
  echo "omp_wait_policy.sh: error: $DATA is not a zhbert data directory (no manifest.json)" >&2
  exit 2
fi
Z=${Z:-.venv/bin/zhbert}
PY=${PY:-.venv/bin/python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
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
# a training's output goes to a log; on failure its last lines are shown
train() {
  local log="$OUT/train.log" rc=0
  "$Z" train --data "$DATA" --config tiny --force --no-progress "$@" > "$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "omp_wait_policy.sh: error: $Z train $* exited $rc; its last lines:" >&2
    tail -n 20 "$log" >&2
    exit "$rc"
  fi
}
for round in 1 2; do
  for pol in PASSIVE UNSET ACTIVE; do
    if [ "$pol" = UNSET ]; then export OMP_WAIT_POLICY=""; else export OMP_WAIT_POLICY=$pol; fi
    train --out "$OUT/full" \
      --set train.steps=160 --set train.eval_every=1000 --set train.checkpoint_every=1000 \
      --set data.warmup_len=0
    report "round $round $pol tiny length 64" "$OUT/full" 40
    train --out "$OUT/demo" \
      --set train.steps=300 --set data.warmup_len_fraction=0.5 --set data.mask_prob=0.3 \
      --set model.hidden_dropout=0 --set model.attention_dropout=0 \
      --set train.eval_every=1000 --set train.checkpoint_every=1000
    report "round $round $pol demo recipe" "$OUT/demo" 0
  done
done
