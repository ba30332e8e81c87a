"""A padded batch's layers at its real tokens only (unpadding.py): the same outputs and
gradients as the padded layers, on the CPU, in both norms and precisions."""

import pytest
import torch

import zhbert.model as model_module
from zhbert.model import BertForPretraining, ModelConfig
from zhbert.unpadding import Unpadded, unpadded

B, T, M, V = 6, 24, 4, 300


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([T, T - 9, T - 3, 7, T, T - 15])
    mask = torch.arange(T)[None, :] < lens[:, None]
    ids = torch.randint(5, V, (B, T), generator=g).masked_fill(~mask, 0)
    ids[:, 0] = 2
    pos = torch.stack([torch.randperm(int(n) - 1, generator=g)[:M].sort().values + 1 for n in lens])
    labels = ids.gather(1, pos)
    labels[3, -1], pos[3, -1] = -100, 0  # a padding slot, at [CLS] as data.py writes it
    return {"input_ids": ids.scatter(1, pos, 4), "token_type_ids": torch.zeros(B, T, dtype=torch.long),
            "attention_mask": mask, "mlm_positions": pos, "mlm_labels": labels,
            "nsp_labels": torch.randint(0, 2, (B,), generator=g)}


def _model(norm: str, dtype) -> BertForPretraining:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64,
                      max_position_embeddings=T, hidden_dropout=0.0, attention_dropout=0.0, norm=norm)
    return BertForPretraining(cfg).to(dtype)


def _run(model, batch, monkeypatch, unpad: bool):
    used = []

    def spy(mask, padded):  # the layout the model trained in, kept to tell it was used
        used.append(unpadded(mask, padded) if unpad else None)
        return used[-1]
    monkeypatch.setattr(model_module, "unpadded", spy)
    model.zero_grad()
    out = model(batch, padded=True)
    assert (used[-1] is not None) == unpad and (not unpad or len(used[-1].keep) < B * T)
    out.loss.float().backward()
    return out.loss.detach().float(), {n: p.grad.float().clone() for n, p in model.named_parameters()
                                       if p.grad is not None}


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_the_real_tokens_alone_give_the_padded_batchs_loss_and_gradients(norm, dtype, tol, monkeypatch):
    model, batch = _model(norm, dtype).train(), _batch()
    loss_pad, grads_pad = _run(model, batch, monkeypatch, unpad=False)
    loss, grads = _run(model, batch, monkeypatch, unpad=True)
    assert torch.allclose(loss, loss_pad, atol=tol, rtol=tol)
    assert grads.keys() == grads_pad.keys()
    for name, g in grads.items():
        assert torch.allclose(g, grads_pad[name], atol=tol, rtol=tol * 10), name


def test_fill_mask_logits_are_the_padded_ones(monkeypatch):
    model, b = _model("post", torch.float32).eval(), _batch(1)
    args = (b["input_ids"], b["token_type_ids"], b["attention_mask"], b["mlm_positions"])
    with torch.no_grad():
        monkeypatch.setattr(model_module, "unpadded", lambda mask, padded: None)
        padded = model.fill_mask_logits(*args)
        monkeypatch.setattr(model_module, "unpadded", unpadded)
        assert torch.allclose(model.fill_mask_logits(*args), padded, atol=1e-5)


def test_the_layout_moves_rows_between_padded_and_real_tokens():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    layout = Unpadded.of(mask)
    x = torch.arange(8.0).view(2, 4, 1)
    assert layout.unpad(x).flatten().tolist() == [0, 1, 2, 4, 5]
    assert layout.pad(layout.unpad(x)).flatten().tolist() == [0, 1, 2, 0, 4, 5, 0, 0]
    assert layout.rows(torch.tensor([[0, 2], [1, 0]])).tolist() == [[0, 2], [4, 3]]
    # a batch without padding, or on a device whose mask the host cannot read for free: none
    assert unpadded(mask, padded=False) is None
