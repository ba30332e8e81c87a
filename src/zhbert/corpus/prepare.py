"""`zhbert prepare SOURCE... --out DATA_DIR`: raw text -> a verified data directory.

Chinese by default; ``--language ja|en`` takes the rules of corpus.languages
(script filter, sentence splitter, no OpenCC, tokenizer and word segmenter).

The pipeline, in order:

1. resolve sources (``sources.resolve_sources``): every file is checked and
   hashed before any work, so a bad file fails fast (or is skipped, --skip-bad).
2. stream documents (``sources.iter_documents``); --limit-docs caps them.
3. clean + MinHash (``clean.clean_document``, ``dedup.sign``) in a process
   pool over batches of documents. Results come back in input order, so the
   output is identical for any --workers (workers=1 runs in-process).
4. dedup (``dedup.Deduplicator.check``) in the main process, in document order,
   against an index on disk (``tmp/dedup.sqlite``, deleted when this pass ends).
   Kept documents' cleaned sentences are spooled to a temporary file in the
   staging directory: raw text is never held in memory, cleaned text only on disk.
5. split: the documents with the smallest seeded hashes of their doc_id go to
   validation, the next ones to test, the rest to train -- a document is never
   in two splits, and held-out sizes are fractions with a minimum count
   (``corpus.splits``).
6. count vocabulary units on the spool (pass 2, in the pool), per split.
7. build the vocabulary from the train counts (``vocab.build_vocab``), or
   train a WordPiece vocabulary on the train split (``wordpiece.train_wordpiece``).
8. encode every split and mark word starts (pass 3, in the pool; jieba,
   fugashi or BERT words: ``corpus.segment``), a
   batch's sentences at a time rather than one by one (see "pass 3: batch
   encoding": same ids and word starts); the arrays are appended to raw files as
   they come (``splits.SplitWriter``), so memory stays bounded.
9. write the .npy arrays, vocab.txt, report.json, manifest.json and
   downstream/sentiment.jsonl (only with the builtin corpus) into
   ``fileio.staged_dir``: DATA_DIR appears (or is replaced, --force) only once
   complete, and is validated with ``datadir.open_data_dir`` before that.
"""

from __future__ import annotations

import array
import collections
import itertools
import json
import multiprocessing
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from zhbert.errors import UserError
from zhbert.corpus.prepare_tasks import (SPLIT_CODES, SPLIT_NAMES, batches, clean_task, count_task,
                                         encode_task, ignore_sigint, ordered_map, progress)
from zhbert.corpus.splits import SentenceHashes, SplitConfig, SplitWriter, assign_splits, split_hash
from zhbert.machine import peak_rss_mb


# ---------------------------------------------------------------- main-process passes

@dataclass(frozen=True)
class PrepareOptions:
    sources: tuple[str, ...]
    out: Path
    clean: Any                 # zhbert.corpus.clean.CleanConfig
    dedup: Any                 # zhbert.corpus.dedup.DedupConfig
    split: SplitConfig
    per_line: bool = False
    skip_bad: bool = False
    min_freq: int = 1
    max_vocab: int = 21128
    word_boundaries: bool = True
    workers: int = 1
    force: bool = False
    limit_docs: int | None = None
    tokenizer: str = "char"          # "char" | "wordpiece" (corpus.languages.TOKENIZERS)
    text_column: str = "text"        # .parquet/.csv/.tsv files and saved Hugging Face datasets

    @property
    def language(self) -> str:
        return self.clean.language

    @property
    def segmenter(self) -> str | None:
        """Word-start segmenter for pass 3; None without word boundaries."""
        return self.clean.lang.segmenter if self.word_boundaries else None

    def to_json(self) -> dict:
        """The resolved options that shape the data (recorded in the manifest)."""
        from zhbert.corpus.filetypes import shown  # a GBK file name named on the command line
        return {"sources": list(map(shown, self.sources)), "per_line": self.per_line, "skip_bad": self.skip_bad,
                "language": self.language, "text_column": self.text_column,
                "clean": self.clean.to_json(), "dedup": self.dedup.to_json(),
                "split": self.split.__dict__.copy(),
                "vocab": {"tokenizer": self.tokenizer, "min_freq": self.min_freq,
                          "max_size": self.max_vocab, "do_lower_case": False},
                "word_boundaries": self.word_boundaries, "segmenter": self.segmenter,
                "limit_docs": self.limit_docs}


