"""`zhbert fill-mask`: the most likely tokens for each [MASK] in a sentence.

    zhbert fill-mask runs/demo "北京是中国的[MASK]都。" --top-k 5

MODEL is a run directory (its latest valid checkpoint, or --checkpoint STEP)
or a model directory written by `zhbert export`. Text is encoded with zhbert's
own encoder (the one training used); a literal "[MASK]" is the mask token, as
in BERT's tokenizer. Only the masked positions go through the vocabulary head.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from zhbert.errors import UserError
from zhbert.vocab import MASK, Vocab

Candidates = list[tuple[str, float]]  # (token, probability), most likely first


@dataclass(frozen=True)
class MaskedLM:
    """A model ready for inference: weights, its vocabulary, where and how to run it."""
    model: Any            # zhbert.model.BertForPretraining, eval mode
    vocab: Vocab
    max_len: int          # longest input, special tokens included
    device: Any
    precision: str        # "fp32" | "bf16" | "fp16"
    source: str           # what was loaded, for messages


def load_masked_lm(path: str | Path, checkpoint: int | None = None, device=None,
                   precision: str = "auto") -> MaskedLM:
    """A run directory (latest valid / given checkpoint) or an exported model directory.
    ``precision="auto"`` takes the machine's fast path (bf16 only where it is native)."""
    from zhbert.checkpoint_eval import (default_device, is_run_dir, load_run_model, open_run,
                                       open_run_data, select_checkpoints)
    from zhbert.machine import detect_capabilities
    from zhbert.precision import resolve_precision

    path = Path(path)
    device = device or default_device()
    if is_run_dir(path):
        run = open_run(path)
        ref = select_checkpoints(path, checkpoint)[0]
        model, vocab = load_run_model(run, ref, device), open_run_data(run).vocab
        max_len, source = run.cfg.data.max_len, f"{path} step {ref.step}"
    elif (path / "model.safetensors").is_file():
        if checkpoint is not None:
            raise UserError(f"{path} is an exported model (one set of weights); --checkpoint "
                            "applies to run directories only")
        from zhbert.export import load_exported
        model, vocab, max_len = load_exported(path)
        model, source = model.to(device).eval(), str(path)
    else:
        raise UserError(f"{path} is neither a run directory (config.json from zhbert train) "
                        "nor an exported model directory (model.safetensors); check the path")
    precision = resolve_precision(precision, detect_capabilities(device)).precision
    return MaskedLM(model, vocab, max_len, device, precision, source)


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
    import torch
    from zhbert.precision import autocast_context

    B, T = len(batch), max(len(ids) for ids in batch)
    masks = [[t for t, i in enumerate(ids) if i == lm.vocab.mask_id] for ids in batch]
    M = max(len(m) for m in masks)
    input_ids = torch.zeros(B, T, dtype=torch.long)  # [PAD] = 0
    positions = torch.zeros(B, M, dtype=torch.long)  # unused slots read position 0, then dropped
    for b, (ids, pos) in enumerate(zip(batch, masks)):
        input_ids[b, :len(ids)] = torch.tensor(ids)
        positions[b, :len(pos)] = torch.tensor(pos)
    attention = input_ids != 0
    with torch.inference_mode(), autocast_context(lm.precision, lm.device):
        logits = lm.model.fill_mask_logits(input_ids.to(lm.device), torch.zeros_like(input_ids).to(lm.device),
                                           attention.to(lm.device), positions.to(lm.device))  # (B, M, V)
    probs, ids = logits.float().softmax(-1).topk(top_k, dim=-1)  # (B, M, k)
    probs, ids = probs.cpu().tolist(), ids.cpu().tolist()
    return [[[(lm.vocab.tokens[t], p) for t, p in zip(ids[b][m], probs[b][m])]
             for m in range(len(masks[b]))] for b in range(B)]


def fill_mask(model_or_path: MaskedLM | str | Path, sentences: str | Sequence[str], top_k: int = 5,
              batch_size: int = 32, checkpoint: int | None = None) -> list[list[Candidates]]:
    """For each sentence, for each [MASK] in order: the ``top_k`` (token, probability) pairs."""
    lm = model_or_path if isinstance(model_or_path, MaskedLM) else load_masked_lm(model_or_path, checkpoint)
    if isinstance(sentences, str):
        sentences = [sentences]
    if top_k < 1 or batch_size < 1:
        raise UserError(f"--top-k and --batch-size must be at least 1 (got {top_k}, {batch_size})")
    top_k = min(top_k, len(lm.vocab))
    encoded = [encode_masked(lm.vocab, s, lm.max_len, f"sentence {i + 1}") for i, s in enumerate(sentences)]
    out: list[list[Candidates]] = []
    for i in range(0, len(encoded), batch_size):
        out += _batch_candidates(lm, encoded[i:i + batch_size], top_k)
    return out


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="run directory or exported model directory")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help='text with [MASK], e.g. "北京是中国的[MASK]都。"')
    p.add_argument("--input", metavar="FILE", help="a file of sentences, one per line")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--checkpoint", type=int, metavar="STEP", help="checkpoint step (run directories)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16 only where the CPU/GPU runs it natively, else fp32")


def _read_sentences(args) -> list[str]:
    sentences = list(args.sentences)
    if args.input:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"--input file not found: {args.input}") from None
        except UnicodeDecodeError:
            raise UserError(f"--input file {args.input} is not UTF-8 text") from None
        sentences += [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise UserError('give a sentence with [MASK] (zhbert fill-mask MODEL "北京是中国的[MASK]都。") '
                        "or --input FILE")
    return sentences


def run(args) -> int:
    sentences = _read_sentences(args)
    lm = load_masked_lm(args.model, args.checkpoint, precision=args.precision)
    results = fill_mask(lm, sentences, args.top_k, args.batch_size)
    if args.json:
        rows = [{"sentence": s, "masks": [[{"token": t, "prob": p} for t, p in cands] for cands in masks]}
                for s, masks in zip(sentences, results)]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"# {lm.source} ({lm.precision})", file=sys.stderr)
    for s, masks in zip(sentences, results):
        print(s)
        for m, cands in enumerate(masks, 1):
            print(f"  [MASK] {m}: " + "  ".join(f"{t} {p:.3f}" for t, p in cands))
    return 0
