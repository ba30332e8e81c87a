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


def expand_directory(directory: Path) -> tuple[list[Path], list[Path]]:
    """(the corpus files under a directory, recursively, in a stable order; the other files,
    which are not read: the name picks the reader, and guessing a format is no reader)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [p for p in files if split_suffix(p)[0]], [p for p in files if not split_suffix(p)[0]]


def left_out_note(directory: Path, others: list[Path]) -> str | None:
    """What to say of the files ``expand_directory`` did not take, None if nothing: named
    directly, such a file is read as text, so leaving it out of a directory silently hides
    text the user meant to give. Files in hidden folders (.git) are left out quietly."""
    from zhbert.corpus.columnar import is_saved_dataset

    rel = [p.relative_to(directory) for p in others]
    rel = [r for r in rel if not any(part.startswith(".") for part in r.parts)]
    saved = sorted({d for r in rel for d in r.parents[:-1] if is_saved_dataset(directory / d)})
    plain = [r for r in rel if not any(d in saved for d in r.parents)]
    notes = []
    if plain:
        few = ", ".join(map(str, plain[:3])) + (f" and {len(plain) - 3} more" if len(plain) > 3 else "")
        notes.append(f"left out {len(plain)} file{'s' * (len(plain) > 1)} whose names are no corpus "
                     f"file type ({few}; read: {file_types()}): to include a text file, rename it "
                     "to .txt or name it as a source of its own (read as plain text)")
    notes += [f"{directory / d} is a saved Hugging Face dataset: name it as a source of its own"
              for d in saved]
    return "; ".join(notes) or None


def open_stream(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream."""
    opener = OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")
