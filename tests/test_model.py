"""The BERT model: HF parity, sparse MLM head, padding mask, learning, accounting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zhbert.accounting import count_parameters, encoder_layer_parameters, flops_per_token
from zhbert.model import TIED_KEYS, BertForPretraining, ModelConfig, preset

V, T, M, B = 100, 16, 4, 3


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                max_position_embeddings=32, max_predictions=M)
    return ModelConfig(**{**base, **kw})


def make_batch(seed: int = 0, lengths=(16, 11, 7), objective="mlm+nsp") -> dict:
    """A contract-shaped batch: [CLS] A [SEP] B [SEP] [PAD]...; some mlm slots padded."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.zeros(B, T, dtype=torch.long)
    token_type_ids = torch.zeros(B, T, dtype=torch.long)
    attention_mask = torch.zeros(B, T, dtype=torch.bool)
    mlm_positions = torch.zeros(B, M, dtype=torch.long)
    mlm_labels = torch.full((B, M), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids = torch.randint(5, V, (n,), generator=g)
        a = n // 2
        ids[0], ids[a], ids[n - 1] = 2, 3, 3
        input_ids[i, :n] = ids
        token_type_ids[i, a + 1:n] = 1
        attention_mask[i, :n] = True
        k = M if i == 0 else M - 1 - (i % 2)  # rows 1, 2 leave padded slots
        pos = torch.randperm(n - 2, generator=g)[:k] + 1
        mlm_positions[i, :k] = pos
        mlm_labels[i, :k] = input_ids[i, pos]
        input_ids[i, pos] = 4  # [MASK]
    batch = dict(input_ids=input_ids, token_type_ids=token_type_ids,
                 attention_mask=attention_mask, mlm_positions=mlm_positions,
                 mlm_labels=mlm_labels)
    if objective != "mlm":
        batch["nsp_labels"] = torch.tensor([0, 1, 0])
    return batch


def gather_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[i, positions[i]] for i in range(x.shape[0])])


