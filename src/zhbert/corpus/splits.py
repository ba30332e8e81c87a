"""Splits for `zhbert prepare`: which split each document goes to, and how a split's
arrays reach disk.

- ``SplitConfig`` / ``split_hash`` / ``assign_splits``: a document's split comes
  from a seeded hash of its doc_id (the same on every machine and for any
  --workers), so a document is never in two splits; held-out sizes are
  fractions with a minimum count.
- ``SplitWriter``: pass 3 appends each batch's token ids, word starts and
  offsets to raw files, turned into .npy files at the end (never all in memory).
- ``SentenceHashes``: the sentence hashes behind the report's duplicate share,
  spilled to bucket files and counted one bucket at a time.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhbert.corpus.prepare_tasks import SPLIT_CODES
from zhbert.errors import UserError

HASH_BUCKET_BITS = 6      # repeated sentences are counted in 2^6 buckets: 1/64 of the hashes in memory
# a held-out split's share of the documents stays below half: the two leave training a share
MAX_HELD_OUT = 0.5


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 42
    validation: float = 0.01
    test: float = 0.01
    min_docs: int = 500  # held-out splits get at least this many documents (corpus permitting)

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            value = getattr(self, name)
            if not 0.0 <= value < MAX_HELD_OUT:
                raise UserError(f"--{name} {value} must be a fraction of documents in [0, {MAX_HELD_OUT:g})")
        if self.min_docs < 0:
            raise UserError(f"--min-split-docs must be >= 0, got {self.min_docs}")

    def sizes(self, n: int) -> tuple[int, int]:
        """(validation, test) document counts for ``n`` kept documents.

        A fraction, but at least ``min_docs`` (never more than a tenth of the
        corpus each) and at least 1 when the fraction is positive and n >= 3.
        """
        def size(frac: float) -> int:
            if frac == 0.0:
                return 0
            k = max(round(frac * n), min(self.min_docs, n // 10))
            return max(k, 1) if n >= 3 else 0
        return size(self.validation), size(self.test)


def split_hash(doc_id: str, seed: int) -> float:
    """A stable number in [0, 1) for a document id (same on every machine)."""
    digest = hashlib.blake2b(f"{seed}\0{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_splits(hashes, cfg: SplitConfig) -> np.ndarray:
    """(D,) uint8 split codes: the n_val smallest hashes -> validation, the next n_test -> test."""
    u = np.asarray(hashes, dtype=np.float64)
    n_val, n_test = cfg.sizes(len(u))
    codes = np.zeros(len(u), dtype=np.uint8)
    order = np.argsort(u, kind="stable")
    codes[order[:n_val]] = SPLIT_CODES["validation"]
    codes[order[n_val:n_val + n_test]] = SPLIT_CODES["test"]
    return codes


class SplitWriter:
    """Appends one split's arrays to raw files; ``finish`` turns them into .npy files."""

    def __init__(self, tmp: Path, name: str, dtype: np.dtype):
        self.tmp, self.name, self.dtype = tmp, name, dtype
        self.files = {k: open(tmp / f"{name}.{k}.raw", "wb")
                      for k in ("tokens", "word_starts", "sentences", "documents")}
        self.tokens = self.sentences = self.documents = 0

    def append(self, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               doc_sizes: np.ndarray) -> None:
        # offsets: where each sentence / document starts, running over the whole split
        (self.tokens + np.cumsum(lengths) - lengths).astype(np.int64).tofile(self.files["sentences"])
        (self.sentences + np.cumsum(doc_sizes) - doc_sizes).astype(np.int64).tofile(self.files["documents"])
        tokens.astype(self.dtype, copy=False).tofile(self.files["tokens"])
        starts.tofile(self.files["word_starts"])
        self.tokens += len(tokens)
        self.sentences += len(lengths)
        self.documents += len(doc_sizes)

    def finish(self, out: Path, word_boundaries: bool) -> dict[str, int]:
        np.array([self.tokens], np.int64).tofile(self.files["sentences"])  # closing offsets
        np.array([self.sentences], np.int64).tofile(self.files["documents"])
        for f in self.files.values():
            f.close()
        kinds = {"tokens": self.dtype, "sentences": np.dtype(np.int64), "documents": np.dtype(np.int64)}
        if word_boundaries:
            kinds["word_starts"] = np.dtype(np.uint8)
        for kind, dtype in kinds.items():
            _raw_to_npy(self.tmp / f"{self.name}.{kind}.raw", out / f"{self.name}.{kind}.npy", dtype)
        return {"documents": self.documents, "sentences": self.sentences, "tokens": self.tokens}


def _raw_to_npy(raw: Path, npy: Path, dtype: np.dtype) -> None:
    """A .npy header followed by the raw bytes, copied in blocks (never all in memory)."""
    n = raw.stat().st_size // dtype.itemsize
    with open(npy, "wb") as f, open(raw, "rb") as r:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)})
        shutil.copyfileobj(r, f, 1 << 22)
    raw.unlink()


class SentenceHashes:
    """Sentence hashes spilled to files by their top bits, so that repeats (always in the
    same file) are counted a file at a time: all of them at once in np.unique peaked at
    57 bytes per sentence (measured on 10M hashes), in the main process, at the very end."""

    def __init__(self, tmp: Path):
        self.paths = [tmp / f"sentence_hashes.{b}.raw" for b in range(1 << HASH_BUCKET_BITS)]
        self.files = [open(path, "wb") for path in self.paths]

    def add(self, hashes: np.ndarray) -> None:
        bucket = (hashes >> np.uint64(64 - HASH_BUCKET_BITS)).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(len(self.files) + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            hashes[order[bounds[b]:bounds[b + 1]]].tofile(self.files[b])

    def count(self) -> tuple[int, int]:
        """(sentences, sentences repeating an earlier one); deletes the files."""
        total = repeats = 0
        for f, path in zip(self.files, self.paths):
            f.close()
            h = np.fromfile(path, dtype=np.uint64)
            h.sort()  # in place: the bucket's 8 bytes a hash, plus a 1-byte mask below
            total, repeats = total + len(h), repeats + int(np.count_nonzero(h[1:] == h[:-1]))
            path.unlink()
        return total, repeats
