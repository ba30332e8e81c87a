"""zhbert.model's fast paths compute what the straightforward ones do.

Each test runs the same weights and batch through the optimised path and through a
plain reference (separate q/k/v Linear layers, masked SDPA, nn.Dropout semantics) and
compares losses and gradients. Dropout is off except where dropout itself is tested,
since two paths cannot draw the same random masks. Tolerance: fp32, atol 1e-5 on
losses and rtol 1e-4 / atol 1e-6 on gradients (reordered float sums, nothing more).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zhbert.dropout import Dropout, effective_p
from zhbert.model import BertForPretraining, ModelConfig, SelfAttention

V, T, M, B = 100, 16, 4, 3


def cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                max_position_embeddings=32, max_predictions=M, hidden_dropout=0.0,
                attention_dropout=0.0)
    return ModelConfig(**{**base, **kw})


def batch(lengths=(T, T, T), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    mask = torch.arange(T) < torch.tensor(lengths)[:, None]
    positions = torch.stack([torch.randperm(n - 2, generator=g)[:M] + 1 for n in lengths])
    labels = torch.gather(ids, 1, positions)
    ids = ids.scatter(1, positions, 4).masked_fill(~mask, 0)
    return {"input_ids": ids, "token_type_ids": (torch.arange(T) >= T // 2).long().expand(B, T),
            "attention_mask": mask, "mlm_positions": positions, "mlm_labels": labels,
            "nsp_labels": torch.tensor([0, 1, 0])}


def reference_attention(self: SelfAttention, x: torch.Tensor, mask, xq=None, layout=None) -> torch.Tensor:
    """The straightforward path: three Linear layers and masked SDPA (mask always given),
    queries from xq (the last layer's read positions) or from all of x. With ``layout``
    (zhbert.unpadding) x holds the real tokens only: padded back, and the output unpadded."""
    if layout is not None:
        y = reference_attention(self, layout.pad(x), mask, xq)
        return y if xq is not None else layout.unpad(y)
    B_, T_, C = x.shape
    H = self.num_heads
    xq = x if xq is None else xq
    q = self.query(xq).view(B_, xq.shape[1], H, C // H).transpose(1, 2)
    k, v = (lin(x).view(B_, T_, H, C // H).transpose(1, 2) for lin in (self.key, self.value))
    if mask is None:
        mask = torch.ones(B_, 1, 1, T_, dtype=torch.bool)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return y.transpose(1, 2).reshape(B_, xq.shape[1], C)


def loss_and_grads(model, b) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(b).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(a, b) -> None:
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("lengths", [(T, T, T), (T, 11, 7)], ids=["packed", "padded"])
def test_fused_qkv_and_mask_skip_match_reference(monkeypatch, lengths):
    torch.manual_seed(0)
    model = BertForPretraining(cfg()).train()
    b = batch(lengths)
    fast = loss_and_grads(model, b)
    monkeypatch.setattr(SelfAttention, "forward", reference_attention)
    assert_same(fast, loss_and_grads(model, b))


def test_written_out_attention_matches_sdpa():
    """The dropout path's attention (dropout set to 0 after construction so that the
    path is taken but draws nothing) equals SDPA's, with and without a padding mask."""
    torch.manual_seed(1)
    attn = SelfAttention(cfg())
    mask = (torch.arange(T) < torch.tensor([T, 11, 7])[:, None])[:, None, None, :]
    q, k, v = (torch.randn(B, 4, T, 16, requires_grad=True) for _ in range(3))
    for m in (None, mask):
        ours = attn.attend_written_out(q, k, v, m)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
        g = torch.randn_like(ours)
        got = torch.autograd.grad(ours, (q, k, v), g)
        want = torch.autograd.grad(ref, (q, k, v), g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_dropout_keeps_expectation_and_rate():
    torch.manual_seed(2)
    drop = Dropout(0.1).train()
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    q = effective_p(0.1)
    assert q == 26 / 256  # 0.1 rounded to 1/256
    assert abs(kept.float().mean().item() - (1 - q)) < 0.0035  # 5 sigma is ~0.0034
    # the expectation is exact: kept elements scale by 1 / (1 - q), not 1 / (1 - p)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - q)))
    assert abs(y.mean().item() - 1.0) < 0.004
    y.sum().backward()  # the gradient is the same mask and scale
    torch.testing.assert_close(x.grad, y.detach())
    assert drop.eval()(x) is x


def test_dropout_on_trains_and_eval_is_deterministic():
    torch.manual_seed(3)
    model = BertForPretraining(cfg(hidden_dropout=0.1, attention_dropout=0.1)).train()
    b = batch((T, 11, 7))
    a1, a2 = model(b).loss, model(b).loss
    assert torch.isfinite(a1) and a1 != a2  # dropout draws differ between calls
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(b).loss, model(b).loss, atol=0, rtol=0)


