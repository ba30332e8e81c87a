"""Seconds per training step of a `tiny` recipe, in its length warm-up and at full length.

    python -m benchmarks.recipe_step [--set data.mask_prob=0.3 ...] [--steps 50] [--threads 2]

The step is the race's zhbert side (``benchmarks.race_sides.zhbert_side``: zhbert's
own Trainer and train_step, data loading included) on the built-in corpus. The warm-up
phase is timed in the first steps of a long schedule; the full-length phase with the
warm-up off (``data.warmup_len=0``), which changes only the batch's shape. To compare two
versions of zhbert, run it twice with PYTHONPATH pointing at each one's ``src``,
alternating: the machine's speed drifts by several percent between minutes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmarks import common, race_sides, time_to_accuracy as tta

SCHEDULE = 10_000  # long enough that the timed steps of the warm-up phase stay in it


def phases(overrides: list[str]) -> dict[str, list[str]]:
    """The two phases' overrides: the recipe as given (timed in its warm-up) and without it."""
    return {"warm-up length": list(overrides), "full length": [*overrides, "data.warmup_len=0"]}


def seconds_per_step(overrides: list[str], data_dir: Path, precision: str, warmup: int,
                     steps: int) -> float:
    """Mean seconds of ``steps`` steps after ``warmup`` untimed ones."""
    from zhbert.data import build_eval_set
    from zhbert.run import data_config

    cfg = race_sides.run_config(SCHEDULE, 32, [f"train.precision={precision}", *overrides])
    batches = build_eval_set(data_dir, "validation", data_config(cfg), max_sequences=32)
    side = race_sides.zhbert_side(cfg, data_dir, batches, precision)
    for k in range(1, warmup + 1):
        side.step(k)
    started = time.perf_counter()
    for k in range(warmup + 1, warmup + steps + 1):
        side.step(k)
    return (time.perf_counter() - started) / steps


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    p = common.Parser("recipe_step", __doc__)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the tiny preset (repeatable), e.g. the demo's recipe")
    p.add_argument("--steps", type=argtypes.count(1), default=50, help="timed steps per phase")
    p.add_argument("--warmup", type=argtypes.count(0), default=10, help="untimed steps first (page faults)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=argtypes.cores)
    p.add_argument("--data", type=Path, default=tta.DATA, help=tta.DATA_HELP)
    args = p.parse_args(argv)
    for overrides in phases(args.overrides).values():  # a typo: one line now, not after preparing
        race_sides.run_config(SCHEDULE, 32, overrides)
    common.check_data_dir(args.data)
    return args


@common.entry("recipe_step")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from zhbert.machine import tune_malloc

    tune_malloc()  # as zhbert train does
    precision = tta.resolve(args.precision)
    data_dir = tta.prepare_builtin(args.data)
    rows = [["phase", "s per step"]]
    result = {}
    for name, overrides in phases(args.overrides).items():
        result[name] = seconds_per_step(overrides, data_dir, precision, args.warmup, args.steps)
        rows.append([name, f"{result[name]:.4f}"])
    common.finish("recipe_step", common.machine(),
                  [f"tiny, {precision}, {torch.get_num_threads()} threads, overrides "
                   f"{args.overrides or 'none'}, {args.steps} steps after {args.warmup}",
                   common.table(rows)],
                  {"args": {**vars(args), "data": str(args.data)}, "precision": precision,
                   "seconds_per_step": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
