"""Document-level deduplication: exact copies and near copies.

* exact: a hash of the document's normalised full text (``clean.content_hash``:
  case-folded, whitespace and punctuation removed), computed in the worker.
* near: MinHash over character n-grams of the same normalised text, indexed in
  a ``datasketch.MinHashLSH``; an LSH candidate counts as a near copy only if
  the MinHash estimate of the Jaccard similarity is >= ``threshold`` (the LSH
  alone also returns some pairs below it).

The split of work matters: the cleaning workers run in parallel, while
``Deduplicator.check`` runs in the main process, in document order, and is the
pipeline's bottleneck. So workers call ``sign(doc, cfg)`` (the expensive
hashing of every n-gram); ``check`` then only does a set lookup, a few LSH
bucket lookups and one vectorised comparison per candidate.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from zhbert.corpus.clean import CleanDocument, content_hash, normalize_for_hash
from zhbert.errors import UserError

# datasketch >= 2.0 hash scheme: 32-bit values, uint32 signatures (512 B at 128 perms).
_SCHEME = "affine32"
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, 2^64 / golden ratio


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    near: bool = True
    threshold: float = 0.8  # Jaccard on character n-grams
    ngram: int = 5
    num_perm: int = 128
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise UserError(f"dedup option threshold={self.threshold} must lie in (0, 1]")
        if self.ngram < 1:
            raise UserError(f"dedup option ngram={self.ngram} must be at least 1")
        if not 2 <= self.num_perm <= 1024:
            raise UserError(f"dedup option num_perm={self.num_perm} must lie in [2, 1024]")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "DedupConfig":
        unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown dedup option(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**obj)


@functools.cache
def _permutations(num_perm: int, seed: int) -> np.ndarray:
    """The seeded permutation parameters, drawn once per process."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations


def shingle_hashes(sentences: Iterable[str], n: int) -> np.ndarray:
    """Distinct 32-bit hashes of the character n-grams of the normalised document
    text (of the whole text if it is shorter than n), shape (S,) uint32.

    A multiplicative polynomial hash over the code points, vectorised in numpy
    (hashing every n-gram with sha1 in Python, datasketch's default, cost 4x the
    cleaning itself). The high 32 bits are the well-mixed ones; datasketch mixes
    them once more (MurmurHash3 finaliser) before its permutations.
    """
    text = "".join(normalize_for_hash(s) for s in sentences)
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = max(len(cps) - n + 1, 1) if len(cps) else 0
    h = np.zeros(width, dtype=np.uint64)
    for k in range(min(n, len(cps))):  # h = (h + cp[i+k]) * K  mod 2^64
        h = (h + cps[k:k + width]) * _MULT
    return np.unique((h >> np.uint64(32)).astype(np.uint32))


def minhash_signature(sentences: Iterable[str], cfg: DedupConfig) -> np.ndarray:
    """MinHash signature, shape (num_perm,) uint32; deterministic for a given seed."""
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=_SCHEME, hashfunc=int,
                permutations=_permutations(cfg.num_perm, cfg.seed))
    m.update_batch(shingle_hashes(sentences, cfg.ngram).tolist())
    return m.hashvalues


def sign(doc: CleanDocument, cfg: DedupConfig) -> CleanDocument:
    """``doc`` with its MinHash attached; call in the worker, after clean_document."""
    if not cfg.near:
        return doc
    return dataclasses.replace(doc, minhash=minhash_signature(doc.sentences, cfg))


class Deduplicator:
    """Streaming document dedup; ``check`` each document once, in a stable order."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self._hashes: set[str] = set()
        self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self._sigs = np.empty((1024, cfg.num_perm), dtype=np.uint32)  # kept docs, by LSH key
        self._n = 0
        self._docs = {"keep": 0, "exact": 0, "near": 0}
        self._chars = {"keep": 0, "exact": 0, "near": 0}

    def _signature(self, doc: CleanDocument) -> np.ndarray:
        sig = doc.minhash
        if sig is None:  # not signed in a worker: correct, only slower
            return minhash_signature(doc.sentences, self.cfg)
        if len(sig) != self.cfg.num_perm:
            raise ValueError(f"document {doc.doc_id} was signed with {len(sig)} permutations, "
                             f"the deduplicator uses {self.cfg.num_perm}")
        return sig

    def _near_copy(self, sig: np.ndarray, lean: LeanMinHash) -> bool:
        for key in self._lsh.query(lean):
            if np.count_nonzero(self._sigs[key] == sig) >= self.cfg.threshold * len(sig):
                return True
        return False

    def _register(self, sig: np.ndarray, lean: LeanMinHash) -> None:
        if self._n == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
        self._sigs[self._n] = sig
        self._lsh.insert(self._n, lean, check_duplication=False)
        self._n += 1

    def check(self, doc: CleanDocument) -> str:
        """Return "keep", "exact" or "near"; a kept document is registered for later checks."""
        verdict = "keep"
        digest = (doc.exact_hash or content_hash(doc.sentences)) if self.cfg.exact else ""
        if digest in self._hashes:
            verdict = "exact"
        elif self.cfg.near:
            sig = self._signature(doc)
            lean = LeanMinHash(seed=self.cfg.seed, hashvalues=sig, scheme=_SCHEME)
            if self._near_copy(sig, lean):
                verdict = "near"
            else:
                self._register(sig, lean)
        if verdict == "keep" and self.cfg.exact:
            self._hashes.add(digest)
        self._docs[verdict] += 1
        self._chars[verdict] += doc.chars_out
        return verdict

    def state_counts(self) -> dict:
        return {
            "kept": self._docs["keep"], "exact": self._docs["exact"], "near": self._docs["near"],
            "chars_kept": self._chars["keep"],
            "chars_removed_exact": self._chars["exact"], "chars_removed_near": self._chars["near"],
        }
