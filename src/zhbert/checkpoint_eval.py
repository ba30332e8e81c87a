"""`zhbert eval`: re-evaluate a run's kept checkpoints on a held-out split.

Training evaluates on the validation split as it goes; this evaluates finished
checkpoints afterwards (another split, more sequences, a checkpoint whose eval
was lost) with the same fixed sequences and masking (data.build_eval_set), so
the figures are comparable with the history's. Results are appended to
RUN_DIR/checkpoint_eval.jsonl, one record per (step, split), each fsynced
before the next checkpoint is started: a killed job loses at most the
checkpoint in progress, and a rerun skips what is already there.

Opening the run and loading its checkpoints is zhbert.run's, shared with
probe, export and fill-mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from zhbert.errors import UserError
from zhbert.run import (EVAL_RESULTS, add_checkpoint_arguments, append_result,
                        checkpoint_tokens, data_config, default_device, load_run_model, open_run,
                        open_run_data, read_results, select_checkpoints)

SPLITS = ("validation", "test")


# ----------------------------------------------------------------------------- evaluation

def evaluate_checkpoints(run_dir: str | Path, step: int | None = None, all_checkpoints: bool = False,
                         split: str = "validation", max_sequences: int | None = None,
                         device=None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate the selected checkpoints not yet in checkpoint_eval.jsonl; return the new records."""
    from zhbert.data import build_eval_set
    from zhbert.evaluate import evaluate
    from zhbert.machine import detect_capabilities
    from zhbert.precision import autocast_context, resolve_precision

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = open_run(run_dir)
    out = run.path / EVAL_RESULTS
    done = {(r.get("step"), r.get("split")) for r in read_results(out)}
    todo = [r for r in select_checkpoints(run.path, step, all_checkpoints) if (r.step, split) not in done]
    if not todo:
        log(f"zhbert: nothing to evaluate; {out} already has every selected checkpoint on {split}")
        return []
    device = device or default_device()
    # the run's own precision, as resolved on this machine (what its history evals used)
    precision = resolve_precision(run.cfg.train.precision, detect_capabilities(device)).precision
    # training's data settings: the same eval set as the history's
    batches = build_eval_set(open_run_data(run), split, data_config(run.cfg),
                             max_sequences=max_sequences or run.cfg.data.eval_sequences)
    records = []
    for ref in todo:
        model = load_run_model(run, ref, device)
        metrics = evaluate(model, batches, device, lambda: autocast_context(precision, device),
                           run.cfg.model.objective)
        rec = {"step": ref.step, "tokens": checkpoint_tokens(ref), "split": split, **metrics}
        append_result(out, rec)
        records.append(rec)
        lo, hi = metrics["eval_mlm_acc_ci95"]
        log(f"step {ref.step:>8}  {split}  mlm_acc {metrics['eval_mlm_acc']:.4f} "
            f"[{lo:.4f}, {hi:.4f}]  loss {metrics['eval_mlm_loss']:.4f}  "
            f"masked {metrics['eval_masked']}")
    return records


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by zhbert train")
    add_checkpoint_arguments(p)
    p.add_argument("--split", choices=SPLITS, default="validation")
    p.add_argument("--max-sequences", type=int, metavar="N",
                   help="held-out sequences to evaluate (default: the run's data.eval_sequences)")


def run(args) -> int:
    if args.max_sequences is not None and args.max_sequences < 1:
        raise UserError(f"--max-sequences must be at least 1, got {args.max_sequences}")
    evaluate_checkpoints(args.run_dir, args.checkpoint, args.all_checkpoints, args.split,
                         args.max_sequences)
    print(f"results in {Path(args.run_dir) / EVAL_RESULTS}")
    return 0
