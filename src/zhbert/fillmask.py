"""`zhbert fill-mask`: the most likely tokens for each [MASK] in a sentence.

    zhbert fill-mask runs/demo "北京是中国的[MASK]都。" --top-k 5

MODEL is a run directory (its latest valid checkpoint, or --checkpoint STEP)
or a model directory written by `zhbert export`. Text is encoded with zhbert's
own encoder (the one training used); a literal "[MASK]" is the mask token, as
in BERT's tokenizer. Only the masked positions go through the vocabulary head.

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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zhbert.errors import UserError
from zhbert.precision import DTYPES
from zhbert.kernels import Linear, linear_gelu
from zhbert.vocab import MASK, Vocab

Candidates = list[tuple[str, float]]  # (token, probability), most likely first
QUANTIZE = (None, "int8")


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

    def describe(self) -> str:
        return "int8 dynamic, fp32 elsewhere" if self.quantize else self.precision


def make_masked_lm(model, vocab: Vocab, max_len: int, device, precision: str = "fp32",
                   source: str = "model", quantize: str | None = None,
                   language: str = "zh") -> MaskedLM:
    """A MaskedLM over an eval-mode BertForPretraining; ``precision`` already resolved."""
    if quantize and torch.device(device).type != "cpu":
        raise UserError("--quantize int8 runs on the CPU only (dynamic int8 kernels); "
                        "leave it out on a GPU")
    engine = InferenceEncoder(model, precision, quantize)
    return MaskedLM(model, vocab, max_len, device, precision, source, engine, quantize, language)


def load_masked_lm(path: str | Path, checkpoint: int | None = None, device=None,
                   precision: str = "auto", quantize: str | None = None) -> MaskedLM:
    """A run directory (latest valid / given checkpoint) or an exported model directory.
    ``precision="auto"`` takes the machine's fast path (bf16 only where it is native);
    ``quantize="int8"`` runs the encoder's Linear layers in dynamic int8 (CPU)."""
    from zhbert.run import (default_device, is_run_dir, load_run_model, open_run,
                            open_run_data, select_checkpoints)
    from zhbert.machine import detect_capabilities
    from zhbert.precision import resolve_precision

    path = Path(path)
    device = device or default_device()
    if is_run_dir(path):
        run = open_run(path)
        ref = select_checkpoints(path, checkpoint)[0]
        data = open_run_data(run)
        model, vocab, language = load_run_model(run, ref, device), data.vocab, data.language
        max_len, source = run.cfg.data.max_len, f"{path} step {ref.step}"
    elif (path / "model.safetensors").is_file():
        if checkpoint is not None:
            raise UserError(f"{path} is an exported model (one set of weights); --checkpoint "
                            "applies to run directories only")
        from zhbert.run import load_exported
        model, vocab, max_len = load_exported(path)
        language = json.loads((path / "config.json").read_text(encoding="utf-8")).get("zhbert_language", "zh")
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
    return make_masked_lm(model, vocab, max_len, device, precision, source, quantize, language)


def filled_text(lm: MaskedLM, sentence: str, masks: list[Candidates]) -> str:
    """``sentence`` with each [MASK] replaced by its most likely token, as text: a "##"
    piece joins the token before it, so a word predicted in pieces reads as one word."""
    from zhbert.corpus.languages import get as get_language

    best = iter([lm.vocab.id(cands[0][0]) for cands in masks])
    ids = [next(best) if i == lm.vocab.mask_id else i for i in lm.vocab.encode(sentence)]
    return lm.vocab.decode(ids, spaced=get_language(lm.language).word_spaces)


def _show_filled(lm: MaskedLM, masks: list[Candidates]) -> bool:
    """The filled sentence is worth a line when it is more than one token's swap: several
    masks, a "##" piece, or a language written with spaces."""
    from zhbert.corpus.languages import get as get_language

    return (len(masks) > 1 or get_language(lm.language).word_spaces
            or any(cands[0][0].startswith("##") for cands in masks))