def backward_seeing_last_ffn_rows(model, batch):
    """The model's output on ``batch`` after its backward, and the (B, rows) shapes the
    last layer's feed-forward saw (all T positions, or only those the heads read)."""
    seen = []
    last = model.bert.encoder.layer[-1].intermediate.dense
    hook = last.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1]))
    out = model(batch)
    hook.remove()
    out.loss.backward()
    return out, seen


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hf_parity(attn):
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = BertForPretraining(cfg).eval()
    with torch.no_grad():  # non-trivial values everywhere (init leaves biases/LN at 0/1)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf = BertForPreTraining._from_config(cfg.to_hf_config(), attn_implementation=attn).eval()
    hf.load_state_dict(model.state_dict())  # strict: every name maps 1:1
    assert set(hf.state_dict()) == set(model.state_dict())

    batch = make_batch()
    with torch.no_grad():
        ours = model(batch)
        ref = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                 attention_mask=batch["attention_mask"].long())
    ref_mlm = gather_rows(ref.prediction_logits, batch["mlm_positions"])
    valid = batch["mlm_labels"] != -100  # labelled slots first (mlm_rows)
    torch.testing.assert_close(ours.mlm_logits[ours.mlm_labels != -100], ref_mlm[valid],
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.nsp_logits, ref.seq_relationship_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("objective", ["mlm+nsp", "mlm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_gradients_equal_hf_though_the_last_layer_runs_at_the_read_positions_only(objective,
                                                                                 num_layers):
    """The last layer computes only at the masked slots and [CLS] (Encoder's ``rows``): the
    loss and every gradient are still those of the full model (HF, all T positions), with
    padding; its feed-forward sees B x (M [+ 1]) rows, not B x T."""
    from transformers import BertForMaskedLM, BertForPreTraining

    torch.manual_seed(3)
    cfg = tiny_cfg(num_layers=num_layers, objective=objective, hidden_dropout=0.0,
                   attention_dropout=0.0)
    model = BertForPretraining(cfg).train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf_class = BertForPreTraining if objective != "mlm" else BertForMaskedLM
    hf = hf_class._from_config(cfg.to_hf_config(), attn_implementation="eager").train()
    hf.load_state_dict(model.state_dict())
    batch = make_batch(4, objective=objective)
    ours, seen = backward_seeing_last_ffn_rows(model, batch)
    ref = hf(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
             attention_mask=batch["attention_mask"].long())
    logits = ref.prediction_logits if objective != "mlm" else ref.logits
    loss = F.cross_entropy(gather_rows(logits, batch["mlm_positions"]).flatten(0, 1),
                           batch["mlm_labels"].flatten(), ignore_index=-100)
    if objective != "mlm":
        loss = loss + F.cross_entropy(ref.seq_relationship_logits, batch["nsp_labels"])
    loss.backward()
    torch.testing.assert_close(ours.loss, loss, atol=1e-5, rtol=1e-5)
    assert seen == [(B, M + (objective != "mlm"))]
    grads = dict(hf.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_state_dict_round_trip_from_hf_and_tied_keys():
    from transformers import BertForMaskedLM, BertForPreTraining

    cfg = tiny_cfg()
    hf = BertForPreTraining._from_config(cfg.to_hf_config())
    model = BertForPretraining(cfg)
    model.load_state_dict(hf.state_dict())
    sd = model.state_dict()
    for alias, target in TIED_KEYS.items():
        assert sd[alias].data_ptr() == sd[target].data_ptr()
    torch.testing.assert_close(sd["bert.encoder.layer.1.output.dense.weight"],
                               hf.state_dict()["bert.encoder.layer.1.output.dense.weight"])
    # objective "mlm" has no pooler/NSP head: it maps onto BertForMaskedLM instead
    mlm = BertForPretraining(tiny_cfg(objective="mlm"))
    BertForMaskedLM._from_config(cfg.to_hf_config()).load_state_dict(mlm.state_dict())


def test_init_matches_hf_scheme():
    torch.manual_seed(0)
    model = BertForPretraining(preset("tiny", 2000))
    sd = model.state_dict()
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert torch.all(sd["bert.embeddings.word_embeddings.weight"][0] == 0)  # [PAD] row
    w = sd["bert.encoder.layer.0.intermediate.dense.weight"]
    assert abs(w.std().item() - 0.02) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert torch.all(sd["bert.encoder.layer.0.attention.self.query.bias"] == 0)
    assert torch.all(sd["bert.encoder.layer.0.output.LayerNorm.weight"] == 1)
    assert torch.all(sd["cls.predictions.bias"] == 0)


def test_sparse_head_equals_full_head_at_masked_positions():
    torch.manual_seed(1)
    model = BertForPretraining(tiny_cfg()).eval()
    batch = make_batch(1)
    with torch.no_grad():
        out = model(batch)
        hidden = model.encode(batch["input_ids"], batch["token_type_ids"],
                              batch["attention_mask"])
        full = model.cls.predictions(hidden)  # (B, T, V): the same module on every position
        fill = model.fill_mask_logits(batch["input_ids"], batch["token_type_ids"],
                                      batch["attention_mask"], batch["mlm_positions"])
    valid = batch["mlm_labels"] != -100
    assert 0 < valid.sum() < B * M  # some slots are padding
    n = int(valid.sum())
    assert out.mlm_logits.shape == (B * M, V)  # fewer than ROW_BUCKET rows: all of them
    assert torch.equal(out.mlm_labels[:n], batch["mlm_labels"][valid])
    assert (out.mlm_labels[n:] == -100).all()
    torch.testing.assert_close(out.mlm_logits[:n], gather_rows(full, batch["mlm_positions"])[valid])
    assert fill.shape == (B, M, V)
    torch.testing.assert_close(fill[valid], out.mlm_logits[:n])


def test_padding_is_masked_out():
    torch.manual_seed(2)
    model = BertForPretraining(tiny_cfg()).eval()
    batch = make_batch(2)
    changed = dict(batch)
    pad = ~batch["attention_mask"]
    changed["input_ids"] = torch.where(pad, torch.randint(5, V, (B, T)), batch["input_ids"])
    changed["token_type_ids"] = torch.where(pad, 1, batch["token_type_ids"])
    with torch.no_grad():
        h1 = model.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        h2 = model.encode(changed["input_ids"], changed["token_type_ids"],
                          changed["attention_mask"])
        o1, o2 = model(batch), model(changed)
    real = batch["attention_mask"]
    torch.testing.assert_close(h1[real], h2[real])
    assert not torch.allclose(h1[pad], h2[pad])  # the change was real
    torch.testing.assert_close(o1.mlm_logits, o2.mlm_logits)
    torch.testing.assert_close(o1.nsp_logits, o2.nsp_logits)


@pytest.mark.parametrize("objective", ["mlm+nsp", "mlm"])
def test_loss_decreases_on_repeated_batch(objective):
    torch.manual_seed(3)
    model = BertForPretraining(tiny_cfg(objective=objective)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = make_batch(3, objective=objective)
    losses = []
    for _ in range(20):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert abs(losses[0] - (math.log(V) + (math.log(2) if objective != "mlm" else 0))) < 0.5


def test_mlm_objective_outputs_and_counts():
    torch.manual_seed(4)
    model = BertForPretraining(tiny_cfg(objective="mlm")).eval()
    assert not hasattr(model.bert, "pooler") and not hasattr(model.cls, "seq_relationship")
    batch = make_batch(4, objective="mlm")
    with torch.no_grad():
        out = model(batch)
    assert out.nsp_loss is None and out.nsp_logits is None and out.nsp_correct is None
    labels = batch["mlm_labels"]
    valid = labels != -100
    rows = out.mlm_labels != -100  # the labelled rows of mlm_rows
    pred = out.mlm_logits[rows].argmax(-1)
    assert out.mlm_count.dim() == 0 and out.mlm_count.item() == int(valid.sum())
    assert out.mlm_correct.item() == int((pred == labels[valid]).sum())
    ref = F.cross_entropy(out.mlm_logits[rows], labels[valid])
    torch.testing.assert_close(out.loss, ref)


def test_nsp_counts_and_total_loss():
    torch.manual_seed(5)
    model = BertForPretraining(tiny_cfg()).eval()
    batch = make_batch(5)
    with torch.no_grad():
        out = model(batch)
    assert out.nsp_count.item() == B
    assert out.nsp_correct.item() == int((out.nsp_logits.argmax(-1) == batch["nsp_labels"]).sum())
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss)
    torch.testing.assert_close(out.nsp_loss, F.cross_entropy(out.nsp_logits, batch["nsp_labels"]))


def test_parameter_counts_and_flops():
    from transformers import BertForPreTraining

    cfg = tiny_cfg()
    model = BertForPretraining(cfg)
    hf = BertForPreTraining._from_config(cfg.to_hf_config())
    assert count_parameters(model, non_embedding=False) == hf.num_parameters()
    emb = V * 64 + 32 * 64 + 2 * 64
    assert count_parameters(model) == hf.num_parameters() - emb
    layer = sum(p.numel() for p in model.bert.encoder.layer[0].parameters())
    assert encoder_layer_parameters(cfg) == layer
    # the seed preset at the seed's 10,049-char vocabulary (tied decoder, as in HF)
    seed = BertForPretraining(preset("seed", 10049))
    assert count_parameters(seed, non_embedding=False) == 43_775_299
    f = flops_per_token(cfg, T, M / T)
    head = 6 * (M / T) * (64 * 64 + 64 + 128 + 64 * V + V)
    nsp = 6 * (64 * 64 + 64 + 128 + 2) / T
    assert f == pytest.approx(6 * 2 * layer + 12 * 2 * 64 * T + head + nsp)
    assert flops_per_token(tiny_cfg(objective="mlm"), T, M / T) == pytest.approx(f - nsp)
    # the last layer at R of the T positions: its keys and values still at all of them
    R = M + 1
    kv = 6 * 2 * (64 * 64 + 64)
    sparse = flops_per_token(cfg, T, M / T, R / T)
    assert f - sparse == pytest.approx((1 - R / T) * (6 * layer - kv + 12 * 64 * T))


def test_config_validation_and_hf_config():
    with pytest.raises(ValueError):
        tiny_cfg(objective="nsp")
    with pytest.raises(ValueError):
        tiny_cfg(num_heads=5)
    with pytest.raises(ValueError):
        preset("huge", 100)
    hf = preset("base", 21128).to_hf_config()
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads,
            hf.intermediate_size, hf.hidden_act) == (768, 12, 12, 3072, "gelu")
    assert preset("tiny", 100, objective="mlm+sop").objective == "mlm+sop"


def _step_loss(model, batch):
    return model(batch).loss


def test_no_graph_breaks():
    import torch._dynamo

    torch._dynamo.reset()
    model = BertForPretraining(tiny_cfg()).train()
    explanation = torch._dynamo.explain(_step_loss)(model, make_batch())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compiled_train_step_matches_eager():
    torch.manual_seed(6)
    model = BertForPretraining(tiny_cfg(hidden_dropout=0.0, attention_dropout=0.0)).train()
    batch = make_batch(6)
    eager = _step_loss(model, batch)
    eager.backward()
    g_eager = model.bert.embeddings.word_embeddings.weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(_step_loss)(model, batch)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight.grad, g_eager,
                               atol=1e-5, rtol=1e-4)


def test_sdpa_path_equals_the_written_out_attention_with_padding():
    """On CUDA the attention (with dropout) is SDPA's; on the CPU it is written out. With
    dropout 0 both compute the same thing, padding mask included."""
    from zhbert.model import SelfAttention

    torch.manual_seed(7)
    att = SelfAttention(tiny_cfg(attention_dropout=0.0))
    q, k, v = torch.randn(3, B, 4, T, 16).unbind(0)
    mask = make_batch(7)["attention_mask"][:, None, None, :]
    assert not mask.all()  # rows 1 and 2 are padded
    for m in (mask, None):
        sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(att.attend_written_out(q, k, v, m), sdpa, atol=1e-5, rtol=1e-5)


def test_attention_dropout_goes_to_sdpa_off_the_cpu(monkeypatch):
    """Off the CPU (CUDA), SDPA gets the attention dropout (its fused kernels apply it);
    on the CPU it is written out. The device list is patched to play CUDA on the CPU."""
    import zhbert.model as model_mod

    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0):
        seen.append(dropout_p)
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)

    monkeypatch.setattr(model_mod.F, "scaled_dot_product_attention", spy)
    model = BertForPretraining(tiny_cfg(attention_dropout=0.25)).train()
    model(make_batch())
    assert seen == []  # the CPU writes it out
    monkeypatch.setattr(model_mod, "EXPLICIT_DROPOUT_DEVICES", ())
    model(make_batch())
    assert seen == [0.25, 0.25]  # one call per layer, with the dropout
    model.eval()(make_batch())
    assert seen[2:] == [0.0, 0.0]


