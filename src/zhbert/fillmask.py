"""`zhbert fill-mask`: the most likely tokens for each [MASK] in a sentence.

    zhbert fill-mask runs/demo "北京是中国的[MASK]都。" --top-k 5

MODEL is a run directory (its latest valid checkpoint, or --checkpoint STEP)
or a model directory written by `zhbert export`. Text is normalised as `zhbert
prepare` cleaned the training text (``normalize``), then encoded with zhbert's own
encoder (the one training used); a literal "[MASK]" is the mask token, as in
BERT's tokenizer. Only the masked positions go through the vocabulary head.

Inference runs on ``InferenceEncoder``, a copy of the trained model's encoder
rebuilt for inference (the trained model itself stays untouched, in fp32):
- q/k/v are one ``nn.Linear`` (the training model concatenates their weights at
  every forward), so they can also be quantised;
- bf16/fp16: the Linear weights are cast once (no per-forward autocast casts) and
  attention runs in that dtype, while the residual stream, LayerNorm and the
  vocabulary head stay fp32;
- the last layer computes its attention output and FFN only at the [MASK]
  positions (nothing after it needs the other positions);
- sentences are sorted by length and batched with their neighbours, which cuts
  padding; results come back in input order;
- ``--quantize int8``: the encoder's Linear layers as dynamic int8 (per-channel
  weights; torch.ao.quantization.quantize_dynamic, CPU only); embeddings,
  attention, LayerNorm and the head stay fp32.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zhbert.errors import UserError
from zhbert.precision import DTYPES
from zhbert.kernels import Linear, linear_gelu
from zhbert.vocab import MASK, SPECIAL_TOKENS, Vocab

Candidates = list[tuple[str, float]]  # (token, probability), most likely first
QUANTIZE = (None, "int8")
# What reads as the mask token: [MASK] with ASCII or full-width brackets and letters, in any
# mix. A Chinese input method types ［ＭＡＳＫ］, or its letters alone full-width; cleaning's NFKC
# turned the letters to ASCII but kept the brackets (CJK punctuation), so [ＭＡＳＫ] was a mask
# and ［MASK］ refused. Capitals only, as the vocabulary's token: [mask] gets a hint instead.
MASK_SPELLINGS = re.compile(r"[\[［][MＭ][AＡ][SＳ][KＫ][\]］]")


def spelled_masks(sentence: str) -> str:
    """``sentence`` with each way of writing the mask (MASK_SPELLINGS) as [MASK]."""
    return MASK_SPELLINGS.sub(MASK, sentence)


# ----------------------------------------------------------------------------- inference model

def _linear_copy(src: nn.Linear, dtype: torch.dtype, weight=None, bias=None,
                 share: bool = True) -> nn.Linear:
    """``src`` itself when it already is in ``dtype`` and ``share`` (read only), else a
    new Linear holding its (or the given) weight and bias in ``dtype``: a
    ``zhbert.kernels.Linear`` (oneDNN where faster), or with ``share=False`` (the copies
    that int8 quantises) a plain ``nn.Linear``, the exact type quantize_dynamic converts."""
    if share and weight is None and src.weight.dtype == dtype:
        return src
    weight = src.weight if weight is None else weight
    bias = src.bias if bias is None else bias
    out = (Linear if share else nn.Linear)(weight.shape[1], weight.shape[0],
                                           device=weight.device, dtype=dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


class _Block(nn.Module):
    """One encoder layer (zhbert.model.Layer, post- or pre-LN) for inference. The Linear
    layers run in ``dtype`` (or int8 once quantised); the residual stream and LayerNorm in fp32."""

    def __init__(self, layer, num_heads: int, dtype: torch.dtype, share: bool = True):
        super().__init__()
        sa, attn_out = layer.attention.self, layer.attention.output
        self.num_heads, self.dtype, self.pre = num_heads, dtype, attn_out.pre
        self.qkv = _linear_copy(sa.query, dtype, torch.cat((sa.query.weight, sa.key.weight, sa.value.weight)),
                                torch.cat((sa.query.bias, sa.key.bias, sa.value.bias)), share=share)
        self.attn_out = _linear_copy(attn_out.dense, dtype, share=share)
        self.ln1 = attn_out.LayerNorm  # fp32, shared with the trained model (read only)
        self.ffn_in = _linear_copy(layer.intermediate.dense, dtype, share=share)
        self.ffn_out = _linear_copy(layer.output.dense, dtype, share=share)
        self.ln2 = layer.output.LayerNorm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) fp32 -> (B, T, C), or (B, M, C) at ``rows`` (B, M) only."""
        B, T, C = x.shape
        H = self.num_heads
        h = self.ln1(x) if self.pre else x  # pre-LN: attention reads the normed stream
        q, k, v = self.qkv(h.to(self.dtype)).view(B, T, 3 * H, C // H).transpose(1, 2).split(H, dim=1)
        if rows is not None:  # the queries (and everything after attention) at rows only
            q = q.gather(2, rows[:, None, :, None].expand(-1, H, -1, C // H))
            x = x.gather(1, rows[:, :, None].expand(-1, -1, C))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # mask None: no padding
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, -1, C)).float()
        x = x if self.pre else self.ln1(x)
        h = (self.ln2(x) if self.pre else x).to(self.dtype)
        h = linear_gelu(h, self.ffn_in.weight, self.ffn_in.bias) \
            if isinstance(self.ffn_in, Linear) else F.gelu(self.ffn_in(h))
        x = x + self.ffn_out(h).float()
        return x if self.pre else self.ln2(x)


class InferenceEncoder(nn.Module):
    """fill-mask logits from a trained zhbert.model.BertForPretraining, rebuilt for
    inference (see the module docstring). Same results as ``fill_mask_logits`` up to
    rounding in ``precision``. The embeddings and the MLM head are shared with
    ``model`` and run in fp32; the model itself is not changed."""

    def __init__(self, model, precision: str = "fp32", quantize: str | None = None):
        super().__init__()
        if quantize not in QUANTIZE:
            raise UserError(f"--quantize {quantize!r} is not one of none, int8")
        dtype = torch.float32 if quantize else DTYPES[precision]
        self.embeddings = model.bert.embeddings
        # int8: own copies of the Linear layers (quantising annotates the modules it converts)
        self.blocks = nn.ModuleList(_Block(layer, model.config.num_heads, dtype, share=not quantize)
                                    for layer in model.bert.encoder.layer)
        self.final_norm = model.bert.encoder.LayerNorm  # pre-LN's, after the last layer; else None
        self.head = model.cls.predictions
        self.eval()
        if quantize == "int8":
            import warnings
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
            with warnings.catch_warnings():  # torch.ao's deprecation notices: nothing a user can act on
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
                # int8 weights with one scale per output channel, activations quantised per batch
                quantize_dynamic(self.blocks, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and bool mask (True = real token), (B, M) positions -> (B, M, V) fp32."""
        mask = None if bool(attention_mask.all()) else attention_mask[:, None, None, :]
        x = self.embeddings(input_ids, torch.zeros_like(input_ids))
        for block in self.blocks[:-1]:
            x = block(x, mask)
        x = self.blocks[-1](x, mask, rows=positions)  # (B, M, C)
        return self.head(x if self.final_norm is None else self.final_norm(x))


@dataclass(frozen=True)
class MaskedLM:
    """A model ready for inference: weights, its vocabulary, where and how to run it."""
    model: Any            # zhbert.model.BertForPretraining, eval mode
    vocab: Vocab
    max_len: int          # longest input, special tokens included
    device: Any
    precision: str        # "fp32" | "bf16" | "fp16": the encoder's matmuls
    source: str           # what was loaded, for messages
    engine: Any           # InferenceEncoder over ``model`` (make_masked_lm builds it)
    quantize: str | None  # None | "int8"
    language: str = "zh"  # the corpus language (zhbert.corpus.languages): how filled text is written
    clean: Any = None     # corpus.clean.CleanConfig of the training text (make_masked_lm sets it)

    def describe(self) -> str:
        return "int8 dynamic, fp32 elsewhere" if self.quantize else self.precision


def make_masked_lm(model, vocab: Vocab, max_len: int, device, precision: str = "fp32",
                   source: str = "model", quantize: str | None = None,
                   language: str = "zh", clean: dict | None = None) -> MaskedLM:
    """A MaskedLM over an eval-mode BertForPretraining; ``precision`` already resolved.
    ``clean``: the data manifest's clean options, or an export's config.json zhbert_clean
    (None: an export from before zhbert_clean, or older data)."""
    from zhbert.corpus.clean import CleanConfig
    if quantize and torch.device(device).type != "cpu":
        raise UserError("--quantize int8 runs on the CPU only (dynamic int8 kernels); "
                        "leave it out on a GPU")
    engine = InferenceEncoder(model, precision, quantize)
    config = CleanConfig.recorded(clean, language)  # else OpenCC t2s where it applies
    return MaskedLM(model, vocab, max_len, device, precision, source, engine, quantize, language, config)


def _refuse_checkpoint_dir(path: Path) -> None:
    """A run's checkpoint folder holds model.safetensors, as an export does, but no model
    config: say what it is and how to read it, not that its config.json is missing."""
    from zhbert.checkpoint import checkpoint_step, is_checkpoint_dir
    if not is_checkpoint_dir(path):
        return
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    step = checkpoint_step(path.name)  # the folder's name, as list_checkpoints reads it
    run_arg = str(run) if run is not None else "RUN"
    step_arg = f"{step}" if step is not None else "STEP"
    raise UserError(f"{path} is a checkpoint of a training run, not an exported model: use "
                    f"`zhbert fill-mask {run_arg} --checkpoint {step_arg}`")


def load_masked_lm(path: str | Path, checkpoint: int | None = None, device=None,
                   precision: str = "auto", quantize: str | None = None) -> MaskedLM:
    """A run directory (latest valid / given checkpoint) or an exported model directory.
    ``precision="auto"`` takes the machine's fast path (bf16 only where it is native);
    ``quantize="int8"`` runs the encoder's Linear layers in dynamic int8 (CPU)."""
    from zhbert.run import (EXPORT_MARKER, default_device, is_run_dir, load_run_model, open_run,
                            open_run_data, select_checkpoints)
    from zhbert.machine import detect_capabilities
    from zhbert.precision import resolve_precision

    path = Path(path)
    device = device or default_device()
    # a run whose config.json no longer reads is still a run (its history says so): open_run
    # names the corrupt file, where "neither a run nor an export" sent the user to the path
    if is_run_dir(path) or (path / "history.jsonl").is_file() and not (path / EXPORT_MARKER).is_file():
        run = open_run(path)
        ref = select_checkpoints(path, checkpoint)[0]
        data = open_run_data(run)
        model, vocab, language = load_run_model(run, ref, device), data.vocab, data.language
        clean = data.clean_options
        max_len, source = run.cfg.data.max_len, f"{path} step {ref.step}"
    elif (path / EXPORT_MARKER).is_file():
        _refuse_checkpoint_dir(path)  # it holds model.safetensors too
        if checkpoint is not None:
            raise UserError(f"{path} is an exported model (one set of weights); --checkpoint "
                            "applies to run directories only")
        from zhbert.run import load_exported
        model, vocab, max_len = load_exported(path)
        hf = json.loads((path / "config.json").read_text(encoding="utf-8"))
        language = hf.get("zhbert_language", "zh")
        # the training text's cleaning (OpenCC s2t, kept URLs, ...); an export from before
        # zhbert_clean: None, the language's default cleaning
        clean = hf.get("zhbert_clean") if isinstance(hf.get("zhbert_clean"), dict) else None
        model, source = model.to(device).eval(), str(path)
    else:
        raise UserError(f"{path} is neither a run directory (config.json from zhbert train) "
                        "nor an exported model directory (model.safetensors); check the path")
    if quantize == "int8":  # other values: InferenceEncoder refuses them
        if precision not in ("auto", "fp32"):
            raise UserError(f"--quantize int8 runs everything that is not int8 in fp32; "
                            f"use it with --precision auto or fp32, not {precision}")
        precision = "fp32"  # the int8 layers take fp32 activations
    precision = resolve_precision(precision, detect_capabilities(device)).precision
    return make_masked_lm(model, vocab, max_len, device, precision, source, quantize, language, clean)


def normalize(lm: MaskedLM, sentence: str) -> str:
    """``sentence`` as `zhbert prepare` wrote the training text (its clean_text: NFKC, OpenCC,
    ...; not its sentence filters). A private-use character stands in for each [MASK]: NFKC
    and OpenCC leave it alone and the URL pattern stops at it ("www.[MASK].com" is a URL)."""
    from zhbert.corpus.clean import clean_text
    sentence = spelled_masks(sentence)  # before NFKC, which would fold half of ［ＭＡＳＫ］
    stand_in = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in sentence)
    text = clean_text(sentence.replace(MASK, stand_in), lm.clean)
    assert text.count(stand_in) == sentence.count(MASK), (sentence, text)
    return text.replace(stand_in, MASK)


def unknown_chars(vocab: Vocab, text: str) -> list[str]:
    """The characters of ``text`` the vocabulary lacks (each once): the model reads [UNK] there.
    A word WordPiece cannot cut is one [UNK]: its characters with no piece, else the word."""
    from zhbert.vocab import bert_words
    out: list[str] = []
    for word, _ in bert_words(text):
        if word in SPECIAL_TOKENS or vocab.unk_id not in vocab.encode(word):
            continue
        chars = [c for i, c in enumerate(word) if c not in vocab and (i == 0 or "##" + c not in vocab)]
        out += chars or [word]
    return list(dict.fromkeys(out))


def filled_text(lm: MaskedLM, sentence: str, masks: list[Candidates]) -> str:
    """``sentence`` with each [MASK] replaced by its most likely token. The sentence's own
    text and spaces stay (re-encoding and decoding put spaces between Japanese kana words);
    a "##" piece is glued to the text before it; in a language written with spaces, a word
    touching a letter or digit is spaced from it (BERT splits at a [MASK]: two words)."""
    import re
    from zhbert.corpus.languages import get as get_language
    lang = get_language(lm.language)
    letter = re.compile(f"[{lang.script}0-9]") if lang.word_spaces else None  # of a spaced word
    touch = lambda a, b: letter is not None and bool(letter.match(a) and letter.match(b))  # noqa: E731
    parts = sentence.split(MASK)
    out = parts[0]
    for cands, after in zip(masks, parts[1:]):
        tok = cands[0][0]
        if tok.startswith("##") and len(tok) > 2:
            out, tok = out.rstrip(" "), tok[2:]
        elif out and touch(out[-1], tok[0]):
            out += " "
        out += tok + (" " if after and touch(tok[-1], after[0]) else "") + after
    return out


def show_filled(lm: MaskedLM, masks: list[Candidates]) -> bool:
    """The filled sentence is worth a line when it is more than one token's swap: several
    masks, a "##" piece, or a language written with spaces."""
    from zhbert.corpus.languages import get as get_language

    return (len(masks) > 1 or get_language(lm.language).word_spaces
            or any(cands[0][0].startswith("##") for cands in masks))


def _mask_hint(sentence: str) -> str:
    """What the written mask lacks: capitals ([mask], ［ｍａｓｋ］), or ASCII where it is in
    other compatibility characters that NFKC reads as [MASK] (circled or mathematical
    letters; full-width ones are a mask: MASK_SPELLINGS)."""
    import unicodedata
    folded = unicodedata.normalize("NFKC", sentence)
    if MASK in folded:
        return " (in ASCII letters)"
    return " (in capitals)" if MASK.lower() in folded.lower() else ""


def encode_masked(vocab: Vocab, sentence: str, max_len: int, where: str = "",
                  language: str = "zh") -> list[int]:
    """[CLS] ids [SEP], with every literal [MASK] as the mask id (the encoder maps it)."""
    from zhbert.corpus.languages import get as get_language
    sentence = spelled_masks(sentence)  # as ``normalize`` reads it, for a caller that did not
    if MASK not in sentence:  # the example in the model's language (an English model got a Chinese one)
        case = _mask_hint(sentence)
        raise UserError(f"{where or repr(sentence)}: no [MASK] in the sentence; write [MASK]{case} "
                        f"where a token should be predicted, e.g. {get_language(language).mask_example}")
    ids = [vocab.cls_id] + vocab.encode(sentence) + [vocab.sep_id]
    if len(ids) > max_len:
        raise UserError(f"{where or repr(sentence[:30])}: {len(ids)} tokens with [CLS]/[SEP], "
                        f"longer than the model's {max_len}; shorten the sentence")
    return ids


def _batch_candidates(lm: MaskedLM, batch: list[list[int]], top_k: int) -> list[list[Candidates]]:
    B, T = len(batch), max(len(ids) for ids in batch)
    masks = [[t for t, i in enumerate(ids) if i == lm.vocab.mask_id] for ids in batch]
    M = max(len(m) for m in masks)
    # [PAD] = 0; unused position slots read position 0, then are dropped
    input_ids = torch.tensor([ids + [0] * (T - len(ids)) for ids in batch])
    positions = torch.tensor([pos + [0] * (M - len(pos)) for pos in masks])
    attention = input_ids != 0
    logits = lm.engine(input_ids.to(lm.device), attention.to(lm.device), positions.to(lm.device))
    probs = logits.float().softmax(-1)
    # structural tokens are never an answer (they would fill a large --top-k's tail)
    probs[..., list(lm.vocab.structural_ids)] = -1.0
    probs, ids = probs.topk(top_k, dim=-1)  # (B, M, k)
    probs, ids = probs.cpu().tolist(), ids.cpu().tolist()
    return [[[(lm.vocab.tokens[t], p) for t, p in zip(ids[b][m], probs[b][m])]
             for m in range(len(masks[b]))] for b in range(B)]


def fill_mask(model_or_path: MaskedLM | str | Path, sentences: str | Sequence[str], top_k: int = 5,
              batch_size: int = 32, checkpoint: int | None = None,
              where: Sequence[str] | None = None, normalized: bool = False) -> list[list[Candidates]]:
    """For each sentence, for each [MASK] in order: the ``top_k`` (token, probability) pairs.
    Sentences are batched by length (less padding); the results are in input order.
    ``where`` names each sentence in errors ("in.txt line 3"; default "sentence N").
    Sentences are ``normalize``d first unless ``normalized`` says the caller did that."""
    lm = model_or_path if isinstance(model_or_path, MaskedLM) else load_masked_lm(model_or_path, checkpoint)
    if isinstance(sentences, str):
        sentences = [sentences]
    if not normalized:
        sentences = [normalize(lm, s) for s in sentences]
    if top_k < 1 or batch_size < 1:
        raise UserError(f"--top-k and --batch-size must be at least 1 (got {top_k}, {batch_size})")
    top_k = min(top_k, len(lm.vocab) - len(lm.vocab.structural_ids))
    where = where or [f"sentence {i + 1}" for i in range(len(sentences))]
    encoded = [encode_masked(lm.vocab, s, lm.max_len, w, lm.language) for s, w in zip(sentences, where)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # stable: ties keep input order
    out: list[list[Candidates]] = [[] for _ in encoded]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, result in zip(chunk, _batch_candidates(lm, [encoded[i] for i in chunk], top_k)):
                out[i] = result
    return out
