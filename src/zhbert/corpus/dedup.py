"""Document-level deduplication: exact copies and near copies.

* exact: a hash of the document's normalised full text (``clean.content_hash``:
  case-folded, whitespace and punctuation removed), computed in the worker.
* near: MinHash over character n-grams of the same normalised text, banded as
  ``datasketch.MinHashLSH`` bands it (its own choice of b bands of r rows); an
  LSH candidate counts as a near copy only if the MinHash estimate of the
  Jaccard similarity is >= ``threshold`` (the LSH alone also returns some pairs
  below it).

The split of work matters: the cleaning workers run in parallel, while
``Deduplicator.check`` runs in the main process, in document order, and is the
pipeline's bottleneck. So workers call ``sign(doc, cfg)`` (the expensive
hashing of every n-gram); ``check`` then only does a few indexed lookups and
one vectorised comparison per candidate.

Memory: nothing per document stays in Python. The index (exact hashes, band
keys, kept signatures) is a scratch SQLite database on disk with a bounded page
cache, written in transactions of COMMIT_EVERY documents and deleted on
``close``. datasketch's in-memory MinHashLSH cost ~3.3 KB of RAM per kept
document (measured), i.e. several GB for all of zh.wikipedia.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from datasketch import MinHash

from zhbert.corpus.clean import CleanDocument, content_hash, normalize_for_hash
from zhbert.errors import UserError

# datasketch >= 2.0 hash scheme: 32-bit values, uint32 signatures (512 B at 128 perms).
_SCHEME = "affine32"
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, 2^64 / golden ratio
COMMIT_EVERY = 4096    # documents per transaction of the index
CACHE_MIB = 32         # SQLite page cache: the index's whole share of RAM


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


# shingles per MinHash.update_batch: it builds a shingles x num_perm uint64 matrix, ~1 KB a
# shingle at 128 permutations, so one 5-million-character document peaked at 5.3 GB; the
# signature is a minimum over shingles, the same however they are batched (tested)
SHINGLE_BATCH = 1 << 14


def minhash_signature(sentences: Iterable[str], cfg: DedupConfig) -> np.ndarray:
    """MinHash signature, shape (num_perm,) uint32; deterministic for a given seed."""
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=_SCHEME, hashfunc=int,
                permutations=_permutations(cfg.num_perm, cfg.seed))
    hashes = shingle_hashes(sentences, cfg.ngram)
    for start in range(0, len(hashes), SHINGLE_BATCH):
        m.update_batch(hashes[start:start + SHINGLE_BATCH].tolist())
    return m.hashvalues


def sign(doc: CleanDocument, cfg: DedupConfig) -> CleanDocument:
    """``doc`` with its MinHash attached; call in the worker, after clean_document."""
    if not cfg.near:
        return doc
    return dataclasses.replace(doc, minhash=minhash_signature(doc.sentences, cfg))



# ---------------------------------------------------------------- the on-disk index

@functools.cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): datasketch.MinHashLSH's own choice for this threshold and
    num_perm with its default weights, so the banding is the one MinHashLSH would use."""
    from datasketch.lsh import _optimal_param  # private, but it is what MinHashLSH calls

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


@functools.cache
def _band_weights(bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    powers = np.array([pow(int(_MULT), k + 1, 1 << 64) for k in range(rows)], np.uint64)
    offsets = (np.arange(1, bands + 1, dtype=np.uint64) * _MULT).astype(np.uint64)
    return powers, offsets


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[int]:
    """One signed 64-bit key per band, hashed from the band's number and its values.

    MinHashLSH keys a band by its raw bytes (52 at r=13); 8 bytes keep the index
    small. Two bands may share a key by chance, so ``check`` then compares the
    candidates' bands themselves: the candidates are exactly MinHashLSH's.
    """
    powers, offsets = _band_weights(bands, rows)
    h = (sig[:bands * rows].reshape(bands, rows).astype(np.uint64) * powers).sum(axis=1) + offsets
    h ^= h >> np.uint64(31)  # the sum is linear in the values; mix once so keys spread
    return (h * _MULT).view(np.int64).tolist()


def exact_key(digest: str) -> int:
    """The first 64 bits of a hex content hash as SQLite's signed integer. Two of the
    1.4M zh.wikipedia articles share one by chance with probability ~5e-8."""
    return int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)


# exact: INTEGER PRIMARY KEY is the rowid itself, so a row is just its 8-byte key.
# band: MinHashLSH's b hash tables in one, keyed by band_keys.
# sig: the kept signatures, by the id their band rows point at.
_SCHEMA = """
CREATE TABLE exact (hash INTEGER PRIMARY KEY);
CREATE TABLE band (key INTEGER NOT NULL, doc INTEGER NOT NULL, PRIMARY KEY (key, doc)) WITHOUT ROWID;
CREATE TABLE sig (doc INTEGER PRIMARY KEY, hashvalues BLOB NOT NULL);
"""