def test_forward_reads_no_values_off_the_host():
    """No host sync in the step: a forward + backward on the meta device (whose tensors
    have no values, so any read raises) works, padded or not, with padded given or not."""
    model = BertForPretraining(tiny_cfg()).to("meta").train()
    batch = {k: v.to("meta") for k, v in make_batch().items()}
    for padded in (None, True, False):
        out = model(batch, padded=padded)
        out.loss.backward()
        assert out.loss.device.type == "meta"


def test_padded_flag_from_the_host_matches_reading_the_mask():
    from zhbert.model import any_padding

    torch.manual_seed(8)
    model = BertForPretraining(tiny_cfg()).eval()
    padded_batch, full = make_batch(8), make_batch(8, lengths=(16, 16, 16))
    assert any_padding(padded_batch["attention_mask"]) and not any_padding(full["attention_mask"])
    assert any_padding(padded_batch["attention_mask"].to("meta"))  # off the host: keep the mask
    with torch.no_grad():
        for batch in (padded_batch, full):
            flag = any_padding(batch["attention_mask"])
            torch.testing.assert_close(model(batch, padded=flag).mlm_logits, model(batch).mlm_logits)
        # a mask kept on an unpadded batch changes nothing
        torch.testing.assert_close(model(full, padded=True).mlm_logits, model(full).mlm_logits)


