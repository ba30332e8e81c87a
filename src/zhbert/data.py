"""Pretraining sequences, dynamic masking, a resumable loader, the fixed eval set.

Sequences are made the way Google's BERT ``create_pretraining_data.py`` makes
them: consecutive sentences of one document are packed up to a target length
and split at a random sentence boundary into segments A and B. Every segment is
one contiguous range of the split's token array, so an instance is just five
integers ``(a_lo, a_hi, b_lo, b_hi, label)`` and an epoch is an (N, 5) int64
array: no Python object per sequence, cheap to rebuild in every worker.

Masking is dynamic (RoBERTa): it is drawn each time a sequence is used, from an
RNG keyed by (seed, epoch, index in the epoch's order). The same sample thus
gets the same masking whichever rank or worker builds it and whether or not the
run was resumed, which is what makes resume and DDP sharding exact.

Batches follow the batch contract (see model.py): input_ids, token_type_ids,
attention_mask (B, T); mlm_positions, mlm_labels (B, M); nsp_labels (B,).

Choices worth knowing:
- The short-sequence target (probability ``short_seq_prob``) is drawn per chunk,
  not per document as in Google's code, so long documents are not made entirely
  of short sequences.
- A chunk of a single sentence (a one-sentence document, or a sentence longer
  than the target) is split *inside* the sentence at a random token, so it still
  yields a positive or a negative pair with the usual 50/50 odds. Google instead
  always pairs it with a random B, which makes every one-sentence document a
  negative and biases NSP. A one-token single-sentence chunk is dropped.
- An epoch drops its last partial global batch, so shapes never change.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from zhbert.config import OBJECTIVES
from zhbert.datadir import DataDir, SplitArrays, open_data_dir
from zhbert.errors import UserError

FIRST_REGULAR_ID = 5      # ids below are [PAD] [UNK] [CLS] [SEP] [MASK]
IGNORE_INDEX = -100       # mlm_labels padding, what cross_entropy ignores
_INSTANCE_STREAM = 1      # keeps the instance RNG apart from the masking RNGs
# The rules that turn (seed, epoch, sample index) into a sample's masks, one per kind of
# masking. Every history header records its run's ("masking", since commit 3c43a40 of
# 2026-12-06), so that a resume or a comparison across a change of rule says so: the masks,
# the held-out set's fixed ones included, differ across it. Rename a rule with any change to
# the masks it draws. "tokens/2": mask_batch's SplitMix64 keys, since commit 0423e4b
# (2026-12-06); before it a numpy Generator per row ("tokens/1"). "whole-words/1": a numpy
# Generator per row (choose_words), unchanged since whole-word masking came in.
MASKING_RULES = {False: "tokens/2", True: "whole-words/1"}


def masking_rule(whole_word: bool) -> str:
    """The rule this zhbert masks by (``MASKING_RULES``), for data.whole_word."""
    return MASKING_RULES[bool(whole_word)]


@dataclass(frozen=True)
class DataConfig:
    max_len: int = 128
    mask_prob: float = 0.15
    objective: str = "mlm+nsp"
    short_seq_prob: float = 0.1
    whole_word: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if not 8 <= self.max_len <= 65536:
            raise UserError(f"max_len must be between 8 and 65536, got {self.max_len}")
        if not 0.0 < self.mask_prob < 1.0:
            raise UserError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UserError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")

    @property
    def max_predictions(self) -> int:
        # round first: 0.15 * 100 is 15.000000000000002 in floating point
        return math.ceil(round(self.mask_prob * self.max_len, 6))

    @property
    def paired(self) -> bool:
        return OBJECTIVES[self.objective] is not None


# ----------------------------------------------------------------------------- instances

def truncate_lengths(la: int, lb: int, max_tokens: int) -> tuple[int, int]:
    """Lengths left by Google's truncate_seq_pair: drop one token at a time from the
    longer segment (B on ties) until the pair fits; closed form of that loop."""
    if la + lb <= max_tokens:
        return la, lb
    short = min(la, lb)
    if 2 * short <= max_tokens:  # only the longer one is cut
        return (max_tokens - lb, lb) if la > lb else (la, max_tokens - la)
    excess = 2 * short - max_tokens  # both end near half; B loses the odd token
    return short - excess // 2, short - (excess + 1) // 2


class _InstanceBuilder:
    """Packs one epoch of a split into (N, 5) instance rows."""

    def __init__(self, split: SplitArrays, cfg: DataConfig, seed: int, epoch: int):
        self.sent = np.asarray(split.sentences, dtype=np.int64).tolist()
        self.docs = np.asarray(split.documents, dtype=np.int64).tolist()
        self.cfg = cfg
        ss = np.random.SeedSequence([seed, epoch, _INSTANCE_STREAM])
        # Python's random() is fast for scalar draws and stable across versions
        self.u = random.Random(int(ss.generate_state(1, np.uint64)[0])).random
        self.np_rng = np.random.default_rng(ss.spawn(1)[0])
        self.max_tokens = cfg.max_len - (3 if cfg.paired else 2)
        self.rows: list[tuple[int, int, int, int, int]] = []

    def randint(self, lo: int, hi: int) -> int:  # inclusive, like random.randint
        return lo + int(self.u() * (hi - lo + 1))

    def target(self) -> int:
        if self.u() < self.cfg.short_seq_prob:
            return self.randint(2, self.max_tokens)
        return self.max_tokens

    def build(self) -> np.ndarray:
        for d in range(len(self.docs) - 1):
            self.pack_document(self.docs[d], self.docs[d + 1], d)
        rows = np.array(self.rows, dtype=np.int64).reshape(-1, 5)
        return rows[self.np_rng.permutation(len(rows))]

    def pack_document(self, s0: int, s1: int, doc: int) -> None:
        sent = self.sent
        start, length, target, i = s0, 0, self.target(), s0
        while i < s1:
            length += sent[i + 1] - sent[i]
            if i == s1 - 1 or length >= target:
                i = self.emit(start, i + 1, target, doc) - 1  # NSP may put sentences back
                start, length, target = i + 1, 0, self.target()
            i += 1

    def emit(self, cs: int, ce: int, target: int, doc: int) -> int:
        """Add the instance made of sentences [cs, ce); return the first unused sentence."""
        sent = self.sent
        if not self.cfg.paired:
            self.add(sent[cs], sent[ce], 0, 0, -1)
            return ce
        if ce - cs >= 2:
            cut_sent = cs + self.randint(1, ce - cs - 1)
            cut = sent[cut_sent]
        else:  # one sentence: split it inside (see module docstring)
            if sent[ce] - sent[cs] < 2:
                return ce
            cut_sent, cut = ce, sent[cs] + self.randint(1, sent[ce] - sent[cs] - 1)
        a_lo, a_hi, b_lo, b_hi = sent[cs], cut, cut, sent[ce]
        if self.cfg.objective == "mlm+sop":
            if self.u() < 0.5:
                self.add(b_lo, b_hi, a_lo, a_hi, 1)
            else:
                self.add(a_lo, a_hi, b_lo, b_hi, 0)
            return ce
        if self.u() < 0.5:
            self.add(a_lo, a_hi, b_lo, b_hi, 0)
            return ce
        b_lo, b_hi = self.random_span(doc, max(1, target - (a_hi - a_lo)))
        self.add(a_lo, a_hi, b_lo, b_hi, 1)
        return cut_sent  # the true continuation was not used: put it back

    def random_span(self, doc: int, want: int) -> tuple[int, int]:
        """Consecutive sentences of another document, from a random one, >= want tokens."""
        n_docs = len(self.docs) - 1
        other = doc
        while other == doc:  # build_instances guarantees a second document exists
            other = self.randint(0, n_docs - 1)
        s0, s1 = self.docs[other], self.docs[other + 1]
        j = s0 + self.randint(0, s1 - s0 - 1)
        lo = self.sent[j]
        while j < s1 and self.sent[j] - lo < want:
            j += 1
        return lo, self.sent[j]

    def add(self, a_lo: int, a_hi: int, b_lo: int, b_hi: int, label: int) -> None:
        la, lb = truncate_lengths(a_hi - a_lo, b_hi - b_lo, self.max_tokens)
        a_lo, a_hi = self.cut(a_lo, a_hi, la)
        b_lo, b_hi = self.cut(b_lo, b_hi, lb)
        if a_hi > a_lo and (b_hi > b_lo or not self.cfg.paired):
            self.rows.append((a_lo, a_hi, b_lo, b_hi, label))

    def cut(self, lo: int, hi: int, keep: int) -> tuple[int, int]:
        # Google drops each token from the front or the back with odds 1/2
        drop = hi - lo - keep
        if drop <= 0:
            return lo, hi
        front = int(self.np_rng.binomial(drop, 0.5))
        return lo + front, hi - (drop - front)


def build_instances(split: SplitArrays, cfg: DataConfig, epoch: int, seed: int | None = None,
                    where: str = "") -> np.ndarray:
    """One epoch of shuffled instances, (N, 5) int64 rows (a_lo, a_hi, b_lo, b_hi, label).

    Token offsets index ``split.tokens``; for objective "mlm" B is empty and the
    label -1. Same (split, cfg, seed, epoch) -> same array. ``where`` names the split
    in errors (a held-out split may be the one short of documents, not train).
    """
    if cfg.objective == "mlm+nsp" and split.num_documents < 2:
        has = f"; {where} has {split.num_documents}" if where else ""
        raise UserError("objective mlm+nsp needs at least 2 documents per split (random next "
                        f"sentences come from another document){has}; use objective mlm+sop or "
                        "mlm, or prepare the data again with more documents")
    return _InstanceBuilder(split, cfg, cfg.seed if seed is None else seed, epoch).build()


def instance_stats(instances: np.ndarray, max_len: int) -> dict[str, float]:
    """Sizes and label balance of an instance array, and the padding it implies."""
    la = instances[:, 1] - instances[:, 0]
    lb = instances[:, 3] - instances[:, 2]
    paired = bool((lb > 0).any())
    real = la + lb + (3 if paired else 2)  # [CLS] A [SEP] (B [SEP])
    n = max(len(instances), 1)
    return {
        "num_instances": int(len(instances)),
        "mean_tokens": float(real.sum() / n),
        "mean_a_tokens": float(la.sum() / n),
        "mean_b_tokens": float(lb.sum() / n),
        "padding_fraction": float(1.0 - real.sum() / (n * max_len)),
        "short_fraction": float((real < max_len // 2).sum() / n),
        "label1_fraction": float((instances[:, 4] == 1).sum() / n) if paired else 0.0,
    }


# ----------------------------------------------------------------------------- masking

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijection of uint64 whose output
    bits each depend on every input bit, what makes a hashed counter a random stream."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _position_bits(seed: int, epoch: int, indices: np.ndarray, positions: np.ndarray,
                   stream: int) -> np.ndarray:
    """Random uint64 at ``positions`` ((T,) for all of a row, or (B, M)) of each sample: a
    hash of (seed, epoch, sample index, stream, position), so a sample's masking is the same
    whichever batch, rank or worker builds it, as with ``masking_rng``, without a Generator
    per row (18 us each: 60% of a short batch)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        key = _mix(np.uint64(seed) * _GOLDEN + np.uint64(epoch))
        key = _mix(key ^ (indices.astype(np.uint64) * _GOLDEN))[:, None]  # (B, 1)
        counter = positions.astype(np.uint64) * np.uint64(4) + np.uint64(stream + 1)
        return _mix(key + counter * _GOLDEN)