def _connect(path: str) -> sqlite3.Connection:
    """A scratch database: rebuilt on every run, so no journal and no fsync."""
    con = sqlite3.connect(path, isolation_level=None)  # transactions are begun by hand
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   f"cache_size = {-CACHE_MIB * 1024}"):  # negative: KiB
        con.execute(f"PRAGMA {pragma}")
    con.executescript(_SCHEMA)
    con.execute("BEGIN")
    return con


class Deduplicator:
    """Streaming document dedup; ``check`` each document once, in a stable order.

    ``path`` names the index file to create (an error if it exists) and ``close``
    deletes it; without one SQLite keeps the index in a private temporary file.
    Use it as a context manager, or call ``close``.
    """

    def __init__(self, cfg: DedupConfig, path: str | os.PathLike | None = None,
                 commit_every: int = COMMIT_EVERY):
        self.cfg = cfg
        self.bands, self.rows = lsh_params(cfg.threshold, cfg.num_perm)
        self.path = None if path is None else Path(path)
        if self.path is not None and self.path.exists():
            raise FileExistsError(f"{self.path} exists; the dedup index is always built afresh")
        self._con = _connect("" if self.path is None else str(self.path))  # "": temporary file
        self._commit_every, self._uncommitted = commit_every, 0
        self._n = 0  # kept signatures so far: the id of the next one
        self._docs = {"keep": 0, "exact": 0, "near": 0}
        self._chars = {"keep": 0, "exact": 0, "near": 0}
        # the kept signatures sharing a band key with the query (IN dedups the ids)
        self._candidates_sql = ("SELECT hashvalues FROM sig WHERE doc IN (SELECT doc FROM band "
                                f"WHERE key IN ({', '.join('?' * self.bands)}))")

    def __enter__(self) -> "Deduplicator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the index (uncommitted rows too: nothing reads it again)."""
        if self._con is not None:
            self._con.close()
            self._con = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _signature(self, doc: CleanDocument) -> np.ndarray:
        sig = doc.minhash
        if sig is None:  # not signed in a worker: correct, only slower
            return minhash_signature(doc.sentences, self.cfg)
        if len(sig) != self.cfg.num_perm:
            raise ValueError(f"document {doc.doc_id} was signed with {len(sig)} permutations, "
                             f"the deduplicator uses {self.cfg.num_perm}")
        return np.asarray(sig, dtype=np.uint32)

    def _near_copy(self, sig: np.ndarray, keys: list[int]) -> bool:
        found = self._con.execute(self._candidates_sql, keys).fetchall()
        if not found:
            return False
        same = np.frombuffer(b"".join(h for h, in found), np.uint32).reshape(len(found), -1) == sig
        # a candidate of MinHashLSH: some band equal in all its rows (a key match may be chance)
        banded = same[:, :self.bands * self.rows].reshape(len(found), self.bands, self.rows)
        candidate = banded.all(axis=2).any(axis=1)
        similar = np.count_nonzero(same, axis=1) >= self.cfg.threshold * len(sig)
        return bool(np.any(candidate & similar))

    def _near_verdict(self, sig: np.ndarray) -> str:
        keys = band_keys(sig, self.bands, self.rows)
        if self._near_copy(sig, keys):
            return "near"
        self._con.execute("INSERT INTO sig VALUES (?, ?)", (self._n, sig.tobytes()))
        # OR IGNORE: two bands of one signature may share a key by chance
        self._con.executemany("INSERT OR IGNORE INTO band VALUES (?, ?)", [(k, self._n) for k in keys])
        self._n += 1
        return "keep"

    def check(self, doc: CleanDocument) -> str:
        """Return "keep", "exact" or "near"; a kept document is registered for later checks."""
        verdict = "keep"
        key = exact_key(doc.exact_hash or content_hash(doc.sentences)) if self.cfg.exact else None
        if key is not None and self._con.execute("SELECT 1 FROM exact WHERE hash = ?", (key,)).fetchone():
            verdict = "exact"
        elif self.cfg.near:
            verdict = self._near_verdict(self._signature(doc))
        if verdict == "keep" and key is not None:
            self._con.execute("INSERT INTO exact VALUES (?)", (key,))
        self._docs[verdict] += 1
        self._chars[verdict] += doc.chars_out
        self._uncommitted += 1
        if self._uncommitted >= self._commit_every:  # bounded transactions; the cache spills anyway
            self._con.execute("COMMIT")
            self._con.execute("BEGIN")
            self._uncommitted = 0
        return verdict

    def index_bytes(self) -> int:
        """The index's size on disk (pages in use and free)."""
        (pages,), (size,) = (self._con.execute(f"PRAGMA {p}").fetchone() for p in ("page_count", "page_size"))
        return pages * size

    def state_counts(self) -> dict:
        return {
            "kept": self._docs["keep"], "exact": self._docs["exact"], "near": self._docs["near"],
            "chars_kept": self._chars["keep"],
            "chars_removed_exact": self._chars["exact"], "chars_removed_near": self._chars["near"],
        }