def _documents(infos: list, opts: PrepareOptions) -> Iterator:
    from zhbert.corpus.sources import iter_documents

    docs = itertools.chain.from_iterable(
        iter_documents(info, per_line=opts.per_line, skip_bad=opts.skip_bad,
                       text_column=opts.text_column) for info in infos)
    return itertools.islice(docs, opts.limit_docs)


def _clean_pass(infos: list, opts: PrepareOptions, pool, tmp: Path, stats) -> tuple[array.array, dict]:
    """Pass 1: clean, dedup, spool the kept documents to tmp/spool.jsonl; returns their
    split hashes. The dedup index lives in tmp too, and is deleted once the pass is done."""
    from zhbert.corpus.dedup import Deduplicator

    start = time.perf_counter()
    with Deduplicator(opts.dedup, tmp / "dedup.sqlite") as dedup:
        hashes = _dedup_and_spool(infos, opts, pool, dedup, tmp / "spool.jsonl", stats)
        counts, index_mb = dedup.state_counts(), dedup.index_bytes() / 1e6
    seconds = time.perf_counter() - start
    print(f"zhbert: cleaned {stats.docs_read:,} documents ({stats.bytes_read / 1e6:.1f} MB) in "
          f"{seconds:.1f} s ({stats.docs_read / seconds:,.0f} docs/s, {stats.bytes_read / 1e6 / seconds:.2f} MB/s); "
          f"kept {counts['kept']:,}, removed {counts['exact']:,} exact and {counts['near']:,} near "
          f"duplicates, {stats.docs_dropped_clean:,} empty after cleaning; dedup index "
          f"{index_mb:.1f} MB on disk", file=sys.stderr)
    return hashes, {**counts, "seconds": round(seconds, 2), "index_mb": round(index_mb, 1)}


def _dedup_and_spool(infos: list, opts: PrepareOptions, pool, dedup, spool: Path,
                     stats) -> array.array:
    tasks = ((batch, opts.clean, opts.dedup)
             for batch in batches(_documents(infos, opts), lambda d: len(d.text)))
    hashes = array.array("d")  # 8 bytes per kept document: 11 MB for 1.4M
    start = time.perf_counter()
    with open(spool, "w", encoding="utf-8") as f, progress("clean") as bar:
        for rows, script_counts, dropped in ordered_map(clean_task, tasks, pool):
            stats.script_filter.update(sentences=script_counts[0], dropped=script_counts[1])
            stats.dropped_sentences.update(dropped)  # documents dropped whole's too
            for nbytes, source, cdoc in rows:
                stats.docs_read += 1
                stats.bytes_read += nbytes
                stats.docs_read_per_source.add(source)
                if cdoc is None:
                    stats.docs_dropped_clean += 1
                    continue
                if dedup.check(cdoc) != "keep":
                    continue
                f.write(json.dumps(cdoc.sentences, ensure_ascii=False) + "\n")
                hashes.append(split_hash(cdoc.doc_id, opts.split.seed))
                stats.docs_kept_per_source.add(cdoc.source)
                stats.tags.update(cdoc.tags)
                stats.sentence_lengths.update(map(len, cdoc.sentences))
            bar.update(len(rows))
            bar.set_postfix_str(f"{stats.bytes_read / 1e6 / max(time.perf_counter() - start, 1e-9):.1f} MB/s",
                                refresh=False)
    return hashes


def _spooled(spool: Path, codes: np.ndarray) -> Iterator[tuple[int, list[str]]]:
    with open(spool, encoding="utf-8") as f:
        for code, line in zip(codes.tolist(), f):
            yield code, json.loads(line)


def _split_sentences(spool: Path, codes: np.ndarray, code: int) -> Iterator[str]:
    """The sentences of one split, in order (what the WordPiece trainer reads)."""
    for c, sentences in _spooled(spool, codes):
        if c == code:
            yield from sentences


MISMATCH_SHARE = 0.3  # warn when the script filter drops more than this share of sentences


