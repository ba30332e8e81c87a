"""Held-out evaluation on a fixed set: the same sequences and the same masked
positions at every evaluation, so successive figures measure the same thing
(the seed measured accuracy on the current training batch instead).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from scipy.stats import binomtest

from zhbert.config import OBJECTIVES


def wilson_interval(correct: int, total: int, level: float = 0.95) -> list[float]:
    if total == 0:
        return [float("nan"), float("nan")]
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
