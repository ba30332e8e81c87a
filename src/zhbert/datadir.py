"""The data directory: the one thing training reads (format version 1).

Layout (all arrays are .npy, loaded memory-mapped, never pickled)::

    DATA_DIR/
      manifest.json            format, format_version, zhbert_version, created,
                               config (resolved prepare options), sources,
                               splits{name: {documents, sentences, tokens}},
                               vocab{size, sha256}, dtype, word_boundaries,
                               language ("zh" when absent), tokenizer ("char" | "wordpiece")
      vocab.txt                see zhbert.vocab
      report.json              dataset report (zhbert data report)
      {split}.tokens.npy       (T,)   uint16 (uint32 if vocab > 65535): ids of every
                               sentence of the split, concatenated, no special tokens
      {split}.sentences.npy    (S+1,) int64: token offset where sentence i starts;
                               last entry == T
      {split}.documents.npy    (D+1,) int64: sentence index where document j starts;
                               last entry == S
      {split}.word_starts.npy  (T,)   uint8, 1 where a word starts (jieba, fugashi, or not
                               a WordPiece "##" piece: corpus.segment); only when
                               manifest.word_boundaries is true (whole-word masking)
      downstream/              held-out labelled tasks (e.g. sentiment.jsonl)

Splits are "train", "validation", "test".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zhbert import __version__
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, json_type, read_json
from zhbert.outputs import json_says, output_kind
from zhbert.run import DATA_MANIFEST, is_run_dir, open_run
from zhbert.vocab import Vocab

FORMAT = "zhbert-data"
FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
# every manifest prepare wrote says its format: a web app's manifest.json does not
output_kind(DATA_MANIFEST, "zhbert data directory", json_says(DATA_MANIFEST, "format", FORMAT))


@dataclass(frozen=True)
class SplitArrays:
    tokens: np.ndarray       # (T,)
    sentences: np.ndarray    # (S+1,)
    documents: np.ndarray    # (D+1,)
    word_starts: np.ndarray | None  # (T,) or None

    @property
    def num_documents(self) -> int:
        return len(self.documents) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentences) - 1

    def sentence(self, i: int) -> np.ndarray:
        return self.tokens[self.sentences[i]: self.sentences[i + 1]]

    def document_sentences(self, j: int) -> range:
        return range(int(self.documents[j]), int(self.documents[j + 1]))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def write_split(out: Path, split: str, arrays: SplitArrays) -> None:
    """Write one split's arrays into ``out`` (a staged directory)."""
    _check_split(arrays, split)
    np.save(out / f"{split}.tokens.npy", arrays.tokens, allow_pickle=False)
    np.save(out / f"{split}.sentences.npy", arrays.sentences.astype(np.int64), allow_pickle=False)
    np.save(out / f"{split}.documents.npy", arrays.documents.astype(np.int64), allow_pickle=False)
    if arrays.word_starts is not None:
        np.save(out / f"{split}.word_starts.npy", arrays.word_starts.astype(np.uint8), allow_pickle=False)


def new_manifest(config: dict[str, Any], sources: list[dict[str, Any]], vocab: Vocab,
                 splits: dict[str, dict[str, int]], word_boundaries: bool,
                 language: str = "zh", tokenizer: str = "char") -> dict[str, Any]:
    import datetime as _dt
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "zhbert_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "sources": sources,
        "splits": splits,
        "vocab": {"size": len(vocab), "sha256": vocab.sha256},
        "dtype": token_dtype(len(vocab)).name,
        "word_boundaries": word_boundaries,
        "language": language,
        "tokenizer": tokenizer,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(out / DATA_MANIFEST, manifest)


IDENTITY_SETTINGS = ("per_line", "language", "text_column", "clean", "dedup", "split", "vocab",
                     "word_boundaries", "segmenter")


