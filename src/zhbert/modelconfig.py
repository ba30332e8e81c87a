"""The model's settings: a config's [model] section completed by the vocabulary, the
data's masked-slot count and BERT's constants, and their names in transformers'
``BertConfig``. No torch here: the run directory, export and accounting read them
without building a model (zhbert.model builds it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from zhbert.config import NORMS, OBJECTIVES, ModelSection

PAD_ID = 0  # zhbert.vocab: [PAD]=0

@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelSection):
    """A config's [model] section (config.ModelSection: sizes, dropouts, objective) completed
    by the vocabulary, the data's masked-slot count and BERT's constants."""
    vocab_size: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_predictions: int = 20  # static M = ceil(mask_prob * T); 20 for T=128

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {self.objective!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}")

    @property
    def has_nsp(self) -> bool:
        """A sentence-pair head (pooler + NSP/SOP classifier)."""
        return OBJECTIVES[self.objective] is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_hf_config(self):
        """The equivalent ``transformers.BertConfig`` (post-LN BERT, exact-erf GELU).
        A pre-LN model has none: transformers' BERT is post-LN only."""
        from transformers import BertConfig

        if self.norm != "post":
            raise ValueError(f"a {self.norm}-LN model has no transformers BertConfig "
                             "(transformers' BERT is post-LN only)")

        return BertConfig(**{hf: getattr(self, k) for k, hf in HF_NAMES.items()},
                          hidden_act="gelu", pad_token_id=PAD_ID, tie_word_embeddings=True)


# ModelConfig field -> its name in transformers' BertConfig: both ways (export, loading back)
HF_NAMES = {"vocab_size": "vocab_size", "hidden_size": "hidden_size",
            "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
            "intermediate_size": "intermediate_size",
            "max_position_embeddings": "max_position_embeddings",
            "type_vocab_size": "type_vocab_size", "layer_norm_eps": "layer_norm_eps",
            "initializer_range": "initializer_range", "hidden_dropout": "hidden_dropout_prob",
            "attention_dropout": "attention_probs_dropout_prob"}


def preset(name: str, vocab_size: int, **overrides) -> ModelConfig:
    """The model of a config preset (configs/NAME.toml); ``overrides`` replace any other
    ModelConfig field."""
    from zhbert.config import PRESETS, load_config
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**asdict(load_config(name).model), "vocab_size": vocab_size, **overrides})
