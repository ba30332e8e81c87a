"""`zhbert prepare`'s worker tasks and their scheduling: cleaning and signing a batch
of documents (pass 1), counting characters (pass 2), encoding and hashing sentences
(pass 3), bounded in-order mapping over the pool, batching, progress bars.

Module-level functions, so that "spawn" workers can unpickle them by name; the
passes that drive them are in ``prepare``.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import signal
import sys
from typing import Any, Callable, Iterable, Iterator

import numpy as np

BATCH_DOCS = 256          # documents per worker task ...
BATCH_CHARS = 1 << 20     # ... or fewer when they are long
AHEAD_PER_WORKER = 4      # tasks in flight per worker: bounds memory, keeps workers busy
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
SPLIT_NAMES = tuple(SPLIT_CODES)



def ignore_sigint() -> None:
    """A pool worker's start (a pool a killed worker restarts included): the parent alone
    handles Ctrl-C. Here, not in ``prepare``: unpickling it imports only this module."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def clean_task(task: tuple) -> tuple[list[tuple[int, str, Any]], list[int], collections.Counter]:
    """Pass 1 for a batch of documents: [(utf-8 bytes in, source, CleanDocument | None)],
    and the batch's [sentences, dropped by the script filter] and sentences dropped by
    reason (documents dropped whole included), summed once a batch: a Counter a document
    had doubled what crossed the process boundary."""
    from zhbert.corpus.clean import clean_document
    from zhbert.corpus.dedup import sign

    docs, clean_cfg, dedup_cfg = task
    rows, script_counts, dropped = [], [0, 0], collections.Counter()
    for doc in docs:
        cdoc = clean_document(doc, clean_cfg, script_counts, dropped)
        if cdoc is not None:
            cdoc = sign(cdoc, dedup_cfg)
        rows.append((len(doc.text.encode("utf-8")), doc.source, cdoc))
    return rows, script_counts, dropped


def count_task(docs: list[tuple[int, list[str]]]) -> tuple[list, list[int], int]:
    """Pass 2: per split, (unit counts, characters) of a batch of spooled documents,
    and the number of documents."""
    from zhbert.vocab import count_units

    counts = [collections.Counter() for _ in SPLIT_NAMES]
    chars = [0] * len(SPLIT_NAMES)
    for code, sentences in docs:
        count_units(sentences, counts[code], specials=False)  # a corpus's "[SEP]" is text
        chars[code] += sum(map(len, sentences))
    return counts, chars, len(docs)


def _by_split(docs: list[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    """(split code, all sentences of the batch's documents in that split, in order)."""
    for code in range(len(SPLIT_NAMES)):
        yield code, [s for c, sentences in docs if c == code for s in sentences]


@functools.lru_cache(maxsize=1)
def _worker_vocab(path: str):
    from zhbert.vocab import Vocab
    return Vocab.load(path)


def encode_task(task: tuple) -> list[tuple]:
    """Pass 3: per split, (tokens, word_starts, sentence lengths, sentences per doc,
    sentence hashes, [UNK] count) of a batch of spooled documents."""
    from zhbert.corpus.clean import normalize_for_hash
    from zhbert.datadir import token_dtype

    vocab_path, segmenter, docs = task
    vocab = _worker_vocab(vocab_path)
    dtype = token_dtype(len(vocab))
    out = []
    for code, sentences in _by_split(docs):
        ids, starts, lengths = _encode_sentences(vocab, sentences, segmenter)
        hashes = [int.from_bytes(hashlib.blake2b(normalize_for_hash(s).encode("utf-8"),
                                                 digest_size=8).digest(), "big") for s in sentences]
        doc_sizes = [len(sents) for c, sents in docs if c == code]
        out.append((ids.astype(dtype), starts, lengths, np.array(doc_sizes, np.int64),
                    np.array(hashes, np.uint64), int(np.count_nonzero(ids == vocab.unk_id))))
    return out


def ordered_map(fn: Callable, tasks: Iterable, pool) -> Iterator:
    """``map(fn, tasks)`` over the pool, results in task order.

    Not ``pool.imap``: its feeder thread reads the whole task iterator ahead,
    i.e. the whole corpus into memory. Here at most AHEAD_PER_WORKER tasks per
    worker are in flight.
    """
    if pool is None:
        yield from map(fn, tasks)
        return
    pending: collections.deque = collections.deque()
    limit = AHEAD_PER_WORKER * pool._processes  # noqa: SLF001 (no public accessor)
    for task in tasks:
        pending.append(pool.apply_async(fn, (task,)))
        if len(pending) >= limit:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def batches(items: Iterable, size_of: Callable[[Any], int]) -> Iterator[list]:
    batch, chars = [], 0
    for item in items:
        batch.append(item)
        chars += size_of(item)
        if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def progress(desc: str, unit: str = "doc", total: int | None = None):
    from tqdm import tqdm
    # disable=None: a bar on a terminal, nothing in logs (each pass prints a summary line)
    return tqdm(desc=desc, unit=unit, total=total, file=sys.stderr, disable=None, mininterval=0.5,
                dynamic_ncols=True)


# ---------------------------------------------------------------- pass 3: batch encoding
# A batch's sentences are encoded joined with "\n" (up to 64K characters at a
# time): one Vocab.encode_with_offsets and one jieba.tokenize call per text
# instead of per sentence. "\n" is whitespace to BERT's tokenizer and not a
# Chinese character to jieba (fugashi goes line by line), so no word crosses it
# (tests compare both).

def _joined(sentences: list[str], limit: int = 1 << 16) -> Iterator[tuple[int, str]]:
    """(n, the next n sentences joined with "\n"), texts of at most ``limit`` characters
    (a longer sentence alone): bounds the per-character lists and arrays of a batch."""
    group: list[str] = []
    size = 0
    for s in sentences:
        if group and size + len(s) > limit:
            yield len(group), "\n".join(group)
            group, size = [], 0
        group.append(s)
        size += len(s) + 1
    if group:
        yield len(group), "\n".join(group)


def _encode_sentences(vocab, sentences: list[str], segmenter: str | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, word starts (empty without a segmenter), tokens per sentence)."""
    from zhbert.corpus.segment import word_start_flags

    ids_parts, start_parts, length_parts = [], [], []
    done = 0
    for n, text in _joined(sentences):
        ids, offsets = vocab.encode_with_offsets(text, specials=False)
        stride = np.fromiter(map(len, sentences[done:done + n]), np.int64, n) + 1
        first = np.cumsum(stride) - stride  # where each sentence starts in ``text``
        length_parts.append(np.bincount(np.searchsorted(first, offsets, side="right") - 1,
                                        minlength=n))
        ids_parts.append(ids)
        if segmenter:
            start_parts.append(word_start_flags(segmenter, text)[offsets])
        done += n
    if not ids_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int64)
    starts = np.concatenate(start_parts) if segmenter else np.zeros(0, np.uint8)
    return (np.concatenate(ids_parts), starts.astype(np.uint8, copy=False),
            np.concatenate(length_parts).astype(np.int64))
