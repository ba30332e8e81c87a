"""BERT for pretraining (MLM + NSP/SOP), fast and HF-compatible.

Parameter names are exactly those of ``transformers.BertForPreTraining`` (or of
``BertForMaskedLM`` for objective "mlm", which has no pooler and no NSP head), so

    hf = transformers.BertForPreTraining(cfg.to_hf_config())
    hf.load_state_dict(model.state_dict())          # strict, no renaming

works both ways (post-LN, BERT's and every preset's; a pre-LN model, ``model.norm = "pre"``,
adds ``bert.encoder.LayerNorm`` and computes something transformers' BERT does not).
The MLM decoder is tied to the word embeddings as in HF: its
``weight`` *is* ``bert.embeddings.word_embeddings.weight`` and its ``bias`` *is*
``cls.predictions.bias``; ``state_dict()`` lists the shared tensors under both
names (``TIED_KEYS``), like HF does, so strict loading needs no special case.
(For safetensors use ``safetensors.torch.save_model``/``load_model``, which
handle shared tensors, or drop the ``TIED_KEYS`` names before ``save_file``.)

What makes it faster than HF at equal shapes:
- the MLM head runs only at the M masked slots, never over all T positions (on the CPU
  only at the labelled ones: ``mlm_rows``), and the last layer only where the heads read,
  the masked slots and [CLS] (``Encoder``: keys and values still at all T; exact);
- q/k/v are one matmul (weights concatenated at forward, names unchanged);
- on the CPU a padded batch's layers run at its real tokens only (``zhbert.unpadding``;
  attention pads its projections back), where only some rows are read;
- no attention mask when the batch has no padding (known on the host: no sync); on the
  CPU with dropout or in bf16 the attention is written out (``written_out_attention``),
  elsewhere SDPA (on CUDA it does the dropout in its fused kernels);
- dropout from 8-bit lanes of 64-bit random words (``zhbert.dropout``);
- off the CPU, static shapes and no host syncs, so the step compiles into one graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from zhbert.dropout import Dropout
from zhbert.kernels import Linear, attention, cross_entropy, linear
from zhbert.hits import correct_and_count
from zhbert.unpadding import Unpadded, unpadded
# the model's settings live in modelconfig (no torch there); importable from here as before
from zhbert.modelconfig import HF_NAMES, PAD_ID, ModelConfig, preset  # noqa: F401

# names in state_dict() that share storage with another name (same as HF's _tied_weights_keys)
TIED_KEYS = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


# ----------------------------------------------------------------------------- modules
# Module nesting mirrors HF's only so that parameter names match 1:1.

class Embeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, C, padding_idx=PAD_ID)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                layout: Unpadded | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, C), or (N, C) at the real tokens (``layout``)."""
        T = input_ids.shape[1]
        # positions are always 0..T-1: slice the table instead of an index lookup (cheaper backward)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings.weight[:T])
        if layout is not None:  # before the norm and dropout: none of their work on padding
            x = layout.unpad(x)
        return self.dropout(self.LayerNorm(x))


# Devices where attention dropout is written out (attend_written_out). Elsewhere (CUDA)
# SDPA applies its own dropout inside its flash / memory-efficient kernels, which never
# materialise the (B, H, T, T) weights; the CPU has no such fused kernel with dropout.
EXPLICIT_DROPOUT_DEVICES = ("cpu",)


