"""What a model costs: parameter counts and training FLOPs per token (benchmarks and
the model's tests read them; nothing in the training step needs them)."""

from __future__ import annotations

from torch import nn

from zhbert.modelconfig import ModelConfig


def count_parameters(model: nn.Module, non_embedding: bool = True) -> int:
    """Distinct parameters (the tied decoder counts once); ``non_embedding`` leaves out
    the word, position and token-type embedding tables (Kaplan et al.'s convention)."""
    skip = set()
    if non_embedding:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def encoder_layer_parameters(cfg: ModelConfig) -> int:
    """Parameters of one transformer block: q, k, v, out (C*C + C each), FFN, two LayerNorms."""
    C, F_ = cfg.hidden_size, cfg.intermediate_size
    return 4 * (C * C + C) + (C * F_ + F_) + (F_ * C + C) + 2 * 2 * C


def flops_per_token(cfg: ModelConfig, seq_len: int, masked_fraction: float,
                    read_fraction: float = 1.0) -> float:
    """Training FLOPs (forward + backward = 3 x forward, 2 FLOPs per multiply-add) per
    input token, counting matmuls only:

    - encoder: 6 x (layers x encoder_layer_parameters) at every token, except that the
      last layer's query, output and feed-forward matmuls, and its attention, run at
      ``read_fraction`` of the tokens (its keys and values at all): pass 1.0 for a model
      that computes the last layer everywhere (HF), (M + 1) / seq_len for this model
      (it runs the last layer only at the M masked slots and [CLS]: model.Encoder; M /
      seq_len for objective "mlm", which has no [CLS] head);
    - attention scores and weighted sum: 12 x layers x hidden x seq_len at every token
      (QK^T and AV are 2 x T x C multiply-adds per token per layer, x 2 x 3);
    - MLM head (transform C x C + tied decoder C x V, with biases) at ``masked_fraction``
      of the tokens: pass max_predictions / seq_len for what this model computes (it runs
      the head on all M static slots, padded ones included);
    - pooler + NSP head (C x C + C x 2) once per sequence, i.e. divided by seq_len, when
      the objective has NSP/SOP.

    Not counted: embedding lookups, LayerNorm, GELU, softmax, dropout, the loss, and the
    optimizer step (all O(params) or O(T x C) elementwise work).
    """
    C, V, L = cfg.hidden_size, cfg.vocab_size, cfg.num_layers
    layer, key_value = encoder_layer_parameters(cfg), 2 * (C * C + C)
    encoder = 6 * ((L - 1) * layer + key_value + read_fraction * (layer - key_value))
    attention = 12 * C * seq_len * (L - 1 + read_fraction)
    mlm_head = 6 * masked_fraction * ((C * C + C) + 2 * C + (C * V + V))
    nsp_head = 6 * ((C * C + C) + (2 * C + 2)) / seq_len if cfg.has_nsp else 0.0
    return float(encoder + attention + mlm_head + nsp_head)


def training_bytes_lower_bound(cfg: ModelConfig, batch_size: int, seq_len: int) -> int:
    """Memory a training step cannot do without, as a floor (``train`` refuses a config
    whose floor exceeds the machine: a size typed with extra zeros allocated until the
    machine swapped, or failed in torch's allocator after the run directory was written):
    16 bytes a parameter (fp32 weight, gradient, AdamW's two moments) and, per layer, the
    bf16 activations the backward pass must keep at least (each layer's input and its
    feed-forward's intermediate; the last layer's feed-forward runs only at the M masked
    slots and [CLS], model.Encoder)."""
    C, F_, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    params = (cfg.vocab_size + cfg.max_position_embeddings + 2) * C + L * encoder_layer_parameters(cfg)
    per_sequence = L * seq_len * C + (L - 1) * seq_len * F_ + (cfg.max_predictions + 1) * F_
    return 16 * params + 2 * batch_size * per_sequence
