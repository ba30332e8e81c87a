"""Pre-LN BERT (``model.norm = "pre"``): the same computation as torch's own pre-LN
encoder layer, exact at the read rows only, fill-mask on it, and no HF export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from test_model import B, M, backward_seeing_last_ffn_rows, gather_rows, make_batch, tiny_cfg
from trained_run import SMALL, trained_run  # noqa: F401  (session fixture)
from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.model import BertForPretraining


def _perturbed(cfg) -> BertForPretraining:
    """A model off its initialisation (LayerNorms and biases not at 1 / 0)."""
    torch.manual_seed(5)
    model = BertForPretraining(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _torch_layer(layer, cfg) -> nn.TransformerEncoderLayer:
    """torch's pre-LN encoder layer (``norm_first=True``) holding ``layer``'s weights."""
    ref = nn.TransformerEncoderLayer(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size,
                                     dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True, layer_norm_eps=cfg.layer_norm_eps)
    sa, out = layer.attention.self, layer.attention.output
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat((sa.query.weight, sa.key.weight, sa.value.weight)))
        ref.self_attn.in_proj_bias.copy_(torch.cat((sa.query.bias, sa.key.bias, sa.value.bias)))
        ref.self_attn.out_proj.load_state_dict(out.dense.state_dict())
        ref.norm1.load_state_dict(out.LayerNorm.state_dict())
        ref.linear1.load_state_dict(layer.intermediate.dense.state_dict())
        ref.linear2.load_state_dict(layer.output.dense.state_dict())
        ref.norm2.load_state_dict(layer.output.LayerNorm.state_dict())
    return ref.eval()


def _reference_hidden(model, batch) -> torch.Tensor:
    """The encoder's output by torch's pre-LN layers, then the final LayerNorm."""
    x = model.bert.embeddings(batch["input_ids"], batch["token_type_ids"])
    for layer in model.bert.encoder.layer:
        x = _torch_layer(layer, model.config)(x, src_key_padding_mask=~batch["attention_mask"])
    return model.bert.encoder.LayerNorm(x)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_pre_ln_encoder_is_torchs_norm_first_layer_at_all_and_at_read_rows(num_layers):
    cfg = tiny_cfg(num_layers=num_layers, norm="pre", hidden_dropout=0.0, attention_dropout=0.0)
    model = _perturbed(cfg).eval()
    batch = make_batch(2)
    with torch.no_grad():
        ref = _reference_hidden(model, batch)
        ours = model.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        at_rows = model.encode(batch["input_ids"], batch["token_type_ids"],
                               batch["attention_mask"], rows=batch["mlm_positions"])
    real = batch["attention_mask"]  # torch's layer leaves padded queries at garbage; nothing reads them
    torch.testing.assert_close(ours[real], ref[real], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(at_rows, gather_rows(ref, batch["mlm_positions"]), atol=2e-5, rtol=1e-5)


def test_pre_ln_loss_and_gradients_equal_the_full_model_at_every_position():
    """The training forward runs the last layer at the read rows only: its loss and every
    gradient equal those of the encoder computed at all T positions."""
    cfg = tiny_cfg(norm="pre", hidden_dropout=0.0, attention_dropout=0.0)
    model, full = _perturbed(cfg).train(), _perturbed(cfg).train()
    batch = make_batch(4)
    ours, seen = backward_seeing_last_ffn_rows(model, batch)
    hidden = full.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    logits = full.cls.predictions(gather_rows(hidden, batch["mlm_positions"]))
    loss = F.cross_entropy(logits.flatten(0, 1), batch["mlm_labels"].flatten(), ignore_index=-100)
    loss = loss + F.cross_entropy(full.nsp_logits(hidden), batch["nsp_labels"])
    loss.backward()
    torch.testing.assert_close(ours.loss, loss, atol=1e-5, rtol=1e-5)
    assert seen == [(B, M + 1)]
    grads = dict(full.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)
    assert "bert.encoder.LayerNorm.weight" in grads


def test_post_ln_has_no_final_norm_and_pre_ln_is_not_post_ln():
    post, pre = _perturbed(tiny_cfg()), _perturbed(tiny_cfg(norm="pre"))
    assert not any(k.startswith("bert.encoder.LayerNorm") for k in post.state_dict())
    pre.load_state_dict({**post.state_dict(), **{k: v for k, v in pre.state_dict().items()
                                                 if k.startswith("bert.encoder.LayerNorm")}})
    batch = make_batch(1)
    with torch.no_grad():
        assert not torch.allclose(pre.eval()(batch.copy()).loss, post.eval()(batch).loss)


def test_norm_is_a_validated_setting_that_keeps_older_runs_hashes():
    post = load_config("tiny")
    assert post.model.norm == "post"
    assert "norm" not in post._trajectory()["model"]  # runs made before the setting resume
    pre = load_config("tiny", ["model.norm=pre"])
    assert pre.hash() != post.hash() and pre.differences(post) == {"model.norm": ("pre", "post")}
    with pytest.raises(Exception, match="model.norm must be one of post, pre"):
        load_config("tiny", ["model.norm=sandwich"])
    with pytest.raises(ValueError, match="post-LN only"):
        tiny_cfg(norm="pre").to_hf_config()


def test_fill_mask_on_a_pre_ln_model_equals_the_model(tmp_path):
    from zhbert.fillmask import InferenceEncoder

    model = _perturbed(tiny_cfg(norm="pre", objective="mlm")).eval()
    batch = make_batch(3, objective="mlm")
    args = batch["input_ids"], batch["attention_mask"], batch["mlm_positions"]
    with torch.no_grad():
        want = model.fill_mask_logits(batch["input_ids"], torch.zeros_like(batch["input_ids"]),
                                      batch["attention_mask"], batch["mlm_positions"])
        got = InferenceEncoder(model)(*args)
        bf16 = InferenceEncoder(model, precision="bf16")(*args)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert (bf16.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


@pytest.fixture(scope="module")
def pre_ln_run(trained_run, tmp_path_factory):  # noqa: F811
    from zhbert.train import main as train_main

    run = tmp_path_factory.mktemp("preln") / "run"
    sets = [s for s in SMALL if not s.startswith("train.steps")] + ["train.steps=6", "model.norm=pre"]
    train_main(load_config("tiny", sets), trained_run.parent / "data", run, progress=False)
    return run


def test_a_pre_ln_run_fills_masks_but_does_not_export(pre_ln_run, tmp_path, capsys):
    from zhbert.fillmask import fill_mask, load_masked_lm

    answers = fill_mask(load_masked_lm(pre_ln_run), ["北京是中国的[MASK]都。"], top_k=3)
    assert len(answers[0][0]) == 3
    out = tmp_path / "model"
    assert cli_main(["export", str(pre_ln_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pre-LN" in err and "model.norm=post" in err and "Traceback" not in err
    assert not out.exists()