def script_mismatch_warning(script_filter: collections.Counter, lang) -> str | None:
    """A warning when the script filter dropped more than MISMATCH_SHARE of all sentences
    read (text in another language than --language), None otherwise."""
    total, dropped = script_filter["sentences"], script_filter["dropped"]
    if not total or dropped / total <= MISMATCH_SHARE:
        return None
    return (f"{dropped / total:.0%} of the sentences read ({dropped:,} of {total:,}) were "
            f"dropped for too few {lang.script_name}: is the text {lang.name} (--language "
            f"{lang.code})? Name the sources' language, or lower --min-script-ratio")


# Japanese prose is largely kana (the Japanese sentences of tests/test_lang.py: 68 of their
# 97 kana and kanji); Chinese text has none, bar quotations
TELLTALE_SHARE = 0.05


def telltale_warning(units: collections.Counter, lang) -> str | None:
    """A warning where the training characters hardly hold the ones the language's prose is
    never without (Language.telltale: Japanese kana), None otherwise or where it has none."""
    if lang.telltale_re is None:
        return None
    chars = {u: n for u, n in units.items() if len(u) == 1}
    total = sum(chars.values())
    share = sum(n for u, n in chars.items() if lang.telltale_re.match(u)) / total if total else 1.0
    if share >= TELLTALE_SHARE:
        return None
    return (f"{share:.1%} of the training text's characters are {lang.telltale_name}, which "
            f"{lang.name} prose is full of: is the text {lang.name} (--language {lang.code})? "
            f"Chinese passes the {lang.script_name} filter; name the sources' language")


def _spool_batches(spool: Path, codes: np.ndarray) -> Iterator[list]:
    return batches(_spooled(spool, codes), lambda d: sum(map(len, d[1])))


def _count_pass(spool: Path, codes: np.ndarray, pool, stats) -> None:
    """Pass 2: vocabulary units and characters per split."""
    stats.units = {name: collections.Counter() for name in SPLIT_NAMES}
    with progress("count", total=len(codes)) as bar:
        for counts, chars, docs in ordered_map(count_task, _spool_batches(spool, codes), pool):
            for name, c, n in zip(SPLIT_NAMES, counts, chars):
                stats.units[name].update(c)
                stats.chars[name] += n
            bar.update(docs)


def _encode_pass(spool: Path, codes: np.ndarray, vocab, opts: PrepareOptions, pool,
                 staging: Path, tmp: Path, stats) -> dict[str, dict[str, int]]:
    """Pass 3: token ids, word starts and offsets for every split, written as .npy."""
    from zhbert.datadir import token_dtype

    writers = [SplitWriter(tmp, name, token_dtype(len(vocab))) for name in SPLIT_NAMES]
    hashes = SentenceHashes(tmp)
    tasks = ((str(staging / "vocab.txt"), opts.segmenter, batch)
             for batch in _spool_batches(spool, codes))
    with progress("encode", total=len(codes)) as bar:
        for parts in ordered_map(encode_task, tasks, pool):
            for name, writer, (tokens, starts, lengths, doc_sizes, sent_hashes, unk) in zip(
                    SPLIT_NAMES, writers, parts):
                writer.append(tokens, starts, lengths, doc_sizes)
                hashes.add(sent_hashes)
                stats.unk_tokens[name] += unk
                bar.update(len(doc_sizes))
    stats.sentences_total, stats.sentences_duplicate = hashes.count()
    return {name: w.finish(staging, opts.word_boundaries) for name, w in zip(SPLIT_NAMES, writers)}


# ---------------------------------------------------------------- orchestration

def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return round(usage.ru_utime + usage.ru_stime, 1)


