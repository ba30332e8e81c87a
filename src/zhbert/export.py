"""`zhbert export`: a run's checkpoint -> a Hugging Face model directory.

    zhbert export runs/demo --out models/demo
    python -c "from transformers import pipeline; print(pipeline('fill-mask', model='models/demo')('北京是中国的[MASK]都。'))"

The model's parameter names are those of transformers' BertForPreTraining (see
model.py), so the weights are written as they are, minus the tied decoder
names (HF re-ties ``cls.predictions.decoder`` to the word embeddings and to
``cls.predictions.bias`` on load, and writes its own files the same way).
vocab.txt is the run's vocabulary (characters or WordPiece); with do_lower_case
false HF's BERT tokenizer gives exactly zhbert's ids (tests/test_vocab.py,
tests/test_export.py, tests/test_lang_model.py), and tokenizer.json is the same
tokenizer for the fast loader, with zhbert's text cleaning as its normalizer
(export_tokenizer.py). config.json records the corpus language
(``zhbert_language``), which fill-mask reads back for its output, and the training
text's cleaning options (``zhbert_clean``: the script conversion no normalizer can do),
which fill-mask applies as it does on the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.fileio import (atomic_write_json, atomic_write_text, refuse_existing, staged_dir,
                           usual_permissions)
from zhbert.export_tokenizer import write_tokenizer_json
from zhbert.outputs import check_out, json_object, output_kind
from zhbert.run import EXPORT_MARKER  # what an export directory holds (a run's top level never)
from zhbert.vocab import CLS, MASK, PAD, SEP, UNK

CARD_TITLE = "# zhbert "  # the model card's first line (model_card), in every export


def is_export(folder: Path) -> bool:
    """Every Hugging Face model folder holds model.safetensors: an export is told by what only
    zhbert writes beside it, config.json's zhbert_language or (exports from before it) the
    model card's title."""
    if "zhbert_language" in json_object(folder / "config.json"):
        return True
    card = folder / "README.md"
    if not card.is_file():  # a FIFO would block the read
        return False
    try:
        with open(card, encoding="utf-8") as f:
            return f.readline(200).startswith(CARD_TITLE)
    except (OSError, ValueError):  # ValueError: not UTF-8
        return False


output_kind(EXPORT_MARKER, "zhbert export", is_export)


def _refuse_checkpoint(out: Path) -> None:
    """A checkpoint holds model.safetensors too (the export marker): --force replaced a run's
    checkpoint with the export, and status then read it as corrupt."""
    inside = next((p for p in (out.resolve(), *out.resolve().parents)
                   if p.name == "checkpoints" and (p.parent / "history.jsonl").exists()), None)
    from zhbert.checkpoint import is_checkpoint_dir
    if is_checkpoint_dir(out) or inside:
        raise UserError(f"--out {out} is a training run's checkpoint (or inside its checkpoints "
                        "folder), which export would replace: choose a folder outside the run's "
                        "checkpoints, e.g. models/NAME")


def hf_state_dict(model) -> dict[str, Any]:
    """The weights under HF's names, tied duplicates dropped, as contiguous CPU tensors."""
    from zhbert.model import TIED_KEYS
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in TIED_KEYS}