def test_a_runs_model_config_is_its_config_section_completed():
    """ModelConfig extends config.ModelSection (one declaration of the sizes, dropouts and
    objective): every setting of a run's [model] reaches the model, plus vocab and M."""
    from dataclasses import asdict, fields

    from zhbert.config import ModelSection, load_config
    from zhbert.run import model_config_from

    cfg = load_config("tiny", ["model.hidden_dropout=0.2", "model.objective=mlm+sop",
                               "model.max_position_embeddings=256"])
    m = model_config_from(cfg, 1000)
    assert {f.name: getattr(m, f.name) for f in fields(ModelSection)} == asdict(cfg.model)
    assert (m.vocab_size, m.max_predictions, m.has_nsp) == (1000, 10, True)
    assert not model_config_from(load_config("tiny", ["model.objective=mlm"]), 1000).has_nsp


def test_bf16_attention_on_the_cpu_is_written_out_and_fp32_goes_to_sdpa(monkeypatch):
    """SDPA's CPU flash kernel in bf16 ran 1.5-6x slower than the written-out path
    (benchmarks.attention_paths): a bf16 model without dropout must not call it, in
    training or inference; an fp32 one without dropout still does. Same result either way."""
    import zhbert.model as model_mod

    calls = []
    real = F.scaled_dot_product_attention

    def spy(*a, **kw):
        calls.append(a[0].dtype)
        return real(*a, **kw)

    monkeypatch.setattr(model_mod.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(3)
    model = BertForPretraining(tiny_cfg(attention_dropout=0.0, hidden_dropout=0.0))
    batch = make_batch(7)
    fp32 = model.eval()(batch).mlm_loss
    assert calls == [torch.float32, torch.float32]
    calls.clear()
    model = model.to(torch.bfloat16)
    for mode in (model.train, model.eval):
        out = mode()(batch)
        assert calls == []
    torch.testing.assert_close(out.mlm_loss.float(), fp32, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top1_is_argmax_first_of_equal_maxima_included(dtype):
    """The training step's MLM accuracy takes `top1` (max(-1).indices in bf16, for speed):
    it must pick what argmax picks, ties in the coarse bf16 logits included."""
    from zhbert.hits import top1

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5036, generator=g).to(dtype)
    x[:100, 17] = 9.0
    x[:100, 4000] = 9.0  # a tie: the first index wins
    assert torch.equal(top1(x), x.float().argmax(-1))
    assert (top1(x)[:100] == 17).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top1_hits_is_top1_equals_the_label_ties_and_ignored_rows_included(dtype):
    """The step's MLM accuracy counts `top1_hits` (in bf16 from the row maxima, without
    an op that returns indices): a label tied with an earlier maximum is a miss, with a
    later one a hit, as argmax says; -100 rows are never hits of a real token."""
    from zhbert.hits import top1, top1_hits

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5036, generator=g).to(dtype)
    labels = torch.randint(0, 5036, (400,), generator=g)
    labels[:150] = x[:150].float().argmax(-1)  # hits
    x[150:200, 17] = x[150:200, 4000] = 9.0    # ties: the first index wins
    labels[150:175], labels[175:200] = 17, 4000
    x[200:210, 30] = 9.0
    labels[200:210] = 30
    x[205:210, 31] = 9.0  # a later tie: still a hit
    labels[210:230] = -100
    want = top1(x) == labels
    assert torch.equal(top1_hits(x, labels), want)
    assert want[:150].all() and want[150:175].all() and not want[175:200].any()
    assert want[200:210].all() and not want[210:230].any()