@dataclass(frozen=True)
class DataDir:
    path: Path
    manifest: dict[str, Any]
    vocab: Vocab

    @property
    def identity(self) -> str:
        """What the data is, not when it was made: a hash of the manifest's prepare settings,
        sources, split sizes and vocabulary. The same corpus prepared again the same way
        keeps it; another split seed or other files change it (with the vocabulary or not)."""
        import hashlib
        import json
        m = self.manifest
        # contents, not places: the same files prepared from another path are the same data;
        # of the settings, those that shape the arrays (not --skip-bad, --limit-docs: the
        # splits' sizes say what they did)
        config = m.get("config") or {}
        part = {"config": {k: config.get(k) for k in IDENTITY_SETTINGS},
                "sources": [[src.get(k) for k in ("sha256", "documents", "skipped")]
                            for src in m.get("sources") or [] if isinstance(src, dict)],
                "splits": m.get("splits"), "vocab": m.get("vocab")}
        return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def language(self) -> str:
        """The corpus language (corpus.languages); data made before --language are Chinese."""
        return self.manifest.get("language", "zh")

    @property
    def clean_options(self) -> dict[str, Any] | None:
        """The cleaning prepare recorded (corpus.clean.CleanConfig's JSON); None for data made
        before it was recorded (CleanConfig.recorded then takes the language's defaults)."""
        return (self.manifest.get("config") or {}).get("clean")

    @property
    def tokenizer(self) -> str:
        """"char" (one character per token, "##c" inside latin words) or "wordpiece"."""
        return self.manifest.get("tokenizer", "char")

    def characters_per_token(self, split: str = "train") -> float:
        """Characters of text per token in ``split`` (report.json), what `compare --x
        characters` scales tokens by: ~1 for a Chinese character vocabulary."""
        counts = self.report().get("splits")
        counts = counts.get(split) if isinstance(counts, dict) else None
        if not isinstance(counts, dict) or not counts.get("tokens") or "characters" not in counts:
            raise UserError(f"{self.path / 'report.json'} has no {split} characters and tokens; "
                            "re-run zhbert prepare")
        return counts["characters"] / counts["tokens"]

    def report(self) -> dict[str, Any]:
        """report.json, the dataset report prepare wrote: a JSON object, or a UserError."""
        where = self.path / "report.json"
        report = read_json(where, "dataset report", "re-run zhbert prepare")
        if not isinstance(report, dict):
            raise UserError(f"{where} is not a zhbert dataset report (a JSON object; it holds "
                            f"{json_type(report)}): re-run zhbert prepare")
        return report

    def split(self, name: str, check_ids: bool = True) -> SplitArrays:
        """The arrays of split ``name``, checked; ``check_ids`` False skips the token-id pass
        where the parent process made it (a loader's worker: ``_VERIFIED`` reaches workers
        only when they are forked, not under forkserver or spawn)."""
        if name not in self.manifest.get("splits", {}):
            raise UserError(f"data directory {self.path} has no split {name!r} "
                            f"(it has: {', '.join(self.manifest.get('splits', {}))})")
        arrays = SplitArrays(
            tokens=self._load(f"{name}.tokens.npy"),
            sentences=self._load(f"{name}.sentences.npy"),
            documents=self._load(f"{name}.documents.npy"),
            word_starts=(self._load(f"{name}.word_starts.npy")
                         if self.manifest.get("word_boundaries") else None),
        )
        _check_split(arrays, name, self.path)
        if check_ids:
            _check_token_ids(arrays.tokens, len(self.vocab), self.path / f"{name}.tokens.npy")
        return arrays

    def check_arrays(self) -> None:
        """Open every split as training does (``split``), so that a missing, truncated or
        inconsistent array, or a token id outside the vocabulary, is a UserError here too,
        not only once a run starts (``_check_token_ids``: one pass over each token array)."""
        for name in self.manifest.get("splits", {}):
            self.split(name)

    def _load(self, fname: str) -> np.ndarray:
        path = self.path / fname
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise UserError(f"{path} is missing: the data directory is incomplete; "
                            "recreate it with zhbert prepare") from None
        except (ValueError, EOFError) as exc:  # EOFError: an empty (0-byte) file
            raise UserError(f"{path} is corrupt ({exc}); recreate the data directory "
                            "with zhbert prepare") from None


def _run_data_dir(run: Path) -> str:
    """The data directory a run's config.json names, for a message; open_run is the one
    reader of that file (train writes data.dir resolved, so str(Path) gives it back as is)."""
    try:
        return str(open_run(run).data_dir)
    except (OSError, UserError, KeyError, TypeError, ValueError):  # a message, never an error
        return f"see {run / 'config.json'}"