def _start_pool(workers: int):
    """Spawned workers that ignore SIGINT from their first instruction. A terminal's Ctrl-C
    reaches the whole process group, and each worker printed a KeyboardInterrupt traceback;
    the parent alone handles it (it ends the pool, leaves --out as it was and says
    "interrupted"). An initializer alone left the seconds in which a worker starts Python (a
    busy machine's Ctrl-C at 3 s still printed them): a process started with SIGINT ignored
    keeps it so across exec. The parent ignores it too while it starts them (7-26 ms here): a
    Ctrl-C in those milliseconds is lost (blocking it instead kept the workers' tracebacks:
    exec does not keep the mask, and another thread of the parent can take the signal)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return multiprocessing.get_context("spawn").Pool(workers, initializer=ignore_sigint)
    finally:
        signal.signal(signal.SIGINT, previous)


STOP_WAIT_S = 5.0  # for the pool's own shutdown, after its workers are killed


def _stop_pool(pool) -> None:
    """End the pool after an error or Ctrl-C, never hanging. A worker killed while it
    wrote a result leaves half a message in the result pipe: Pool.terminate() then waits
    forever for the rest in its result thread (1 Ctrl-C in ~20 hung, parent in a futex
    wait). The workers are killed, terminate() gets STOP_WAIT_S in a daemon thread, and a
    hung one is left behind: it is the pool's finalizer, so it does not run again at exit."""
    import threading
    workers = list(pool._pool)  # noqa: SLF001 (no public accessor)
    for worker in workers:
        worker.kill()
    for worker in workers:  # reaped: none left a zombie behind the parent's exit
        worker.join(STOP_WAIT_S)
    ender = threading.Thread(target=pool.terminate, daemon=True)
    ender.start()
    ender.join(STOP_WAIT_S)


def _workers_peak_rss_mb(pool) -> list[float] | None:
    """Each pool worker's peak RSS, read while the workers are still alive (None without /proc)."""
    peaks = [peak_rss_mb(p.pid) for p in pool._pool]  # noqa: SLF001 (no public accessor)
    return None if any(p is None for p in peaks) else peaks


def _check_training_split(codes: np.ndarray, split: SplitConfig) -> None:
    """Two held-out shares just under one half each took all 4 documents of a corpus, and
    prepare wrote data with an empty train split and a vocabulary of the specials only."""
    if not (codes == SPLIT_CODES["train"]).any():
        raise UserError(f"--validation {split.validation:g} and --test {split.test:g} hold out all "
                        f"{len(codes):,} documents kept, leaving none to train on: lower them, or "
                        "give zhbert prepare more documents")


def _check_vocab(vocab, min_freq: int, train_units: collections.Counter) -> None:
    """A --min-freq above every count left the specials only (char tokenizer; WordPiece keeps
    its alphabet): data every token of which reads as [UNK]."""
    from zhbert.vocab import SPECIAL_TOKENS

    if len(vocab) <= len(SPECIAL_TOKENS):
        most = max(train_units.values(), default=0)
        raise UserError(f"--min-freq {min_freq:,} leaves the vocabulary empty: the most frequent "
                        f"unit of the train split occurs {most:,} times; lower --min-freq")


