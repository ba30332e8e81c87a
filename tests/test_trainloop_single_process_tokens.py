"""One process (world 1): the trainer's token count needs no collective, and it is counted
at every step (benchmarks.race_sides reads it after each train_step). A guard: the count
was already summed without a collective at world 1 (distributed.agree_sum returns at once)."""

from __future__ import annotations

import torch
import torch.distributed

from test_golden import _batch, trainer
from zhbert import trainloop


def _no_collective(*args, **kwargs):
    raise AssertionError("a collective at world 1")


def test_world_1_counts_tokens_at_every_step_without_a_collective(monkeypatch):
    for name in ("all_reduce", "all_gather", "broadcast", "barrier"):
        monkeypatch.setattr(torch.distributed, name, _no_collective)
    batches = [_batch(s) for s in range(4)]
    for i, b in enumerate(batches):  # padding: real tokens differ from positions
        b["attention_mask"][:, 32 - 3 * (i + 1):] = False
    tr = trainer(1, batches, dropout=0.0)
    assert tr.dist.world == 1
    seen, want = [], 0
    for step, b in enumerate(batches, start=1):
        assert trainloop.train_step(tr, step) is None
        want += int(b["attention_mask"].sum())
        seen.append(tr.progress.tokens)
        assert tr.pending_tokens == 0  # nothing left for a later sum
    assert seen[-1] == want and seen == sorted(seen) and len(set(seen)) == 4