@pytest.mark.slow
def test_compiled_step_matches_eager_with_padding():
    """Compiled code keeps the mask (no data-dependent branch); same loss and grads."""
    torch.manual_seed(4)
    model = BertForPretraining(cfg()).train()
    b = batch((T, 11, 7))
    eager = loss_and_grads(model, b)
    model.zero_grad(set_to_none=True)
    loss = torch.compile(lambda x: model(x).loss)(b)
    loss.backward()
    assert_same(eager, (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_lanes_are_independent_and_odd_sizes_work(p):
    """The eight 8-bit lanes of one draw must not share bits (a top bit left at 0, say,
    would make every eighth lane keep more often), and sizes not divisible by 8 work."""
    torch.manual_seed(5)
    y = Dropout(p).train()(torch.ones(8 * 50_001 + 3))
    assert y.shape == (8 * 50_001 + 3,)
    kept = (y[:-3] != 0).view(-1, 8).float()
    for lane in range(8):  # each lane alone keeps 1 - p (5 sigma of 50,001 draws ~0.011)
        assert abs(kept[:, lane].mean().item() - (1 - effective_p(p))) < 0.011
    # lanes of one word are uncorrelated
    corr = torch.corrcoef(kept.T)
    assert (corr - torch.eye(8)).abs().max() < 0.025


@pytest.mark.parametrize("p, kept", [(1.0, 0.0), (0.999, 0.0), (0.001, 1.0)])
def test_dropout_at_the_ends_of_the_rounding(p, kept):
    """p rounding to 1 drops everything (as nn.Dropout(1.0)); p rounding to 0 keeps all."""
    y = Dropout(p).train()(torch.ones(10_000))
    assert torch.equal(y, torch.full_like(y, kept))


@pytest.mark.parametrize("threshold", [-2**7, -2**7 + 1, -2**7 + 26, -1, 0, 1, 2**7 - 1])
def test_keep_lanes_is_the_comparison_on_every_int8(threshold):
    """The clamp form of the keep mask equals ``lanes >= threshold`` on all 256 values."""
    from zhbert.dropout import keep_lanes

    lanes = torch.arange(-2**7, 2**7, dtype=torch.int32).to(torch.int8)
    keep = keep_lanes(lanes, threshold)
    assert keep.dtype == torch.int8
    assert torch.equal(keep.bool(), lanes >= threshold)
    assert set(keep.unique().tolist()) <= {0, 1}


def test_dropout_words_follow_torchs_generator():
    """The CPU's words come from numpy's SFC64, seeded from torch's generator: its state (what
    a checkpoint keeps) decides them, so a resumed run draws the same masks."""
    from zhbert.dropout import random_words

    torch.manual_seed(6)
    a = random_words(1000, torch.device("cpu"))
    b = random_words(1000, torch.device("cpu"))
    torch.manual_seed(6)
    assert torch.equal(random_words(1000, torch.device("cpu")), a)
    assert not torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (1000,)
    # every bit is random: each of the 64 is set in about half of the words
    bits = (a.unsqueeze(1) >> torch.arange(64)) & 1
    assert ((bits.float().mean(0) - 0.5).abs() < 0.08).all()  # 5 sigma of 1,000 draws