def written_out_attention(q: torch.Tensor, p: float) -> bool:
    """Whether attention runs as the written-out softmax(q k^T) v rather than SDPA: on the
    CPU with dropout (no fused kernel there), and on the CPU in bf16, where SDPA's flash
    kernel took 1.5-6x as long as the written-out path, forward + backward (a training step
    at length 16 spent a fifth of its time in SDPA's backward) and forward alone, at every
    shape measured, T = 16..512 (torch 2.13, AMD EPYC with AVX512-BF16; `python -m
    benchmarks.attention_paths`). In fp32 neither won throughout (written out up to 1.4x
    faster at T <= 32, SDPA up to 2.2x faster at T >= 64): SDPA kept."""
    if q.device.type not in EXPLICIT_DROPOUT_DEVICES:
        return False
    return p > 0 or q.dtype == torch.bfloat16


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.query, self.key, self.value = Linear(C, C), Linear(C, C), Linear(C, C)
        self.dropout = Dropout(cfg.attention_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                xq: torch.Tensor | None = None, layout: Unpadded | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); with ``xq`` (B, R, C), the rows of x whose outputs are
        wanted, -> (B, R, C): queries only there, keys and values everywhere. With
        ``layout``, x is (N, C) at the real tokens (unpadding.py), and so is the output."""
        if xq is not None:
            return self.attend_from(xq, x, mask, layout)
        # one (C, 3C) matmul instead of three; the params keep HF's separate names
        w = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        b = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        qkv = linear(x, w, b)  # (B, T, 3C), or (N, 3C): padded back for the attention
        out = self.attend_qkv(qkv if layout is None else layout.pad(qkv), mask)
        return out if layout is None else layout.unpad(out)

    def attend_qkv(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, 3C) fused projections -> (B, T, C)."""
        B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        H = self.num_heads
        p = self.dropout.p if self.training else 0.0
        if written_out_attention(qkv, p) and not torch.compiler.is_compiling():
            return attention(qkv, H, p, mask)  # the same, in fewer copies (kernels._Attention)
        # split (not select) into q, k, v: its backward is a cat, not zeros + 3 copies
        q, k, v = qkv.view(B, T, 3 * H, C // H).transpose(1, 2).split(H, dim=1)
        return self.attend(q, k, v, mask, p).transpose(1, 2).reshape(B, T, C)  # (B, T, C)

    def attend_from(self, xq: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None,
                    layout: Unpadded | None = None):
        """Queries from xq (B, R, C) attending over keys and values from x (B, T, C), or
        from x (N, C) at the real tokens (``layout``)."""
        H, (B, R, C) = self.num_heads, xq.shape
        w = torch.cat((self.key.weight, self.value.weight))
        b = torch.cat((self.key.bias, self.value.bias))
        kv = linear(x, w, b)
        kv = kv if layout is None else layout.pad(kv)  # (B, T, 2C)
        k, v = kv.view(B, kv.shape[1], 2 * H, C // H).transpose(1, 2).split(H, dim=1)
        q = self.query(xq).view(B, R, H, C // H).transpose(1, 2)
        p = self.dropout.p if self.training else 0.0
        return self.attend(q, k, v, mask, p).transpose(1, 2).reshape(B, R, C)

    def attend(self, q, k, v, mask: torch.Tensor | None, p: float) -> torch.Tensor:
        """(B, H, R, D) queries over (B, H, T, D) keys and values, by the path
        ``written_out_attention`` picks; mask None (no padding) lets SDPA take its flash
        kernel."""
        if written_out_attention(q, p):
            return self.attend_written_out(q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)

    def attend_written_out(self, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(q k^T / sqrt(D)) v with dropout on the weights (none in eval or at p = 0),
        (B, H, T, D) each. On the CPU, SDPA with dropout falls back to its math path anyway
        (which also turns a bool mask into an additive one); written out, it uses the faster
        ``zhbert.dropout.Dropout``. Where it runs: ``written_out_attention``. The last
        layer's queries are its R read rows: q (B, H, R, D), weights (B, H, R, T)."""
        # scale q (B, H, T, D) rather than the scores (B, H, T, T): half the elements at T=128, D=64
        att = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, T, T)
        if mask is not None:  # (B, 1, 1, T), True = real key
            att = att.masked_fill(~mask, float("-inf"))
        return self.dropout(att.softmax(-1)) @ v


class AddNorm(nn.Module):
    """LayerNorm(residual + dropout(dense(x))): HF's BertSelfOutput and BertOutput. Pre-LN
    (``model.norm = "pre"``): residual + dropout(dense(x)), and ``LayerNorm`` is the norm
    its sublayer's input goes through (``normed``): the same modules and names either way."""

    def __init__(self, d_in: int, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(d_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.pre = cfg.norm == "pre"

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        """What the sublayer reads: the stream itself (post-LN) or its LayerNorm (pre-LN)."""
        return self.LayerNorm(x) if self.pre else x

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        out = residual + self.dropout(self.dense(x))
        return out if self.pre else self.LayerNorm(out)


def _gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, T, C) at the positions ``rows`` (B, R) -> (B, R, C); unpadded x (N, C) at its
    rows ``rows`` (B, R) (``Unpadded.rows``) -> (B, R, C)."""
    if x.dim() == 2:
        return x[rows]
    return torch.gather(x, 1, rows[:, :, None].expand(-1, -1, x.shape[-1]))


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = AddNorm(cfg.hidden_size, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None,
                layout: Unpadded | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or only at the positions ``rows`` (B, R) -> (B, R, C);
        with ``layout``, x is (N, C) at the real tokens and ``rows`` are rows of it."""
        h = self.output.normed(x)
        if rows is None:
            return self.output(self.self(h, mask, layout=layout), x)
        hq = _gather_rows(h, rows)
        return self.output(self.self(h, mask, hq, layout), _gather_rows(x, rows) if h is not x else hq)


class Intermediate(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact erf GELU, HF's "gelu"


class Layer(nn.Module):
    """One transformer block: post-LN (BERT's) or pre-LN (``model.norm``). A pre-LN
    block has the same parameters under the same names, so nothing marks it as such
    but the config: transformers' BertModel would load its weights and compute
    something else, which is why `zhbert export` refuses it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = AddNorm(cfg.intermediate_size, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None,
                layout: Unpadded | None = None) -> torch.Tensor:
        x = self.attention(x, mask, rows, layout)  # past here each position is on its own
        return self.output(self.intermediate(self.output.normed(x)), x)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        # pre-LN: the residual stream is never normalised inside a block, so once after the last
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) \
            if cfg.norm == "pre" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None,
                layout: Unpadded | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); with ``rows`` (B, R) the last layer computes only the
        outputs at those positions, (B, R, C): nothing reads the others, and each position's
        queries, feed-forward and norms are its own (keys and values still come from all).
        With ``layout`` (and ``rows``), x is (N, C) at the real tokens (unpadding.py)."""
        *first, last = self.layer
        for layer in first:
            x = layer(x, mask, layout=layout)
        x = last(x, mask, rows if layout is None else layout.rows(rows), layout)
        return x if self.LayerNorm is None else self.LayerNorm(x)


class Pooler(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, C) from the [CLS] position


class Bert(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        if cfg.has_nsp:  # BertForMaskedLM has no pooler either
            self.pooler = Pooler(cfg)


class Transform(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class LMHead(nn.Module):
    """(..., C) -> (..., V); applied only to the rows it is given."""

    def __init__(self, cfg: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = Transform(cfg)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.decoder = Linear(cfg.hidden_size, cfg.vocab_size)
        self.decoder.weight = word_embeddings.weight  # tied, as in HF
        self.decoder.bias = self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class Heads(nn.Module):
    def __init__(self, cfg: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMHead(cfg, word_embeddings)
        if cfg.has_nsp:
            self.seq_relationship = Linear(cfg.hidden_size, 2)


class PretrainOutput(NamedTuple):
    loss: torch.Tensor            # mlm_loss + nsp_loss (or mlm_loss alone)
    mlm_loss: torch.Tensor
    nsp_loss: torch.Tensor | None
    mlm_logits: torch.Tensor      # (N, V) at the masked slots: see mlm_rows
    nsp_logits: torch.Tensor | None  # (B, 2)
    # 0-dim on-device counts: accuracy without a host sync in the step
    mlm_correct: torch.Tensor
    mlm_count: torch.Tensor
    nsp_correct: torch.Tensor | None
    nsp_count: torch.Tensor | None
    mlm_labels: torch.Tensor      # (N,) the labels of mlm_logits' rows (-100: padding)


def any_padding(attention_mask: torch.Tensor) -> bool:
    """Whether to apply the mask. The trainer asks while the batch is still on the host
    and passes the answer as ``padded``. Reading the mask is free on
    the CPU; on an accelerator it would make the host wait for the device at every
    forward, and a compiled graph would have to break for it: there the mask is kept
    (the result is the same, only the mask-free kernels are skipped)."""
    if torch.compiler.is_compiling() or attention_mask.device.type != "cpu":
        return True
    return not bool(attention_mask.all())


ROW_BUCKET = 64  # mlm_rows rounds its row count up to a multiple of this


class BertForPretraining(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.bert = Bert(cfg)
        self.cls = Heads(cfg, self.bert.embeddings.word_embeddings)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """HF's scheme: normal(0, initializer_range), zero biases, LayerNorm (1, 0),
        and a zero [PAD] embedding row."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if module is not self.cls.predictions.decoder:  # tied: set by the embedding / bias
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, LMHead):
            nn.init.zeros_(module.bias)

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
               attention_mask: torch.Tensor, padded: bool | None = None,
               rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids, types and bool mask (True = real token) -> hidden states (B, T, C),
        or (B, R, C) at the positions ``rows`` (B, R) only: the last layer then computes
        nothing else (see ``Encoder``). ``padded`` False says no row is padded (known on
        the host when the batch was built); None reads the mask where that is free (see
        ``any_padding``)."""
        # (B, 1, 1, T): one key mask broadcast over heads and queries; None when nothing
        # is padded (packed batches), so attention skips the masking work.
        if padded is None:
            padded = any_padding(attention_mask)
        mask = attention_mask.bool()[:, None, None, :] if padded else None
        # a padded batch's layers at its real tokens only, where only some rows are read
        layout = unpadded(attention_mask, padded) if rows is not None else None
        x = self.bert.embeddings(input_ids, token_type_ids, layout)
        return self.bert.encoder(x, mask, rows, layout)

    def mlm_rows(self, slots: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, V) and labels (N,) of the masked slots, from their hidden states
        ``slots`` (B, M, C) and labels (B, M). On the CPU the labelled slots
        first, in (B, M) order, and padding slots (label -100) only up to a multiple of
        ROW_BUCKET rows: a fifth of the (B, M) slots are padding in a `tiny` batch, and the
        head, the loss and the accuracy skip most of them. Elsewhere all B * M slots in
        (B, M) order, because counting the labelled ones would make the host wait for the
        device, and a compiled graph break, at every step. Padding rows count nowhere."""
        if labels.device.type != "cpu" or torch.compiler.is_compiling():
            return self.cls.predictions(slots.flatten(0, 1)), labels.flatten()
        flat = labels.flatten()
        # the labelled slots first (stable: in (B, M) order), then padding up to a multiple of
        # ROW_BUCKET: with a row count that changed every step, glibc's heap (never trimmed:
        # machine.tune_malloc) fragmented and a demo run's peak RSS went 0.82 -> 1.39 GB
        n = -(-int((flat != -100).sum()) // ROW_BUCKET) * ROW_BUCKET
        order = torch.argsort((flat == -100).to(torch.uint8), stable=True)[:n]
        return self.cls.predictions(slots.flatten(0, 1)[order]), flat[order]

    def fill_mask_logits(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                         attention_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits (B, M, V) for the tokens at ``positions`` (B, M), e.g. the [MASK] slots."""
        return self.cls.predictions(self.encode(input_ids, token_type_ids, attention_mask,
                                                rows=positions))

    def nsp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T or R, C) -> (B, 2) from row 0 ([CLS]); class 0 = B follows A (NSP) / in
        order (SOP)."""
        return self.cls.seq_relationship(self.bert.pooler(hidden))

    def forward(self, batch: dict[str, torch.Tensor], padded: bool | None = None) -> PretrainOutput:
        """One pretraining batch (the data.py batch contract) -> losses, logits, counts.
        ``padded``: as in ``encode``; the trainer passes what the host-side batch says.
        The last layer runs only where the heads read: [CLS] (NSP) and the masked slots."""
        positions, mlm_labels = batch["mlm_positions"], batch["mlm_labels"]
        if self.config.has_nsp:  # [CLS] first, so that the pooler's hidden[:, 0] is it
            positions = torch.cat((torch.zeros_like(positions[:, :1]), positions), 1)
        hidden = self.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                             padded, rows=positions)  # (B, [1 +] M, C)
        mlm_logits, labels = self.mlm_rows(hidden[:, int(self.config.has_nsp):], mlm_labels)
        mlm_loss = cross_entropy(mlm_logits, labels)
        mlm_correct, mlm_count = correct_and_count(mlm_logits, labels)
        if not self.config.has_nsp:
            return PretrainOutput(mlm_loss, mlm_loss, None, mlm_logits, None,
                                  mlm_correct, mlm_count, None, None, labels)
        nsp_logits = self.nsp_logits(hidden)
        nsp_labels = batch["nsp_labels"]
        nsp_loss = F.cross_entropy(nsp_logits.float(), nsp_labels)
        nsp_correct, nsp_count = correct_and_count(nsp_logits, nsp_labels)
        return PretrainOutput(mlm_loss + nsp_loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits,
                              mlm_correct, mlm_count, nsp_correct, nsp_count, labels)
