"""Paths of training pinned by tests: gradient accumulation equals one big batch, the
schedule and clipping included; repeated non-finite steps stop the run at once."""

from __future__ import annotations

import pytest
import torch

from test_golden import B, _batch, halves, run_steps, trainer


def test_grad_accum_2x4_equals_1x8():
    """Six steps, warm-up then cosine, clipping engaged, rows with fewer masked tokens:
    the same losses, gradient norms and weights (fp32 rounding apart). Dropout is off:
    its draws depend on how the batch is split."""
    one = trainer(1, [_batch(s) for s in range(6)], dropout=0.0)
    two = trainer(2, [half for s in range(6) for half in halves(s)], dropout=0.0)
    assert two.cfg.train.batch_size * two.cfg.train.grad_accum == one.cfg.train.batch_size == B
    loss1, norm1 = run_steps(one, range(1, 7))
    loss2, norm2 = run_steps(two, range(1, 7))
    assert min(norm1) > one.cfg.train.clip_norm  # clipping is part of what is compared
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert norm2 == pytest.approx(norm1, rel=1e-4)
    for (name, p1), p2 in zip(one.raw_model.named_parameters(), two.raw_model.parameters()):
        assert torch.allclose(p1, p2, rtol=1e-4, atol=1e-6), name
    assert [g["lr"] for g in one.optimizer.param_groups] == [g["lr"] for g in two.optimizer.param_groups]