def _build(infos: list, opts: PrepareOptions, pool, staging: Path) -> dict:
    """Run passes 1-3 and write everything into ``staging``; returns the report."""
    from zhbert.corpus.report import CorpusStats, build_report
    from zhbert.datadir import new_manifest, write_manifest
    from zhbert.vocab import build_vocab

    started = time.perf_counter()
    tmp = staging / "tmp"
    tmp.mkdir()
    stats = CorpusStats()
    hashes, dedup_counts = _clean_pass(infos, opts, pool, tmp, stats)
    lang = opts.clean.lang
    if not hashes:
        raise UserError(f"nothing is left after cleaning and dedup ({stats.docs_read:,} documents "
                        f"read from {', '.join(opts.sources)}); check the sources hold {lang.name} "
                        f"text (--language), or relax --min-script-ratio / --min-sentence-chars")
    warning = script_mismatch_warning(stats.script_filter, lang)
    if warning:
        print(f"zhbert: warning: {warning}", file=sys.stderr)
    codes = assign_splits(hashes, opts.split)
    _check_training_split(codes, opts.split)
    del hashes
    t0 = time.perf_counter()
    _count_pass(tmp / "spool.jsonl", codes, pool, stats)
    if warning := telltale_warning(stats.units["train"], lang):
        print(f"zhbert: warning: {warning}", file=sys.stderr)
    if opts.tokenizer == "wordpiece":
        from zhbert.wordpiece import train_wordpiece
        vocab = train_wordpiece(_split_sentences(tmp / "spool.jsonl", codes, SPLIT_CODES["train"]),
                                opts.max_vocab, opts.min_freq)
    else:
        vocab = build_vocab(stats.units["train"], opts.min_freq, opts.max_vocab)
    _check_vocab(vocab, opts.min_freq, stats.units["train"])
    vocab.save(staging / "vocab.txt")
    t1 = time.perf_counter()
    splits = _encode_pass(tmp / "spool.jsonl", codes, vocab, opts, pool, staging, tmp, stats)
    t2 = time.perf_counter()
    chars = sum(stats.chars.values())
    print(f"zhbert: counted and encoded {len(codes):,} documents ({chars / 1e6:.1f}M characters) in "
          f"{t1 - t0:.1f} + {t2 - t1:.1f} s ({chars / 1e6 / max(t2 - t1, 1e-9):.2f}M characters/s "
          f"encoded{' with word starts' if opts.word_boundaries else ''})", file=sys.stderr)
    shutil.rmtree(tmp)
    source_json = [i.to_json() for i in infos]
    if any(i.kind == "builtin" for i in infos):  # the Chinese builtin's reviews
        _write_sentiment(staging)
    resources = {"seconds": round(time.perf_counter() - started, 2),
                 "clean_seconds": dedup_counts.pop("seconds"),
                 "dedup_index_mb": dedup_counts.pop("index_mb"),  # on disk, deleted after pass 1
                 "count_seconds": round(t1 - t0, 2), "encode_seconds": round(t2 - t1, 2),
                 "peak_rss_mb": round(peak_rss_mb(), 1),
                 "cpu_seconds": _cpu_seconds(resource.RUSAGE_SELF),  # this process
                 "workers": opts.workers}
    report = build_report(stats, vocab, splits, dedup_counts, source_json, resources)
    write_manifest(staging, new_manifest(opts.to_json(), source_json, vocab, splits,
                                         opts.word_boundaries, language=opts.language,
                                         tokenizer=opts.tokenizer))
    return report


def _write_sentiment(staging: Path) -> None:
    from zhbert.corpus.builtin import sentiment_reserve
    from zhbert.fileio import atomic_write_text

    rows = sentiment_reserve()
    atomic_write_text(staging / "downstream" / "sentiment.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def prepare(opts: PrepareOptions) -> dict:
    """Build the data directory ``opts.out``; returns the dataset report."""
    from zhbert.corpus.sources import resolve_sources
    from zhbert.datadir import open_data_dir
    from zhbert.fileio import atomic_write_json, staged_dir
    from zhbert.outputs import check_out, check_out_reads_none
    from zhbert.run import DATA_MANIFEST

    check_out(Path(opts.out), DATA_MANIFEST)  # before reading the sources
    infos = resolve_sources(list(opts.sources), skip_bad=opts.skip_bad, language=opts.language,
                            text_column=opts.text_column)
    if all(i.skipped for i in infos):
        raise UserError("every corpus file was skipped as unreadable (see the warnings above); "
                        "fix the files or name other sources")
    check_out_reads_none(Path(opts.out), [i.path for i in infos], "the corpus file")
    pool = None
    try:
        with staged_dir(opts.out, force=opts.force, marker=DATA_MANIFEST) as staging:
            if opts.workers > 1:  # spawn: workers never inherit threads or torch state
                pool = _start_pool(opts.workers)
            report = _build(infos, opts, pool, staging)
            if pool is not None:
                worker_peaks = _workers_peak_rss_mb(pool)
                pool.close()
                pool.join()
                pool = None
                if worker_peaks is None:  # no /proc: the biggest child's ru_maxrss
                    worker_peaks = [resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]
                report["resources"]["worker_peak_rss_mb"] = round(max(worker_peaks), 1)
                report["resources"]["worker_cpu_seconds"] = _cpu_seconds(resource.RUSAGE_CHILDREN)
                report["resources"]["worker_peak_rss_mb_each"] = [round(p, 1) for p in worker_peaks]
            atomic_write_json(staging / "report.json", report)
            open_data_dir(staging).check_arrays()  # the arrays agree with the manifest, or nothing is replaced
    except OSError as exc:
        where = exc.filename or opts.out
        raise UserError(f"could not write {where}: {exc.strerror or exc}; {opts.out} was left as "
                        "it was. Free disk space or choose a writable --out") from None
    finally:
        if pool is not None:
            _stop_pool(pool)
    return report