def open_data_dir(path: str | Path, expect_vocab_sha256: str | None = None) -> DataDir:
    """Open and validate a data directory; every mismatch is a UserError with a hint."""
    path = Path(path)
    if path.exists() and not path.is_dir():  # told to `prepare --out` over the file, before
        raise UserError(f"{path} is a file, not a data directory; make one from it with "
                        f"`zhbert prepare {path} --out NEW_DIR` and give NEW_DIR")
    if not path.is_dir():
        raise UserError(f"data directory not found: {path}; create it with "
                        f"`zhbert prepare builtin --out {path}`")
    if not (path / DATA_MANIFEST).exists() and is_run_dir(path):  # not "prepare --out RUN"
        raise UserError(f"{path} is a training run, not a data directory; give the data directory "
                        f"it was trained on ({_run_data_dir(path)})")
    manifest = _read_manifest(path)
    vocab = Vocab.load(path / "vocab.txt")
    if vocab.sha256 != manifest["vocab"]["sha256"]:
        raise UserError(f"{path / 'vocab.txt'} does not match the manifest's vocab hash "
                        "(edited or replaced?); re-run zhbert prepare")
    if manifest["vocab"].get("size", len(vocab)) != len(vocab):
        raise UserError(f"{path / DATA_MANIFEST} says the vocabulary has "
                        f"{manifest['vocab']['size']:,} tokens, {path / 'vocab.txt'} has "
                        f"{len(vocab):,} (edited?); re-run zhbert prepare")
    if expect_vocab_sha256 is not None and vocab.sha256 != expect_vocab_sha256:
        raise UserError(f"the vocabulary of {path} differs from the one this run was trained "
                        "with; use the data directory the run was started on, or start a new run")
    return DataDir(path=path, manifest=manifest, vocab=vocab)


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of data directory ``path``, its shape checked (``_manifest_problem``):
    a UserError naming the file and the fix otherwise, never an AttributeError later."""
    where = path / DATA_MANIFEST
    manifest = read_json(where, "data manifest",
                         f"{path} is not a data directory; make one with "
                         f"`zhbert prepare SOURCES --out NEW_DIR` (SOURCES: builtin, files, a dump)")
    if not isinstance(manifest, dict):
        raise UserError(f"{where} is not a zhbert manifest (a JSON object; it holds "
                        f"{json_type(manifest)}): re-run zhbert prepare")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a zhbert data directory (manifest format "
                        f"{manifest.get('format')!r}); create one with zhbert prepare")
    version = manifest.get("format_version")
    if type(version) is not int:  # noqa: E721 - True == 1, and "1" printed as 1 read as a match
        raise UserError(f"{where} has format_version {_show(version)}, not a whole number: "
                        "re-run zhbert prepare")
    if version != FORMAT_VERSION:
        raise UserError(f"{path} has data format version {version}, "
                        f"this zhbert reads version {FORMAT_VERSION}: re-run zhbert prepare "
                        "to rebuild it")
    problem = _manifest_problem(manifest)
    if problem:
        raise UserError(f"{where} {problem} (edited or damaged?): re-run zhbert prepare")
    return manifest


def _show(value: Any) -> str:
    """A manifest value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_COUNTS = ("documents", "sentences", "tokens")
