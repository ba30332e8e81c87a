"""`zhbert prepare`'s command line: its options, read into ``prepare.PrepareOptions``, and
the line it prints. The pipeline itself is ``zhbert.corpus.prepare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zhbert import argtypes
from zhbert.corpus.prepare import PrepareOptions, prepare
from zhbert.corpus.splits import MAX_HELD_OUT, SplitConfig
from zhbert.errors import UserError
from zhbert.threads import available_cores

# The ranges of prepare's own options, each with its reason:
# a held-out share, as SplitConfig takes it (prepare refuses a corpus so small that rounding
# holds out every document)
HELD_OUT_SHARE = argtypes.number(0.0, MAX_HELD_OUT, high_open=True)
# a sentence is cut to the model's sequence (at most 512 tokens) anyway: 10,000 characters is
# 20 of those, and a longer "sentence" is no sentence
MAX_SENTENCE_CHARS = 10_000
# shingle_hashes makes N passes over each document: N bounds the time a character costs (64
# is 13x the default 5), and an n-gram longer than a sentence measures no near-duplication
MAX_DEDUP_NGRAM = 64
# every token gets a row of the embedding table (10^6 x 768 fp32 is 3 GB); the largest BERT
# vocabularies are ~250K (XLM-R), and 10^20 was an OverflowError in the WordPiece trainer
MAX_VOCAB = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from zhbert.corpus.clean import SCRIPTS
    from zhbert.corpus.languages import LANGUAGES
    from zhbert.corpus.filetypes import file_types

    parser.add_argument("sources", nargs="*", default=["builtin"], metavar="SOURCE",
                        help="'builtin' (default; the English one with --language en), "
                             f"'builtin-en', files or directories ({file_types()}), "
                             "or a saved Hugging Face dataset")
    parser.add_argument("--out", type=argtypes.out_path, required=True, help="data directory to create")
    parser.add_argument("--force", action="store_true",
                        help="replace an earlier data directory at --out (only once the new one is complete)")
    parser.add_argument("--language", choices=tuple(LANGUAGES), default=None,
                        help="the corpus language (default zh; en for builtin-en alone): script "
                             "filter, sentence splitting, tokenizer and word boundaries; recorded "
                             "in the manifest")
    g = parser.add_argument_group("reading")
    g.add_argument("--text-column", default="text",
                   help="the text column of .parquet, .csv and .tsv files (a .tsv is read "
                        "unquoted: a row a line, quotes are text) and saved datasets, and the "
                        "text field of .jsonl lines (default text)")
    g.add_argument("--per-line", action="store_true", help="a document per line in text files")
    g.add_argument("--skip-bad", action="store_true", help="skip unreadable files and bad lines")
    g.add_argument("--limit-docs", type=argtypes.count(1, sys.maxsize), default=None, metavar="N",
                   help="read at most N documents")  # sys.maxsize: islice's bound
    g = parser.add_argument_group("cleaning")
    g.add_argument("--script", choices=SCRIPTS, default=None,
                   help="OpenCC conversion (Chinese only; default t2s, other languages keep)")
    g.add_argument("--keep-urls", action="store_true", help="do not remove URLs and e-mail addresses")
    sentence_chars = argtypes.count(1, MAX_SENTENCE_CHARS)
    g.add_argument("--min-sentence-chars", type=sentence_chars, default=5)
    g.add_argument("--max-sentence-chars", type=sentence_chars, default=None,
                   help="default 256 (English 512)")
    g.add_argument("--min-script-ratio", "--min-chinese-ratio", dest="min_script_ratio",
                   type=argtypes.probability,
                   default=0.5, help="minimum share of the language's script in a sentence "
                                     "(CJK ideographs; kanji+kana; Latin letters)")
    g = parser.add_argument_group("dedup")
    g.add_argument("--no-near-dedup", action="store_true", help="exact document dedup only")
    g.add_argument("--dedup-threshold", type=argtypes.number(0.0, 1.0, low_open=True), default=0.8,
                   help="near-duplicate Jaccard threshold, in (0, 1]")
    g.add_argument("--dedup-ngram", type=argtypes.count(1, MAX_DEDUP_NGRAM), default=5,
                   help="character n-gram size for MinHash")
    _split_and_vocabulary_arguments(parser)


def _split_and_vocabulary_arguments(parser: argparse.ArgumentParser) -> None:
    from zhbert.corpus.languages import TOKENIZERS
    from zhbert.vocab import SPECIAL_TOKENS

    g = parser.add_argument_group("splits")
    g.add_argument("--split-seed", type=argtypes.seed, default=42)
    g.add_argument("--validation", type=HELD_OUT_SHARE, default=0.01,
                   help=f"fraction of documents, in [0, {MAX_HELD_OUT:g})")
    g.add_argument("--test", type=HELD_OUT_SHARE, default=0.01, help=f"fraction of documents, in [0, {MAX_HELD_OUT:g})")
    g.add_argument("--min-split-docs", type=argtypes.count(0), default=500,
                   help="validation/test get at least this many documents (at most 10%% of the corpus)")
    g = parser.add_argument_group("vocabulary")
    g.add_argument("--tokenizer", choices=TOKENIZERS, default=None,
                   help="char (default for zh, ja) or wordpiece (default for en; trained with "
                        "Hugging Face tokenizers)")
    g.add_argument("--min-freq", type=argtypes.count(1, sys.maxsize), default=1)  # the trainer's u64
    g.add_argument("--vocab-size", "--max-vocab", dest="max_vocab",
                   type=argtypes.count(len(SPECIAL_TOKENS) + 1, MAX_VOCAB), default=None,
                   help="including the 5 special tokens (default 21128 char, 30522 wordpiece)")
    g.add_argument("--no-word-boundaries", action="store_true",
                   help="skip word starts (jieba, fugashi or WordPiece words; whole-word "
                        "masking needs them)")
    # more processes than cores gain nothing, and each holds its own segmenter (tens of MB)
    parser.add_argument("--workers", type=argtypes.cores, default=available_cores(),
                        help="processes for cleaning and encoding, at most the cores this "
                             "process may use (default: all of them)")


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    from zhbert.corpus import languages
    from zhbert.corpus.clean import CleanConfig
    from zhbert.corpus.dedup import DedupConfig
    from zhbert.wordpiece import DEFAULT_SIZE

    from zhbert.corpus.builtin_en import SPEC as BUILTIN_EN

    sources = tuple(args.sources or ["builtin"])
    lang = languages.get(args.language or ("en" if set(sources) == {BUILTIN_EN} else languages.DEFAULT))
    tokenizer = args.tokenizer or lang.tokenizer
    # "is None", not "or": 0 is argparse's range error, not the default
    max_vocab = args.max_vocab if args.max_vocab is not None else (
        DEFAULT_SIZE if tokenizer == "wordpiece" else 21128)
    max_chars = (args.max_sentence_chars if args.max_sentence_chars is not None
                 else lang.max_sentence_chars)
    if args.min_sentence_chars > max_chars:
        given = "" if args.max_sentence_chars is not None else f" (the default for {lang.name})"
        raise UserError(f"--min-sentence-chars {args.min_sentence_chars} exceeds --max-sentence-chars "
                        f"{max_chars}{given}: no sentence could be kept; lower the one or raise the other")
    # Path("") is ".": a SOURCE '' read the whole working directory, .venv included
    if "" in sources:
        raise UserError("a SOURCE '' names no file; give 'builtin', files or directories "
                        "('.' for the working directory)")
    return PrepareOptions(
        sources=sources, out=Path(args.out),
        clean=CleanConfig(script=args.script or lang.default_conversion,
                          remove_urls=not args.keep_urls,
                          min_sentence_chars=args.min_sentence_chars,
                          max_sentence_chars=max_chars,
                          min_script_ratio=args.min_script_ratio, language=lang.code),
        dedup=DedupConfig(near=not args.no_near_dedup, threshold=args.dedup_threshold,
                          ngram=args.dedup_ngram),
        split=SplitConfig(seed=args.split_seed, validation=args.validation, test=args.test,
                          min_docs=args.min_split_docs),
        per_line=args.per_line, skip_bad=args.skip_bad, min_freq=args.min_freq,
        max_vocab=max_vocab, word_boundaries=not args.no_word_boundaries,
        workers=args.workers, force=args.force, limit_docs=args.limit_docs,
        tokenizer=tokenizer, text_column=args.text_column)


def run(args: argparse.Namespace) -> int:
    from zhbert.corpus.report import empty_split_warnings, oov_text

    opts = options_from_args(args)
    report = prepare(opts)
    v, t = report["vocab"], report["totals"]
    print(f"wrote {opts.out}: {t['documents']:,} documents, {t['sentences']:,} sentences, "
          f"{t['tokens']:,} tokens; vocabulary {v['size']:,} (train coverage {v['train_coverage']:.4%}, "
          f"validation OOV {oov_text(v)}); {report['resources']['seconds']:.0f} s, "
          f"peak RSS {report['resources']['peak_rss_mb']:.0f} MB. "
          f"See `zhbert data report {opts.out}`.")
    for warning in empty_split_warnings(report):
        print(f"zhbert: warning: {warning}", file=sys.stderr)
    return 0