def mask_count(candidates, cfg: DataConfig):
    """How many positions a row predicts: round(mask_prob x its candidates), at least 1
    where it has one, at most max_predictions (an int, or an array over rows)."""
    return np.minimum(np.minimum(cfg.max_predictions, np.maximum(1, np.round(candidates * cfg.mask_prob))),
                      candidates).astype(np.int64)


def _uniform(bits: np.ndarray) -> np.ndarray:
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # [0, 1), 53 bits


def mask_batch(ids: np.ndarray, cand: np.ndarray, cfg: DataConfig, vocab_size: int, mask_id: int,
               seed: int, epoch: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask every row of ``ids`` (B, T) in place, at once; return positions and labels (B, M).
    Each row predicts round(mask_prob x its candidates) positions (at least 1 where it has a
    candidate, at most M),
    a uniform random subset: the candidates with the smallest random keys. Of those, 80%
    become [MASK], 10% a random regular token, 10% stay (BERT's recipe, as ``mask_row``)."""
    B, T, M = ids.shape[0], ids.shape[1], cfg.max_predictions
    n = mask_count(cand.sum(1), cfg)
    keys = np.where(cand, _position_bits(seed, epoch, indices, np.arange(T), 0),
                    np.iinfo(np.uint64).max)
    first = np.argsort(keys, axis=1, kind="stable")[:, :M]  # the M smallest keys, in key order
    pos = np.sort(np.where(np.arange(M) < n[:, None], first, T), axis=1)  # T: an empty slot
    real = pos < T
    pos = np.where(real, pos, 0)
    rows = np.arange(B)[:, None]
    labels = np.where(real, ids[rows, pos], IGNORE_INDEX)
    r = _uniform(_position_bits(seed, epoch, indices, pos, 1))  # only at the M picked positions
    swap_to = FIRST_REGULAR_ID + (_position_bits(seed, epoch, indices, pos, 2)
                                  % np.uint64(vocab_size - FIRST_REGULAR_ID))
    new = np.where(r < 0.8, mask_id, np.where(r < 0.9, swap_to.astype(np.int64), labels))
    ids[rows, pos] = np.where(real, new, ids[rows, pos])
    return pos, labels


def masking_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, index])))


