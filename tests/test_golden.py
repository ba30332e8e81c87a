"""Golden per-step losses of a tiny config (torchtitan's guard against silent numerics changes).

Five fp32 training steps of a 2-layer model with dropout on, from a fixed seed: any change
to initialisation, dropout draws, the fast paths or the optimizer moves these losses. The
tolerance (2e-4 absolute on losses near 7.6) absorbs only the rounding differences between
matmul libraries (oneDNN on AVX-512 CPUs, MKL elsewhere: 1e-6 apart here). If a change is *meant* to move
them (a new dropout draw, say), regenerate with ``python tests/test_golden.py`` and say why
in the commit.
"""

from __future__ import annotations

import torch

from zhbert.model import BertForPretraining, ModelConfig

GOLDEN = [7.637339, 7.635379, 7.63321, 7.568172, 7.634576]

V, B, T, M = 1000, 8, 32, 5


def _batch(step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0], ids[:, T // 2], ids[:, -1] = 2, 3, 3
    positions = torch.stack([torch.randperm(T - 2, generator=g)[:M].sort().values + 1 for _ in range(B)])
    positions = torch.where(positions == T // 2, positions + 1, positions)  # never the middle [SEP]
    return {"input_ids": ids.scatter(1, positions, 4),
            "token_type_ids": (torch.arange(T) > T // 2).long().expand(B, T),
            "attention_mask": torch.ones(B, T, dtype=torch.bool),
            "mlm_positions": positions, "mlm_labels": ids.gather(1, positions),
            "nsp_labels": torch.randint(0, 2, (B,), generator=g)}


def golden_losses() -> list[float]:
    torch.manual_seed(0)
    model = BertForPretraining(ModelConfig(vocab_size=V, hidden_size=64, num_layers=2, num_heads=4,
                                           intermediate_size=128, max_position_embeddings=T,
                                           max_predictions=M)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    losses = []
    for step in range(len(GOLDEN)):
        torch.manual_seed(step)  # as zhbert.train: dropout draws a function of the step
        loss = model(_batch(step)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_golden_losses():
    losses = golden_losses()
    assert all(abs(a - b) < 2e-4 for a, b in zip(losses, GOLDEN)), (losses, GOLDEN)


if __name__ == "__main__":
    print([round(x, 6) for x in golden_losses()])