def test_labelled_rows_only_on_the_cpu_give_the_loss_and_grads_of_all_slots(monkeypatch):
    """mlm_rows skips most padded (B, M) slots on the CPU, in buckets of ROW_BUCKET rows;
    the path kept for accelerators and compiled graphs (all slots, -100 ignored) must give
    the same loss, counts and grads. No dropout: under compilation it draws from torch's
    generator, eagerly on the CPU from numpy's (dropout.random_words)."""
    from zhbert.model import ROW_BUCKET

    torch.manual_seed(9)
    model = BertForPretraining(tiny_cfg(hidden_dropout=0.0, attention_dropout=0.0)).train()
    batch = {k: v.repeat(40, *[1] * (v.dim() - 1)) for k, v in make_batch(9).items()}
    slots, labelled = batch["mlm_labels"].numel(), int((batch["mlm_labels"] != -100).sum())
    bucketed = -(-labelled // ROW_BUCKET) * ROW_BUCKET
    assert bucketed < slots  # the batch is big enough for the CPU path to skip rows

    def run():
        model.zero_grad()
        out = model(batch)
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    sparse, g1 = run()
    assert sparse.mlm_logits.shape[0] == bucketed
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    full, g2 = run()
    assert full.mlm_logits.shape[0] == slots
    torch.testing.assert_close(sparse.loss, full.loss)
    assert (sparse.mlm_correct, sparse.mlm_count) == (full.mlm_correct, full.mlm_count)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], msg=name)


