"""Golden per-step losses of a tiny config (torchtitan's guard against silent numerics changes).

Six fp32 optimizer steps of a 2-layer model with dropout on, from a fixed seed, through
the trainer's own ``trainloop.train_step``: its dropout seeding, lr schedule (warm-up then
cosine), AdamW with decoupled weight decay on matrices only, gradient clipping (the
clip engages: the pre-clip norms are > clip_norm) and micro-batch accumulation. Any
change to initialisation, dropout draws, the fast paths, the optimizer, the schedule or
clipping moves these losses. The tolerance (2e-4 absolute on losses near 7.6) absorbs
only the rounding differences between matmul libraries (oneDNN on AVX-512 CPUs, MKL
elsewhere). If a change is *meant* to move them, regenerate with ``python
tests/test_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import contextlib

import torch

from zhbert import train, trainloop, trainparts
from zhbert.config import load_config
from zhbert.model import BertForPretraining, ModelConfig

# regenerated when the last layer began to run only at the masked slots and [CLS]: its
# dropout now draws over (B, M + 1) rows, not (B, T), so the draws (not the maths) moved.
# train_step with grad_accum 1 (steps 1-3) and 2 (steps 4-6: two half batches each)
GOLDEN = [[7.647013, 7.635599, 7.652433], [7.571375, 7.604942, 7.603622]]
GRAD_NORMS = [[2.3909, 2.4199, 2.4363], [2.5631, 2.4589, 2.3721]]

V, B, T, M = 1000, 8, 32, 5
SETTINGS = ["train.lr=1e-3", "train.warmup_steps=2", "train.steps=6", "train.schedule=cosine",
            "train.clip_norm=1.0", "train.precision=fp32", "train.seed=0"]


def _batch(step: int, size: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(5, V, (size, T), generator=g)
    ids[:, 0], ids[:, T // 2], ids[:, -1] = 2, 3, 3
    positions = torch.stack([torch.randperm(T - 2, generator=g)[:M].sort().values + 1 for _ in range(size)])
    positions = torch.where(positions == T // 2, positions + 1, positions)  # never the middle [SEP]
    labels = ids.gather(1, positions)
    labels[::3, -1] = -100  # some rows mask fewer tokens: micro-batches differ in masked counts
    return {"input_ids": ids.scatter(1, positions, 4),
            "token_type_ids": (torch.arange(T) > T // 2).long().expand(size, T),
            "attention_mask": torch.ones(size, T, dtype=torch.bool),
            "mlm_positions": positions, "mlm_labels": labels,
            "nsp_labels": torch.randint(0, 2, (size,), generator=g)}


def trainer(accum: int, batches, dropout: float = 0.1) -> trainloop.Trainer:
    """A Trainer as ``train.main`` builds one, on an in-memory stream of batches."""
    cfg = load_config("tiny", SETTINGS + [f"train.grad_accum={accum}", f"train.batch_size={B // accum}"])
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = BertForPretraining(ModelConfig(vocab_size=V, hidden_size=64, num_layers=2, num_heads=4,
                                           intermediate_size=128, max_position_embeddings=T,
                                           max_predictions=M, hidden_dropout=dropout,
                                           attention_dropout=dropout)).train()
    return trainloop.Trainer(cfg=cfg, dist=trainloop.Dist(), device=cpu, run_dir=None, model=model,
                         raw_model=model, optimizer=trainparts.build_optimizer(model, cfg, cpu),
                         loader=iter(batches), eval_batches=[], autocast=contextlib.nullcontext,
                         scaler=None, tokens_per_step=B * T, progress=trainloop.Progress(),
                         interval=trainloop.Interval.zeros(cpu))


def run_steps(tr: trainloop.Trainer, steps) -> tuple[list[float], list[float]]:
    """Per-step mean loss and pre-clip gradient norm, read from the trainer's interval sums."""
    losses, norms = [], []
    for step in steps:
        before = tr.interval.sums.clone()
        assert trainloop.train_step(tr, step) is None  # None: the step was taken
        delta = (tr.interval.sums - before).tolist()
        losses.append(delta[0] / tr.cfg.train.grad_accum)
        norms.append(delta[7])
    return losses, norms


def halves(step: int) -> list[dict[str, torch.Tensor]]:
    full = _batch(step)
    return [{k: v[:B // 2] for k, v in full.items()}, {k: v[B // 2:] for k, v in full.items()}]


def golden() -> tuple[list[list[float]], list[list[float]]]:
    whole = trainer(1, [_batch(s) for s in range(3)])
    first = run_steps(whole, [1, 2, 3])
    # the same model state continues with accumulation over two half batches
    tr = trainer(2, [half for s in range(3, 6) for half in halves(s)])
    tr.raw_model.load_state_dict(whole.raw_model.state_dict())
    tr.optimizer.load_state_dict(whole.optimizer.state_dict())
    second = run_steps(tr, [4, 5, 6])
    return [first[0], second[0]], [first[1], second[1]]


def test_golden_losses_through_train_step():
    losses, norms = golden()
    flat = [x for part in losses for x in part]
    want = [x for part in GOLDEN for x in part]
    assert all(abs(a - b) < 2e-4 for a, b in zip(flat, want)), (losses, GOLDEN)
    assert all(abs(a - b) < 2e-3 for a, b in zip(sum(norms, []), sum(GRAD_NORMS, []))), norms
    assert min(sum(norms, [])) > 1.0  # clipping engaged on every step


if __name__ == "__main__":
    losses, norms = golden()
    print([[round(x, 6) for x in part] for part in losses])
    print([[round(x, 4) for x in part] for part in norms])
