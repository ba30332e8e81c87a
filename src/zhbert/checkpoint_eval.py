"""`zhbert eval`: re-evaluate a run's kept checkpoints on a held-out split.

Training evaluates on the validation split as it goes; this evaluates finished
checkpoints afterwards (another split, more sequences, a checkpoint whose eval
was lost) with the same fixed sequences and masking (data.build_eval_set), so
the figures are comparable with the history's. Results are appended to
RUN_DIR/checkpoint_eval.jsonl, one record per (step, split, --max-sequences), each fsynced
before the next checkpoint is started: a killed job loses at most the
checkpoint in progress, and a rerun skips what is already there.

The work is zhbert.evaluate.evaluate_checkpoints (probe runs it too); opening
the run and loading its checkpoints is zhbert.run's.
"""

from __future__ import annotations

from pathlib import Path

from zhbert import argtypes
from zhbert.evaluate import HELD_OUT_SPLITS, evaluate_checkpoints
from zhbert.run import EVAL_RESULTS, add_checkpoint_arguments


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by zhbert train")
    add_checkpoint_arguments(p)
    p.add_argument("--split", choices=HELD_OUT_SPLITS, default="validation")
    # at least 1; no upper bound: a split with fewer sequences is evaluated whole
    p.add_argument("--max-sequences", type=argtypes.count(1), metavar="N",
                   help="held-out sequences to evaluate (default: the run's data.eval_sequences; "
                        "all of the split's when it has fewer)")


def run(args) -> int:
    evaluate_checkpoints(args.run_dir, args.checkpoint, args.all_checkpoints, args.split,
                         args.max_sequences)
    print(f"results in {Path(args.run_dir) / EVAL_RESULTS}")
    return 0
