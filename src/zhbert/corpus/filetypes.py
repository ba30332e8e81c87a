"""Which corpus files zhbert reads, told by their names: the kind of each (which reader)
and its compression (which opener). ``zhbert.corpus.sources`` reads them; ``prepare``
lists them in its help and errors (``file_types``)."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path
from typing import BinaryIO

import zstandard

# suffix -> kind: picks the reader, and is the list of files a directory contributes
KINDS = {".txt": "text", ".jsonl": "jsonl", ".xml": "wiki", ".parquet": "parquet",
         ".csv": "csv", ".tsv": "tsv"}
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": zstandard.open}
DECOMPRESSORS = {".gz": "gunzip", ".bz2": "bunzip2", ".xz": "unxz", ".zst": "unzstd"}  # the shell's name
# what reading a damaged compressed stream raises (zstandard.ZstdError is not an OSError)
DAMAGE = (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError)


def file_types() -> str:
    """'.txt .jsonl ..., optionally .gz ...': the files read, from the tables that choose the reader."""
    return f"{' '.join(KINDS)}, optionally {' '.join(OPENERS)}"


def split_suffix(path: Path) -> tuple[str | None, str | None]:
    """'a.jsonl.zst' -> ('jsonl', '.zst'); kind None when the name says nothing."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in OPENERS else None
    kind = KINDS.get(suffixes[-1]) if suffixes else None
    return kind, compression


def open_stream(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream."""
    opener = OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")
