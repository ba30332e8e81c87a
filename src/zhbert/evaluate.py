"""Held-out evaluation on a fixed set: the same sequences and the same masked
positions at every evaluation, so successive figures measure the same thing
(the seed measured accuracy on the current training batch instead). ``evaluate``
scores a model (training calls it at every eval); ``evaluate_checkpoints`` scores a
finished run's checkpoints into its checkpoint_eval.jsonl (`zhbert eval`, probe).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from zhbert.config import OBJECTIVES
from zhbert.datadir import SPLITS
from zhbert.errors import UserError

HELD_OUT_SPLITS = tuple(s for s in SPLITS if s != "train")


def wilson_interval(correct: int, total: int, level: float = 0.95) -> list[float]:
    if total == 0:
        return [float("nan"), float("nan")]
    from scipy.stats import binomtest  # here: scipy.stats costs each training process ~0.5 s to import
    ci = binomtest(correct, total).proportion_ci(confidence_level=level, method="wilson")
    return [float(ci.low), float(ci.high)]


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
             device: torch.device, autocast, objective: str) -> dict[str, Any]:
    """MLM accuracy (Wilson 95% CI), MLM loss, perplexity and NSP/SOP accuracy."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss*n, correct, n, pair_correct, pairs
    for batch in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast():
            out = model(batch)
        n = out.mlm_count.double()
        sums[0] += out.mlm_loss.double() * n
        sums[1] += out.mlm_correct.double()
        sums[2] += n
        if out.nsp_count is not None:
            sums[3] += out.nsp_correct.double()
            sums[4] += out.nsp_count.double()
    model.train(was_training)
    loss_sum, correct, n, pair_correct, pairs = sums.tolist()
    mlm_loss = loss_sum / n if n else float("nan")
    pair_acc = pair_correct / pairs if pairs else None
    return {
        "eval_mlm_acc": correct / n if n else float("nan"),
        "eval_mlm_acc_ci95": wilson_interval(int(correct), int(n)),
        "eval_mlm_loss": mlm_loss,
        "eval_ppl": math.exp(min(mlm_loss, 700.0)),
        "eval_nsp_acc": pair_acc if OBJECTIVES[objective] == "nsp" else None,
        "eval_sop_acc": pair_acc if OBJECTIVES[objective] == "sop" else None,
        "eval_masked": int(n),
    }


def evaluate_checkpoints(run_dir: str | Path, step: int | None = None, all_checkpoints: bool = False,
                         split: str = "validation", max_sequences: int | None = None,
                         device=None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate the selected checkpoints of a run not yet in its checkpoint_eval.jsonl on a
    held-out split, each record appended durably; return the new records (`zhbert eval`)."""
    from zhbert.data import build_eval_set
    from zhbert.machine import detect_capabilities
    from zhbert.precision import autocast_context, resolve_precision
    from zhbert.checkpoint import CheckpointGone, skip_note
    from zhbert.run import (EVAL_RESULTS, append_result, data_config, default_device,
                            load_run_checkpoint, open_run, open_run_data, read_results,
                            select_checkpoints, state_tokens)
    from zhbert.runlock import WriterLock, lock_path

    if split not in HELD_OUT_SPLITS:
        raise UserError(f"--split must be one of {', '.join(HELD_OUT_SPLITS)}, got {split!r}")
    run = open_run(run_dir)
    out = run.path / EVAL_RESULTS
    cap = max_sequences or run.cfg.data.eval_sequences
    with WriterLock(lock_path(out), "zhbert eval"):  # one writer of checkpoint_eval.jsonl at a time
        # another --max-sequences is another evaluation (it said "nothing to evaluate"); a
        # record from before the cap was kept was most likely taken at the run's default
        done = {(r.get("step"), r.get("split"), r.get("max_sequences", run.cfg.data.eval_sequences))
                for r in read_results(out)}
        todo = [r for r in select_checkpoints(run.path, step, all_checkpoints)
                if (r.step, split, cap) not in done]
        if not todo:
            log(f"zhbert: nothing to evaluate; {out} already has every selected checkpoint on "
                f"{split} at {cap:,} sequences at most")
            return []
        device = device or default_device()
        # the run's own precision, as resolved on this machine (what its history evals used)
        precision = resolve_precision(run.cfg.train.precision, detect_capabilities(device)).precision
        # training's data settings: the same eval set as the history's
        batches = build_eval_set(open_run_data(run), split, data_config(run.cfg), max_sequences=cap)
        records = []
        for ref in todo:
            try:
                model, state = load_run_checkpoint(run, ref, device)
            except CheckpointGone:
                # a training run's retention deleted it after the listing (or a user did):
                # the others are still there to evaluate
                print(skip_note(ref.path, "gone"), file=sys.stderr)
                continue
            metrics = evaluate(model, batches, device, lambda: autocast_context(precision, device),
                               run.cfg.model.objective)
            rec = {"step": ref.step, "tokens": state_tokens(state),
                   "split": split, "max_sequences": cap, **metrics}
            append_result(out, rec)
            records.append(rec)
            lo, hi = metrics["eval_mlm_acc_ci95"]
            log(f"step {ref.step:>8}  {split}  mlm_acc {metrics['eval_mlm_acc']:.4f} "
                f"[{lo:.4f}, {hi:.4f}]  loss {metrics['eval_mlm_loss']:.4f}  "
                f"masked {metrics['eval_masked']}")
    return records
