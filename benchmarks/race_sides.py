"""The two sides of the time-to-accuracy race (``benchmarks.time_to_accuracy``): zhbert's
own Trainer and train_step (``zhbert_side``, also what ``recipe_ablation`` and
``recipe_step`` train), and what a transformers user would write after run_mlm.py
--line_by_line (``reference_side``), with the data and evaluation each needs.

A library of the benchmarks, not one: ``python -m benchmarks.race_sides`` says so and exits 2."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def hf_tokenizer(vocab):
    """BertTokenizerFast over zhbert's vocab.txt (same ids, tested in test_vocab);
    transformers 5 ignores vocab_file=, so the vocab goes in as a dict."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab.tokens)}, do_lower_case=False)


class LineDataset(torch.utils.data.Dataset):
    """Tokenized lines kept as arrays; a row comes out as a dict of lists, as an HF
    datasets row does (a list of dicts of Python ints for 72K x 64 would take ~250 MB)."""

    def __init__(self, encoded: dict[str, list[list[int]]]):
        self.columns = {k: np.asarray(v, dtype=np.int32) for k, v in encoded.items()}

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {k: v[i].tolist() for k, v in self.columns.items()}


def line_dataset(data_dir: Path, tok, max_len: int) -> LineDataset:
    """run_mlm.py --line_by_line: every non-empty line of the training text is one
    example, truncated and padded to max_len, with the special-tokens mask."""
    from zhbert.corpus.text import iter_text
    from zhbert.datadir import open_data_dir

    lines = [line for line in iter_text(open_data_dir(data_dir), "train") if line.strip()]
    enc = tok(lines, truncation=True, max_length=max_len, padding="max_length",
              return_special_tokens_mask=True)
    return LineDataset({k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask",
                                            "special_tokens_mask")})


def forever(make_iter: Callable):
    """Batches across epochs (the reference may need more than one)."""
    while True:
        yield from make_iter()


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_hf(model, batches, device, autocast) -> dict:
    """zhbert's held-out metric for a transformers masked-LM model: its logits at
    zhbert's fixed masked positions, accuracy and mean loss over the masked slots."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        with autocast():
            logits = model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                           attention_mask=b["attention_mask"].long()).logits  # (B, T, V)
        index = b["mlm_positions"][:, :, None].expand(-1, -1, logits.shape[-1])
        picked = logits.gather(1, index).float()  # (B, M, V)
        labels = b["mlm_labels"]
        valid = labels != -100
        sums[0] += F.cross_entropy(picked.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                   reduction="sum").double().cpu()
        sums[1] += ((picked.argmax(-1) == labels) & valid).sum().cpu()
        sums[2] += valid.sum().cpu()
    model.train(was_training)
    loss, correct, n = sums.tolist()
    return {"eval_mlm_acc": correct / n, "eval_mlm_loss": loss / n, "eval_masked": int(n)}


def zeroed_types(batches: list[dict]) -> list[dict]:
    """The eval batches with every token_type_id 0: a line-by-line model never trains
    the segment-B embedding, so this shows what that costs it on paired sequences."""
    return [{**b, "token_type_ids": torch.zeros_like(b["token_type_ids"])} for b in batches]


# ----------------------------------------------------------------------------- sides

@dataclass
class Side:
    """One contender: a training step, an evaluation, and what the race records."""
    name: str
    step: Callable[[int], int]        # optimizer step k (1-based) -> real tokens it consumed
    evaluate: Callable[[], dict]
    max_steps: int                    # the lr schedule's end: no progress after it
    positions_per_step: int
    steps: int = 0
    tokens: int = 0
    train_s: float = 0.0
    eval_s: float = 0.0
    curve: list[dict] = field(default_factory=list)
    stopped: str | None = None
    extra: dict = field(default_factory=dict)


def run_config(steps: int, eval_sequences: int, overrides: list[str] = ()):
    """The tiny preset, with the schedule length (cosine to 0 at `steps`) set for the budget."""
    from zhbert.config import load_config

    return load_config("tiny", [f"train.steps={steps}", f"data.eval_sequences={eval_sequences}",
                                "train.device=cpu", *overrides])


def _train_parts():
    """zhbert's build_loader / build_optimizer: in trainparts, or in train for a commit
    before it (the race also measures older ones)."""
    try:
        from zhbert import trainparts
        return trainparts
    except ImportError:
        from zhbert import train
        return train


def zhbert_side(cfg, data_dir: Path, eval_batches: list, precision: str) -> Side:
    """zhbert's own Trainer and train_step, built as zhbert.train.main builds them."""
    zt = _train_parts()
    from zhbert import trainloop as tl
    from zhbert.datadir import open_data_dir
    from zhbert.evaluate import evaluate
    from zhbert.model import BertForPretraining
    from zhbert.precision import autocast_context
    from zhbert.run import model_config_from

    device = torch.device("cpu")
    torch.manual_seed(cfg.train.seed)
    model = BertForPretraining(model_config_from(cfg, len(open_data_dir(data_dir).vocab)))
    autocast = lambda: autocast_context(precision, device)  # noqa: E731
    loader = zt.build_loader(cfg, data_dir)  # with the preset's sequence-length warm-up, if any
    tr = tl.Trainer(cfg=cfg, dist=tl.Dist(), device=device, run_dir=Path(os.devnull), model=model,
                    raw_model=model, optimizer=zt.build_optimizer(model, cfg, device), loader=loader,
                    eval_batches=eval_batches, autocast=autocast, scaler=None,
                    tokens_per_step=cfg.train.batch_size * cfg.data.max_len,
                    progress=tl.Progress(), interval=tl.Interval.zeros(device))
    bf16_weights = train_bf16_copy(tr, precision)

    def step(k: int) -> int:
        before = tr.progress.tokens
        if tl.train_step(tr, k) is not None:  # skipped (non-finite): no history here
            tr.progress.step = k
        return tr.progress.tokens - before

    return Side("zhbert", step, lambda: evaluate(model, eval_batches, device, autocast,
                                                 cfg.model.objective),
                cfg.train.steps, cfg.train.batch_size * cfg.data.max_len,
                extra={"model": model, "bf16_weights": bf16_weights,
                       "initial_state": {k: v.clone() for k, v in model.state_dict().items()}})