def tokenizer_files(max_len: int) -> dict[str, dict]:
    special = {"unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK}
    # PreTrainedTokenizerFast: loaded from tokenizer.json as written, zhbert's cleaning
    # (normalizer) included. "BertTokenizer" made transformers 5 rebuild the tokenizer from
    # vocab.txt, which dropped the normalizer (full-width ＡＢＣ read as [UNK]). The BERT
    # options stay for readers of the file; model_input_names keeps token_type_ids, which
    # the generic class leaves out.
    config = {"tokenizer_class": "PreTrainedTokenizerFast",
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
              "do_lower_case": False, "do_basic_tokenize": True,
              "tokenize_chinese_chars": True, "strip_accents": None, "model_max_length": max_len,
              "clean_up_tokenization_spaces": False, **special}
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def _last_eval(run_dir: Path, step: int) -> dict[str, Any] | None:
    from zhbert.history import iter_records
    path = run_dir / "history.jsonl"
    if not path.exists():
        return None
    evals = [r for r in iter_records(path) if r.get("type") == "eval" and r.get("step", 0) <= step]
    return evals[-1] if evals else None


_SCRIPTS = {"t2s": "simplified Chinese characters (the training text was converted from "
                   "traditional with OpenCC t2s)",
            "s2t": "traditional Chinese characters (the training text was converted from "
                   "simplified with OpenCC s2t)"}


def training_clean(data) -> dict[str, Any]:
    """The data manifest's cleaning options (corpus.clean.CleanConfig), complete; data from
    before the manifest recorded them: prepare's defaults for the language, as fill-mask reads it."""
    from zhbert.corpus.clean import CleanConfig
    return CleanConfig.recorded(data.clean_options, data.language).to_json()


def _input_text(clean: dict[str, Any]) -> tuple[list[str], str]:
    """The model card's "Input text" lines and the script its fill-mask example is written in.
    A tokenizer normalizer cannot convert scripts: the reader has to, so the card says which."""
    script = clean.get("script", "keep")
    lines = ["## Input text", ""]
    if script in _SCRIPTS:
        lines += [f"The model expects {_SCRIPTS[script]}. No tokenizer converts scripts: convert "
                  f"text with OpenCC first (`opencc.OpenCC(\"{script}\").convert(text)`); "
                  "`zhbert fill-mask` on this directory does so itself.", ""]
    elif clean.get("language", "zh") == "zh":
        lines += ["The training text kept its own characters (no OpenCC conversion).", ""]
    urls = " URLs and e-mail addresses removed;" if clean.get("remove_urls", True) else ""
    from zhbert.corpus.clean import PROTECTED
    lines += ["tokenizer.json (the fast tokenizer: AutoTokenizer's and pipeline's default) cleans "
              f"text as the training text was: NFKC, except that the full-width punctuation "
              f"{PROTECTED} stays; control and zero-width characters removed;"
              f"{urls} spaces between CJK characters dropped. A tokenizer built from vocab.txt "
              "(`BertTokenizer.from_pretrained` on this folder, or `use_fast=False` in "
              "transformers 4) does none of this: give it text cleaned so, or full-width letters "
              "and digits (ＡＢＣ, ２５) read as [UNK]. The settings are config.json's "
              "`zhbert_clean`.", ""]
    return lines, script


def model_card(run, step: int, tokens: int | None, last_eval: dict | None, max_len: int,
               language: str = "zh", tokenizer: str = "char", clean: dict | None = None) -> str:
    from zhbert.corpus.languages import get as get_language

    c, lang = run.cfg, get_language(language)
    text_lines, script = _input_text(clean or {"language": language,
                                               "script": lang.default_conversion})
    example = lang.mask_example
    if script != "keep":  # the example in the script the model read
        from zhbert.corpus.clean import _converter
        example = _converter(script).convert(example)
    kind = "WordPiece" if tokenizer == "wordpiece" else "character-level"
    lines = [f"{CARD_TITLE}{run.path.name} (step {step:,})", "",
             f"A BERT for {lang.name} pretrained from scratch with zhbert: {kind} vocabulary "
             f"({run.vocab_size:,} tokens), objective {c.model.objective}.", "",
             "## Training", "",
             f"- model: hidden {c.model.hidden_size}, layers {c.model.num_layers}, heads "
             f"{c.model.num_heads}, FFN {c.model.intermediate_size}",
             f"- data: max_len {max_len}, mask_prob {c.data.mask_prob}, whole_word {c.data.whole_word}",
             f"- optimizer: AdamW lr {c.train.lr}, {c.train.schedule} schedule, warm-up "
             f"{c.train.warmup_steps}, batch {c.train.batch_size} x accum {c.train.grad_accum}",
             f"- steps: {step:,} of {c.train.steps:,}" + (f"; tokens seen: {tokens:,}" if tokens else ""),
             f"- config hash: {c.hash()}", "", "## Held-out evaluation", ""]
    if last_eval:
        lo, hi = last_eval.get("eval_mlm_acc_ci95") or [float("nan")] * 2
        lines += [f"At step {last_eval['step']:,} (fixed validation masking, {last_eval.get('eval_masked')} "
                  "masked tokens):", "",
                  f"- MLM accuracy {last_eval['eval_mlm_acc']:.4f} (95% CI {lo:.4f}-{hi:.4f})",
                  f"- MLM loss {last_eval['eval_mlm_loss']:.4f}, perplexity {last_eval['eval_ppl']:.2f}"]
        for key, name in (("eval_nsp_acc", "NSP"), ("eval_sop_acc", "SOP")):
            if last_eval.get(key) is not None:
                lines.append(f"- {name} accuracy {last_eval[key]:.4f}")
    else:
        lines.append("No evaluation was recorded up to this step.")
    lines += ["", *text_lines, "## Use", "", "```python", "from transformers import pipeline",
              "fill = pipeline(\"fill-mask\", model=\"PATH/TO/THIS/DIR\")",
              f"fill({json.dumps(example, ensure_ascii=False)})", "```", "",
              f"Positions beyond {max_len} tokens were never trained (model_max_length).", ""]
    return "\n".join(lines)


def export_run(run_dir: str | Path, out: str | Path, checkpoint: int | None = None,
               force: bool = False) -> tuple[Path, int]:
    """Write a transformers-loadable model directory for one checkpoint; returns ``out`` and
    the checkpoint's step (not always the newest: a corrupt one is passed over)."""
    from safetensors.torch import save_file
    from zhbert.checkpoint import safetensors_io
    from zhbert.run import (load_run_checkpoint, open_run, open_run_data, select_checkpoints,
                            state_tokens)
    import torch

    run = open_run(run_dir)
    if run.cfg.model.norm != "post":
        raise UserError(f"{run.path} trained a {run.cfg.model.norm}-LN model (model.norm = "
                        f"{run.cfg.model.norm!r}): transformers' BERT is post-LN only, and would "
                        "load these weights and compute something else. Use the run with "
                        "`zhbert fill-mask` / `zhbert probe`, or train with model.norm=post to export")
    out = Path(out)
    _refuse_checkpoint(out)
    check_out(out, EXPORT_MARKER)  # never a run or a folder of other files
    refuse_existing(out, force)  # before the model loads (staged_dir asks again)
    ref = select_checkpoints(run.path, checkpoint)[0]
    data = open_run_data(run)
    vocab = data.vocab
    # state.json read with the weights: retention may delete the checkpoint right after
    model, state = load_run_checkpoint(run, ref, torch.device("cpu"))
    hf_config = model.config.to_hf_config()
    # a sentence-pair head (NSP or SOP) is BertForPreTraining's; MLM alone is BertForMaskedLM's
    hf_config.architectures = ["BertForPreTraining" if model.config.has_nsp else "BertForMaskedLM"]
    hf_config.zhbert_language = data.language  # fill-mask shows English with spaces
    # fill-mask cleans input as the training text was (OpenCC's script above all, which
    # tokenizer.json cannot), and the model card names the script
    hf_config.zhbert_clean = clean = training_clean(data)
    max_len = run.cfg.data.max_len
    with staged_dir(out, force=force, marker=EXPORT_MARKER) as tmp:
        hf_config.to_json_file(str(tmp / "config.json"))
        # a full disk: an OSError (safetensors raises its own error type), so staged_dir says so
        safetensors_io(save_file, hf_state_dict(model), str(tmp / EXPORT_MARKER), {"format": "pt"})
        usual_permissions(tmp / EXPORT_MARKER)
        vocab.save(tmp / "vocab.txt")
        for name, obj in tokenizer_files(max_len).items():
            atomic_write_json(tmp / name, obj)
        write_tokenizer_json(tmp / "vocab.txt", tmp / "tokenizer.json", clean["remove_urls"])
        atomic_write_text(tmp / "README.md", model_card(run, ref.step, state_tokens(state),
                                                        _last_eval(run.path, ref.step), max_len,
                                                        data.language, data.tokenizer, clean))
    return out, ref.step


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by zhbert train")
    p.add_argument("--checkpoint", type=argtypes.count(0), metavar="STEP",
                   help="the step of the checkpoint to export (default: the latest valid one)")
    p.add_argument("--out", type=argtypes.out_path, required=True, metavar="MODEL_DIR", help="directory to write")
    p.add_argument("--force", action="store_true", help="replace MODEL_DIR (only once the new one is complete)")


def run(args) -> int:
    out, step = export_run(args.run_dir, args.out, args.checkpoint, args.force)
    print(f"wrote {out} (checkpoint step {step:,}): load it with transformers "
          f"(AutoModelForMaskedLM / BertForPreTraining / pipeline('fill-mask', "
          f"model={json.dumps(str(out))}))")
    return 0