def encode_masked(vocab: Vocab, sentence: str, max_len: int, where: str = "") -> list[int]:
    """[CLS] ids [SEP], with every literal [MASK] as the mask id (the encoder maps it)."""
    if MASK not in sentence:
        raise UserError(f"{where or repr(sentence)}: no [MASK] in the sentence; write [MASK] "
                        "where a token should be predicted, e.g. 北京是中国的[MASK]都。")
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
              where: Sequence[str] | None = None) -> list[list[Candidates]]:
    """For each sentence, for each [MASK] in order: the ``top_k`` (token, probability) pairs.
    Sentences are batched by length (less padding); the results are in input order.
    ``where`` names each sentence in errors ("in.txt line 3"; default "sentence N")."""
    lm = model_or_path if isinstance(model_or_path, MaskedLM) else load_masked_lm(model_or_path, checkpoint)
    if isinstance(sentences, str):
        sentences = [sentences]
    if top_k < 1 or batch_size < 1:
        raise UserError(f"--top-k and --batch-size must be at least 1 (got {top_k}, {batch_size})")
    top_k = min(top_k, len(lm.vocab) - len(lm.vocab.structural_ids))
    where = where or [f"sentence {i + 1}" for i in range(len(sentences))]
    encoded = [encode_masked(lm.vocab, s, lm.max_len, w) for s, w in zip(sentences, where)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # stable: ties keep input order
    out: list[list[Candidates]] = [[] for _ in encoded]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, result in zip(chunk, _batch_candidates(lm, [encoded[i] for i in chunk], top_k)):
                out[i] = result
    return out


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="run directory or exported model directory")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help='text with [MASK], e.g. "北京是中国的[MASK]都。"')
    p.add_argument("--input", metavar="FILE", help="a file of sentences, one per line, or a "
                   "CSV/TSV/JSONL table (its text column: see --text-column)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="checkpoint step (run directories)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 only where the CPU/GPU runs it natively, else fp32")
    p.add_argument("--quantize", default="none", choices=("none", "int8"),
                   help="int8: dynamic int8 Linear layers in the encoder (CPU; faster, "
                        "slightly different probabilities)")
    from zhbert.tables import add_table_arguments
    add_table_arguments(p, pair=False, label=False)  # --input as a table: its text column
    p.add_argument("--answer-column", metavar="NAME", default=ANSWER_COLUMN,
                   help="table column with the expected token of each sentence's first [MASK]: "
                        "its rank is printed, and how many answers are in the top k "
                        f"(default: {ANSWER_COLUMN!r} when the table has it)")


ANSWER_COLUMN = "answer"


def _read_sentences(args) -> tuple[list[str], list[str | None], list[str]]:
    """The sentences, each one's expected answer (None: not given), and where each came
    from, for errors: "sentence N" on the command line, "FILE line N" from --input (an
    error naming only "sentence 12" of a file left the user counting its lines)."""
    from zhbert.tables import is_table, read_table, table_options

    sentences = list(args.sentences)
    answers: list[str | None] = [None] * len(sentences)
    where = [f"sentence {i + 1}" for i in range(len(sentences))]
    if args.input and is_table(args.input):
        table = read_table(args.input, what="--input file", need_label=False, **table_options(args))
        column = getattr(args, "answer_column", ANSWER_COLUMN)
        if column != ANSWER_COLUMN and table.rows and column not in table.rows[0].extra:
            raise UserError(f"{args.input}: no column {column!r} for --answer-column "
                            f"(it has {', '.join([table.columns.text, *table.rows[0].extra])})")
        sentences += [r.text for r in table.rows]
        answers += [(r.extra.get(column) or "").strip() or None for r in table.rows]
        where += [f"{args.input} line {r.line}" for r in table.rows]
    elif args.input:
        from zhbert.corpus.sources import read_small_text

        text = read_small_text(args.input, "--input file")  # UTF-8, GBK, Big5, UTF-16
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        sentences += [line for _, line in lines]
        answers += [None] * len(lines)
        where += [f"{args.input} line {n}" for n, _ in lines]
    if not sentences:
        raise UserError('give a sentence with [MASK] (zhbert fill-mask MODEL "北京是中国的[MASK]都。") '
                        "or --input FILE")
    return sentences, answers, where


def answer_rank(masks: list[Candidates], answer: str | None) -> int | None:
    """1-based rank of the expected answer among the first [MASK]'s candidates; 0 when it is
    not among them; None when there is no answer (or no mask) to check."""
    if answer is None or not masks:
        return None
    tokens = [t for t, _ in masks[0]]
    return tokens.index(answer) + 1 if answer in tokens else 0


def _answer_line(answer: str, rank: int, masks: list[Candidates], top_k: int) -> str:
    if rank:
        return f"  answer {answer}: rank {rank} ({masks[0][rank - 1][1]:.3f})"
    return f"  answer {answer}: not in the top {top_k}"


def _usable(lm: MaskedLM, sentences, answers, where, given: int, strict: bool):
    """The --input lines this model can fill; the others (no [MASK], longer than the model)
    skipped with one warning, as table readers skip bad rows (one long line stopped a whole
    file). A sentence given on the command line, or any with --strict, is still an error."""
    keep, skipped = [], []
    for i, (s, w) in enumerate(zip(sentences, where)):
        try:
            encode_masked(lm.vocab, s, lm.max_len, w)
            keep.append(i)
        except UserError as exc:
            if i < given or strict:
                raise
            skipped.append(str(exc))
    if skipped:
        print(f"zhbert: warning: skipped {len(skipped)} of {len(sentences) - given} --input lines "
              f"(the first: {skipped[0]}); pass --strict to refuse such a file", file=sys.stderr)
    if not keep:
        raise UserError("no sentence left to fill (see the warning above)")
    return [sentences[i] for i in keep], [answers[i] for i in keep], [where[i] for i in keep]


def run(args) -> int:
    sentences, answers, where = _read_sentences(args)
    quantize = None if args.quantize == "none" else args.quantize
    lm = load_masked_lm(args.model, args.checkpoint, precision=args.precision, quantize=quantize)
    sentences, answers, where = _usable(lm, sentences, answers, where, len(args.sentences),
                                        getattr(args, "strict", False))
    results = fill_mask(lm, sentences, args.top_k, args.batch_size, where=where)
    ranks = [answer_rank(masks, a) for masks, a in zip(results, answers)]
    if args.json:
        rows = [{"sentence": s, "masks": [[{"token": t, "prob": p} for t, p in cands] for cands in masks],
                 "filled": filled_text(lm, s, masks), "answer": a, "answer_rank": r}
                for s, masks, a, r in zip(sentences, results, answers, ranks)]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"# {lm.source} ({lm.describe()})", file=sys.stderr)
    for s, masks, a, r in zip(sentences, results, answers, ranks):
        print(s)
        for m, cands in enumerate(masks, 1):
            print(f"  [MASK] {m}: " + "  ".join(f"{t} {p:.3f}" for t, p in cands))
        if _show_filled(lm, masks):
            print(f"  filled: {filled_text(lm, s, masks)}")
        if r is not None:
            print(_answer_line(a, r, masks, args.top_k))
    checked = [r for r in ranks if r is not None]
    if checked:
        print(f"answers in the top {args.top_k}: {sum(1 for r in checked if r)} of {len(checked)}"
              f" (top 1: {sum(1 for r in checked if r == 1)})")
    return 0
