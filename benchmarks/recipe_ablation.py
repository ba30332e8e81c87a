"""Recipe ablations: held-out MLM accuracy by step for variants of the `tiny` recipe.

    python -m benchmarks.recipe_ablation [--steps 4000] [--until 1800] [--eval-every 300]
        [--variant "NAME:key=value,key=value" ...] [--threads 1]

Each variant is zhbert's `tiny` preset on the built-in corpus (the race's zhbert side,
``benchmarks.race_sides.zhbert_side``: zhbert's own Trainer and train_step) with
``--set``-style overrides, trained for ``--until`` optimizer steps of a cosine schedule
that ends at ``--steps``, and scored every ``--eval-every`` steps on one fixed held-out
set (the preset's validation eval set, length 64, whatever the variant trains on). The
variants run one after another from the same initial weights and seed: this measures
accuracy per step, not time (use ``benchmarks.time_to_accuracy`` for wall-clock).

Without ``--variant``, it compares the preset as shipped with the preset without its
sequence-length warm-up. The ablations in ``benchmarks/RESULTS.md`` ("What holds zhbert
on the plateau") are variants of this kind, e.g.
``--variant "length 32:data.max_len=32,train.batch_size=128,data.warmup_len=0"``.
Prints a table (rows: variants, columns: steps) and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks import common, race_sides, time_to_accuracy as tta

DEFAULT_VARIANTS = ["as shipped:", "no warm-up:data.warmup_len=0"]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """"NAME:key=value,key=value" -> (NAME, ["key=value", ...]); "NAME:" has no overrides."""
    name, sep, sets = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write it as NAME:key=value,key=value")
    return name.strip(), [s.strip() for s in sets.split(",") if s.strip()]


def run_variant(name: str, overrides: list[str], args, data_dir: Path, eval_batches: list,
                precision: str, log=print) -> dict:
    """Train one variant for ``args.until`` steps; its held-out curve and seconds."""
    cfg = race_sides.run_config(args.steps, args.eval_sequences,
                         [f"train.precision={precision}", *overrides])
    side = race_sides.zhbert_side(cfg, data_dir, eval_batches, precision)
    curve = [{"step": 0, **side.evaluate()}]
    started = time.perf_counter()
    for k in range(1, args.until + 1):
        side.step(k)
        if k % args.eval_every == 0 or k == args.until:
            curve.append({"step": k, **side.evaluate()})
            log(f"  {name:24s} step {k:5d}  held-out MLM acc {curve[-1]['eval_mlm_acc']:.4f}")
    return {"name": name, "overrides": overrides, "curve": curve,
            "seconds": time.perf_counter() - started}


def table(results: list[dict]) -> str:
    steps = sorted({p["step"] for r in results for p in r["curve"]} - {0})
    rows = [["variant"] + [f"@{s:,}" for s in steps]]
    for r in results:
        acc = {p["step"]: p["eval_mlm_acc"] for p in r["curve"]}
        rows.append([r["name"]] + [f"{100 * acc[s]:.1f}%" if s in acc else "" for s in steps])
    return common.table(rows)


def parse_args(argv: list[str] | None):
    from zhbert import argtypes

    p = common.Parser("recipe_ablation", __doc__)
    p.add_argument("--steps", type=argtypes.count(1), default=4000, help="lr schedule length (cosine to 0)")
    p.add_argument("--until", type=argtypes.count(1), default=1800, help="steps to train each variant")
    p.add_argument("--eval-every", type=argtypes.count(1), default=300)
    p.add_argument("--eval-sequences", type=argtypes.count(1), default=512)
    p.add_argument("--variant", action="append", type=parse_variant,
                   help='"NAME:key=value,..." (repeatable)')
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--threads", type=argtypes.cores, help="torch threads (default: torch's)")
    p.add_argument("--data", type=Path, default=tta.DATA, help=tta.DATA_HELP)
    args = p.parse_args(argv)
    if args.until > args.steps:
        p.error(f"--until {args.until} is past the schedule's end, --steps {args.steps}")
    args.variants = args.variant or [parse_variant(v) for v in DEFAULT_VARIANTS]
    for _, sets in args.variants:  # a typo: one line now, not after preparing the data
        race_sides.run_config(args.steps, args.eval_sequences, sets)
    common.check_data_dir(args.data)
    return args


@common.entry("recipe_ablation")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = args.variants
    if args.threads:
        torch.set_num_threads(args.threads)
    from zhbert.data import build_eval_set
    from zhbert.machine import tune_malloc
    from zhbert.run import data_config

    tune_malloc()
    precision = tta.resolve(args.precision)
    data_dir = tta.prepare_builtin(args.data)
    base = race_sides.run_config(args.steps, args.eval_sequences)
    eval_batches = build_eval_set(data_dir, "validation", data_config(base),
                                  max_sequences=args.eval_sequences)
    info = common.machine()
    results = [run_variant(name, sets, args, data_dir, eval_batches, precision,
                           log=lambda m: print(m, flush=True)) for name, sets in variants]
    common.finish("recipe_ablation", info,
                  [f"tiny preset, {precision}, cosine schedule to step {args.steps:,}, "
                   f"{args.eval_sequences} held-out sequences of length {base.data.max_len}",
                   table(results)],
                  {"args": {**vars(args), "data": str(args.data)}, "precision": precision,
                   "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