def train_bf16_copy(tr, precision: str) -> bool:
    """Where zhbert.train.main trains a bf16 copy of the model (precision.Bf16Weights, a
    newer zhbert) instead of autocasting, do as it does, so that this measures what
    `zhbert train` runs; evaluation still sees the fp32 master. False: autocast."""
    try:
        from zhbert.precision import Bf16Weights
    except ImportError:
        return False
    if precision != "bf16" or not hasattr(tr, "bf16"):
        return False
    tr.bf16 = Bf16Weights(tr.raw_model)
    tr.model = tr.bf16.module
    return True


def mlm_state(state: dict) -> dict:
    """zhbert's (MLM + NSP) weights under BertForMaskedLM's names: the same names
    minus the pooler and the NSP head, which a masked-LM model does not have."""
    return {k: v for k, v in state.items()
            if not k.startswith(("bert.pooler.", "cls.seq_relationship."))}


def reference_side(cfg, data_dir: Path, eval_batches: list, precision: str,
                   initial_state: dict) -> Side:
    """transformers' way: line-by-line text, DataCollatorForLanguageModeling,
    BertForMaskedLM; zhbert's optimizer settings and lr schedule (Trainer's default
    optimizer is fused AdamW too, and it also exempts biases and LayerNorm from decay)."""
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

    zt = _train_parts()
    from zhbert.datadir import open_data_dir
    from zhbert.schedule import lr_at
    from zhbert.precision import autocast_context
    from zhbert.run import model_config_from

    device = torch.device("cpu")
    tok = hf_tokenizer(open_data_dir(data_dir).vocab)
    started = time.perf_counter()
    dataset = line_dataset(data_dir, tok, cfg.data.max_len)
    tokenize_s = time.perf_counter() - started
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.data.mask_prob,
                                               seed=cfg.train.seed)
    # its own generators: zhbert's train_step reseeds torch's global RNG every step
    shuffle = torch.Generator().manual_seed(cfg.train.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True,
                                         collate_fn=collator, generator=shuffle)
    batches = forever(lambda: iter(loader))
    mcfg = model_config_from(cfg, len(tok))
    model = BertForMaskedLM._from_config(mcfg.to_hf_config(), attn_implementation="sdpa").train()
    model.load_state_dict(mlm_state(initial_state))  # strict: same start as zhbert
    opt = zt.build_optimizer(model, cfg, device)
    autocast = lambda: autocast_context(precision, device)  # noqa: E731

    def step(k: int) -> int:
        for group in opt.param_groups:
            group["lr"] = lr_at(k, cfg)
        batch = next(batches)
        with autocast():
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    return Side("reference", step, lambda: evaluate_hf(model, eval_batches, device, autocast),
                cfg.train.steps, cfg.train.batch_size * cfg.data.max_len,
                extra={"model": model, "autocast": autocast, "tokenize_s": tokenize_s,
                       "lines": len(dataset),
                       "padding_fraction": 1 - float(dataset.columns["attention_mask"].mean())})


if __name__ == "__main__":
    from benchmarks import common

    common.library("race_sides")