# key: (what it must be, test); None values pass where a key may be null
_OPTIONAL = {
    "dtype": ("a string", lambda v: isinstance(v, str)),
    "word_boundaries": ("true or false", lambda v: isinstance(v, bool)),
    "language": ("a string", lambda v: isinstance(v, str)),
    "tokenizer": ('"char" or "wordpiece"', lambda v: v in ("char", "wordpiece")),
    "config": ("an object", lambda v: v is None or isinstance(v, dict)),
    "sources": ("a list", lambda v: v is None or isinstance(v, list)),
}


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's keys and value types ("has no 'splits'"), or None.
    Only their shape: a count that differs from its array is what another preparation
    looks like (DataDir.identity tells runs so), not damage."""
    for key in ("splits", "vocab"):
        if key not in m:
            return f"has no {key!r}"
        if not isinstance(m[key], dict):
            return f"has {key!r} as {json_type(m[key])}, not an object"
    for name, counts in m["splits"].items():
        if name not in SPLITS:
            return f"names an unknown split {_show(name)} (zhbert's are {', '.join(SPLITS)})"
        if not isinstance(counts, dict):
            return f"has split {name!r} as {json_type(counts)}, not an object"
        for key in _COUNTS:
            v = counts.get(key, 0)
            if type(v) is not int or v < 0:  # noqa: E721 - not true/false
                return f"has {name} {key} {_show(v)}, not a count"
    if not isinstance(m["vocab"].get("sha256"), str):
        return "has no vocab sha256 (a string)"
    size = m["vocab"].get("size", 0)
    if type(size) is not int:  # noqa: E721
        return f"has vocab size {_show(size)}, not a number"
    for key, (want, ok) in _OPTIONAL.items():
        if key in m and not ok(m[key]):
            return f"has {key} {_show(m[key])}, not {want}"
    clean = (m.get("config") or {}).get("clean")
    if clean is not None and not isinstance(clean, dict):
        return f"has config.clean {_show(clean)}, not an object"
    return None


_ID_CHUNK = 1 << 22  # ids per pass: min and max of a chunk read it from the cache once
_VERIFIED: set[tuple] = set()  # token arrays found in range, by file identity and vocab size


def _check_token_ids(tokens: np.ndarray, vocab_size: int, where: Path) -> None:
    """Every id in [0, vocab_size): one outside made torch.embedding raise an IndexError
    in the first step (or worse, on a GPU, a device assert). One pass over the array
    (PERFORMANCE in tests/test_data_dir_validation.py), once per file per process."""
    if tokens.dtype.kind not in "ui":
        raise UserError(f"{where} holds {tokens.dtype} values, not token ids: the data "
                        "directory is damaged; re-run zhbert prepare")
    try:
        st = where.stat()
        key = (str(where.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, vocab_size)
    except OSError:
        key = None
    if key in _VERIFIED:
        return
    signed = tokens.dtype.kind == "i"
    for lo in range(0, len(tokens), _ID_CHUNK):
        chunk = tokens[lo:lo + _ID_CHUNK]
        if int(chunk.max()) < vocab_size and not (signed and int(chunk.min()) < 0):
            continue
        at = lo + int(np.flatnonzero((chunk >= vocab_size) | (chunk < 0))[0])
        raise UserError(f"{where} holds token id {int(tokens[at])} at position {at:,}, outside "
                        f"the vocabulary's {vocab_size:,} ids (0 to {vocab_size - 1:,}): the data "
                        "directory is damaged; re-run zhbert prepare")
    if key is not None:
        _VERIFIED.add(key)


def _check_split(a: SplitArrays, split: str, where: Path | None = None) -> None:
    loc = f" in {where}" if where else ""
    ok = (a.tokens.ndim == 1 and a.sentences.ndim == 1 and a.documents.ndim == 1
          and len(a.sentences) >= 1 and len(a.documents) >= 1
          and int(a.sentences[-1]) == len(a.tokens) and int(a.documents[-1]) == len(a.sentences) - 1
          and (a.word_starts is None or len(a.word_starts) == len(a.tokens))
          and _offsets_ok(a.sentences) and _offsets_ok(a.documents))
    if not ok:
        raise UserError(f"split {split!r}{loc} has inconsistent arrays (truncated or corrupt); "
                        "recreate the data directory with zhbert prepare")


def _offsets_ok(offsets: np.ndarray) -> bool:
    """Offsets from 0, never going back: one overwritten (10**9 in train.sentences.npy)
    trained on in silence, a segment cut short at the end of the tokens."""
    if offsets.dtype.kind not in "ui" or int(offsets[0]) != 0:
        return False
    chunks = (offsets[lo:lo + _ID_CHUNK + 1] for lo in range(0, max(len(offsets) - 1, 1), _ID_CHUNK))
    return all(bool((c[1:] >= c[:-1]).all()) for c in chunks)  # not np.diff: uint64 wraps