def choose_words(candidates: np.ndarray, n: int, rng: np.random.Generator,
                 word_start: np.ndarray) -> np.ndarray:
    """Sorted positions to predict, whole words (Google's whole-word masking: words in
    random order, skipping any that would overflow n). Single tokens: ``mask_batch``."""
    word_id = np.cumsum(word_start) - 1  # word of each candidate
    bounds = np.flatnonzero(word_start).tolist() + [len(candidates)]
    chosen: list[int] = []
    for w in rng.permutation(len(bounds) - 1).tolist():
        size = bounds[w + 1] - bounds[w]
        if len(chosen) + size <= n:
            chosen.extend(range(bounds[w], bounds[w + 1]))
        if len(chosen) >= n:
            break
    if not chosen:  # every word longer than the budget: mask part of one
        chosen = [int(np.flatnonzero(word_id == word_id[rng.integers(len(candidates))])[0])]
    return np.sort(candidates[chosen])


def mask_row(ids: np.ndarray, candidates: np.ndarray, cfg: DataConfig, vocab_size: int,
             mask_id: int, rng: np.random.Generator,
             word_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask one sequence's whole words in place (80% [MASK], 10% random, 10% kept); return
    (positions, labels)."""
    pos = choose_words(candidates, int(mask_count(len(candidates), cfg)), rng, word_start)
    labels = ids[pos].copy()
    r = rng.random(len(pos))
    ids[pos[r < 0.8]] = mask_id
    swap = pos[(r >= 0.8) & (r < 0.9)]
    ids[swap] = rng.integers(FIRST_REGULAR_ID, vocab_size, size=len(swap))
    return pos, labels


def _layout(split: SplitArrays, rows: np.ndarray, T: int, cls_id: int, sep_id: int,
            whole_word: bool):
    """The batch's ids, token types, masking candidates and word starts, for all rows at
    once: (B, T) arrays built by indexing (no Python loop over rows)."""
    a_lo, a_hi, b_lo, b_hi = (rows[:, j, None] for j in range(4))
    la, lb = a_hi - a_lo, b_hi - b_lo
    j = np.arange(T)[None, :]
    in_a = (j >= 1) & (j <= la)
    in_b = (lb > 0) & (j >= 2 + la) & (j < 2 + la + lb)
    src = np.where(in_a, a_lo + j - 1, np.where(in_b, b_lo + j - 2 - la, 0))  # token offsets
    cand = in_a | in_b
    ids = np.where(cand, split.tokens[src], 0).astype(np.int64)  # [PAD] = 0
    ids[:, 0] = cls_id
    ids[(j == 1 + la) | ((lb > 0) & (j == 2 + la + lb))] = sep_id
    types = ((lb > 0) & (j >= 2 + la) & (j <= 2 + la + lb)).astype(np.int64)
    starts = None
    if whole_word:  # a segment always starts a word, even if cut mid-word
        starts = cand & ((split.word_starts[src] != 0) | (j == 1) | (in_b & (j == 2 + la)))
    real = 2 + la[:, 0] + np.where(lb[:, 0] > 0, lb[:, 0] + 1, 0)
    return ids, types, cand, starts, real


def _mask_rows(ids: np.ndarray, cand: np.ndarray, starts: np.ndarray, cfg: DataConfig,
               vocab_size: int, mask_id: int, seed: int, epoch: int, indices: np.ndarray):
    """Whole-word masking of each row in place, from the row's own ``masking_rng``."""
    B, M = len(ids), cfg.max_predictions
    positions = np.zeros((B, M), np.int64)
    labels = np.full((B, M), IGNORE_INDEX, np.int64)
    for i in range(B):
        c = np.flatnonzero(cand[i])
        pos, lab = mask_row(ids[i], c, cfg, vocab_size, mask_id,
                            masking_rng(seed, epoch, int(indices[i])), starts[i, c])
        positions[i, :len(pos)] = pos
        labels[i, :len(lab)] = lab
    return positions, labels


def make_batch(split: SplitArrays, rows: np.ndarray, indices: np.ndarray, epoch: int,
               cfg: DataConfig, seed: int, vocab_size: int, mask_id: int,
               cls_id: int = 2, sep_id: int = 3) -> dict[str, torch.Tensor]:
    """Assemble and mask the batch of instance ``rows``; ``indices`` are their
    positions in the epoch's order (the masking's keys). The layout and the masking are
    built for the whole batch at once (``mask_batch``; whole-word masking row by row),
    each sample's draws keyed by (seed, epoch, its index), so a sample is masked the same
    whichever batch, rank or worker it falls in."""
    T = cfg.max_len
    ids, types, cand, starts, lengths = _layout(split, rows, T, cls_id, sep_id, cfg.whole_word)
    if starts is None:
        positions, labels = mask_batch(ids, cand, cfg, vocab_size, mask_id, seed, epoch, indices)
    else:  # whole words: their greedy choice is sequential, one row at a time
        positions, labels = _mask_rows(ids, cand, starts, cfg, vocab_size, mask_id, seed, epoch,
                                       indices)
    batch = {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "attention_mask": torch.from_numpy(np.arange(T) < lengths[:, None]),
        "mlm_positions": torch.from_numpy(positions),
        "mlm_labels": torch.from_numpy(labels),
    }
    if cfg.paired:
        batch["nsp_labels"] = torch.from_numpy(rows[:, 4].copy())
    return batch


# ----------------------------------------------------------------------------- loading

def open_split(data_dir: str | Path | DataDir, split: str, cfg: DataConfig,
               check_ids: bool = True) -> tuple[DataDir, SplitArrays]:
    dd = data_dir if isinstance(data_dir, DataDir) else open_data_dir(data_dir)
    arrays = dd.split(split, check_ids)
    if cfg.whole_word and arrays.word_starts is None:
        raise UserError(f"whole-word masking needs word boundaries, but data directory {dd.path} "
                        "has none; re-run zhbert prepare with word boundaries, or turn whole_word off")
    return dd, arrays


def _no_eval_sequences(dd: DataDir, split: str, documents: int) -> str:
    """Why a held-out split gives no sequences, and the fix: prepare holds out whole
    documents, so a corpus of too few has none whatever the share (the advice prepare's
    own warning gives: corpus.report.empty_split_warnings; this one said "or a larger
    share" where prepare had said that cannot help)."""
    from zhbert.corpus.report import fewest_documents_to_hold_out
    from zhbert.datadir import SPLITS
    more = "more documents (in a text file, a blank line between documents)"
    total = sum(dd.split(name).num_documents for name in SPLITS)
    if documents:
        why, fix = f"its {documents:,} documents are too short to make one", f"{more} or a larger --{split} share"
    elif total < fewest_documents_to_hold_out():
        why = (f"it has no documents: prepare holds out whole documents, and {total:,} are too few "
               f"for any --{split} share to hold one out")
        fix = more
    else:
        why, fix = f"it has no documents (--{split} was too small for {total:,} documents)", f"a larger --{split} share"
    return (f"split {split!r} of {dd.path} gives no sequences for evaluation: {why}; prepare the "
            f"data again with {fix} (see `zhbert data report {dd.path}`)")


EVAL_MASK_PROB = 0.15  # BERT's rate: the held-out task of every run


def build_eval_set(data_dir: str | Path | DataDir, split: str = "validation",
                   cfg: DataConfig = DataConfig(), max_sequences: int = 2048, seed: int = 1234,
                   batch_size: int = 64) -> list[dict[str, torch.Tensor]]:
    """The held-out set: fixed sequences and fixed masking (the same every call and
    every run, whatever cfg.seed), for comparable MLM accuracy at every eval.
    Masked at EVAL_MASK_PROB whatever rate the run trains with: a run that trains at 30%
    (Wettig et al. 2023) is scored on the same task as one at 15%, so runs and sweep
    trials over data.mask_prob compare. The last batch may be smaller."""
    cfg = replace(cfg, mask_prob=EVAL_MASK_PROB)
    dd, arrays = open_split(data_dir, split, cfg)
    # an empty split first: build_instances would blame the objective (NSP) instead
    inst = (build_instances(arrays, cfg, epoch=0, seed=seed,
                            where=f"split {split!r} of {dd.path}")[:max_sequences]
            if arrays.num_documents else [])
    if len(inst) == 0:
        raise UserError(_no_eval_sequences(dd, split, arrays.num_documents))
    return [make_batch(arrays, inst[i:i + batch_size], np.arange(i, min(i + batch_size, len(inst))),
                       0, cfg, seed, len(dd.vocab), dd.vocab.mask_id, dd.vocab.cls_id, dd.vocab.sep_id)
            for i in range(0, len(inst), batch_size)]