def test_mlm_rows_come_in_buckets_so_the_heap_does_not_fragment():
    """A row count that followed the labelled slots exactly changed every step; with
    glibc's heap never trimmed (machine.tune_malloc) a demo run's peak RSS went 0.82 ->
    1.39 GB. The CPU path pads to a multiple of ROW_BUCKET rows (or all the slots)."""
    from zhbert.model import ROW_BUCKET

    torch.manual_seed(10)
    model = BertForPretraining(tiny_cfg()).eval()
    Bb, Mb = 64, 20
    slots = torch.randn(Bb, Mb, model.config.hidden_size)
    counts = set()
    for labelled in range(900, 1000, 7):
        labels = torch.full((Bb * Mb,), -100)
        labels[torch.randperm(Bb * Mb)[:labelled]] = 5
        with torch.no_grad():
            logits, rows = model.mlm_rows(slots, labels.view(Bb, Mb))
        assert int((rows != -100).sum()) == labelled and (rows[labelled:] == -100).all()
        assert logits.shape[0] == len(rows) and len(rows) % ROW_BUCKET == 0
        counts.add(len(rows))
    assert len(counts) <= 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_from_read_rows_equals_the_full_attention_at_those_rows(dtype):
    """attend_from (the last layer's R < T queries over all T keys, with a padding mask)
    gives the full attention's outputs at those rows, on SDPA (fp32) and on the written-out
    path (bf16 on the CPU, where the full attention takes kernels.attention)."""
    from zhbert.model import SelfAttention, written_out_attention

    torch.manual_seed(11)
    att = SelfAttention(tiny_cfg(attention_dropout=0.0)).eval().to(dtype)
    x = torch.randn(B, T, 64, dtype=dtype)
    mask = make_batch(12)["attention_mask"][:, None, None, :]  # rows 1, 2 padded
    rows = torch.tensor([[0, 3, 5, 3], [0, 1, 9, 2], [0, 6, 4, 6]])  # [CLS] first, a repeat
    xq = torch.gather(x, 1, rows[:, :, None].expand(-1, -1, 64))
    assert written_out_attention(xq, 0.0) == (dtype == torch.bfloat16)
    with torch.no_grad():
        want = torch.gather(att(x, mask), 1, rows[:, :, None].expand(-1, -1, 64))
        got = att(x, mask, xq)
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, want, **tol)
