"""`zhbert data text DATA_DIR`: the token arrays decoded back to text.

What training sees, [UNK] included: a sentence per line, a blank line between
documents. Each line encodes back to exactly the stored ids (``Vocab.decode``
joins "##x" pieces and puts spaces only between latin/digit words; for a
language written with spaces, English, between words and before/after
punctuation as English is typeset).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

from zhbert import argtypes
from zhbert.datadir import SPLITS, DataDir, open_data_dir


def iter_text(data: DataDir, split: str, limit: int | None = None) -> Iterator[str]:
    """Lines of ``split``: sentences, and "" after each document."""
    from zhbert.corpus.languages import get as language

    spaced = language(data.language).word_spaces
    arrays = data.split(split)
    n_docs = arrays.num_documents if limit is None else min(limit, arrays.num_documents)
    for j in range(n_docs):
        for i in arrays.document_sentences(j):
            yield data.vocab.decode(arrays.sentence(i).tolist(), spaced=spaced)
        yield ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="a data directory made by zhbert prepare")
    parser.add_argument("--split", choices=SPLITS, default="train")
    # a count: "1e3" reads as 1000, and -1 or nan is argparse's one-line error
    parser.add_argument("--limit", type=argtypes.count(0), default=None, metavar="N",
                        help="print the first N documents only")


def run(args: argparse.Namespace) -> int:
    data = open_data_dir(args.data_dir)
    try:
        for line in iter_text(data, args.split, args.limit):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `zhbert data text ... | head`: the reader has had enough
        # point stdout at /dev/null so the flush at exit does not complain again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
