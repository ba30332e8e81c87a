"""Columnar corpus sources: Parquet files, Hugging Face datasets saved with ``save_to_disk``,
and CSV/TSV tables.

Both are read a record batch at a time (pyarrow's ``iter_batches``; the
dataset's Arrow files are memory-mapped by ``datasets.load_from_disk``), so
memory stays bounded whatever the size. Only the text column is read
(``--text-column``, default ``text``); a missing column is a UserError that
names the columns the file has, and a column that is not text (numbers, lists) is refused
from the schema, once per file or dataset, before any row is read. Text is any Arrow type
whose values are strings: string, large_string, string_view, and a dictionary of strings
(what pandas writes for a ``category`` column). Empty texts are skipped; a null is handed
on as None, for ``sources`` to count and report.

A saved dataset is a directory with ``state.json`` (a Dataset) or
``dataset_dict.json`` (a DatasetDict: every split is read, in sorted order).
``datasets`` is imported only here, offline (HF_DATASETS_OFFLINE=1).

CSV and TSV are parsed here from the lines ``sources`` decodes (any corpus encoding,
optionally compressed, a line at a time): the first non-blank row is the header, whose
text column must be named once. CSV is quoted as RFC 4180 has it: a quoted field may hold
commas, quotes (doubled) and line breaks; a multi-line row whose quotes do not match (an
unclosed quote that ran on into the rows after it) is a bad row. TSV is not quoted (as
Google's BERT reads it: ``quotechar=None``): a field is everything between tabs, quotes
included, and a row is a line. A field may be as long as a text file's paragraph (csv's
131,072-character limit is lifted while a table is parsed). A row too short to have the
text column is handed on as None, counted with the nulls.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator

from zhbert.corpus.filetypes import SURROGATES, shown
from zhbert.errors import UserError

BATCH_ROWS = 1024


def _columns_error(where: Path, column: str, columns: list[str]) -> UserError:
    # shown: a header's undecodable bytes (--skip-bad) as \xNN, not as the surrogates they are
    return UserError(shown(f"{where} has no column {column!r} (its columns: "
                           f"{', '.join(columns) or 'none'}); name the text column with --text-column"))


class UnreadableParquet(UserError):
    """A file Arrow cannot open as Parquet (a cut-short copy has no footer): a bad file,
    which --skip-bad skips (sources), where a missing column is the user's option."""

    def __init__(self, path: Path, why: str):
        self.why = why
        super().__init__(f"corpus file {path} is not a readable Parquet file ({why}); fix or remove it")


def open_parquet(path: Path):
    """pyarrow's ParquetFile of ``path``; UnreadableParquet where it cannot be opened."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise UnreadableParquet(path, str(exc)) from None


def _is_text(kind) -> bool:
    """Whether the values of Arrow type ``kind`` are strings, however stored: a dictionary of
    them (pandas' ``category``), string_view or large_string are text as string is."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    # string_view by name: pyarrow before 16 has no pa.string_view (nor writes one)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view"


def _check_text_type(kind, where: Path, column: str) -> None:
    """UserError unless the Arrow type ``kind`` of ``column`` holds text: told once from the
    schema rather than found row by row, where a number or a list would fail deep in cleaning."""
    if not _is_text(kind):
        raise UserError(f"column {column!r} of {where} holds {kind}, not text; "
                        "name the text column with --text-column")


def check_parquet(path: Path, column: str) -> None:
    """UserError unless ``path`` is a Parquet file with a string column ``column``."""
    with open_parquet(path) as f:  # closed now, not when collected: the read opens it again
        schema = f.schema_arrow
    if column not in schema.names:
        raise _columns_error(path, column, schema.names)
    _check_text_type(schema.field(column).type, path, column)


def parquet_texts(path: Path, column: str) -> Iterator[str | None]:
    """The non-empty texts of ``column`` and None for each null, a record batch at a time."""
    import pyarrow as pa

    row = 0
    with open_parquet(path) as f:
        for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=[column]):
            # one kind of text whatever check_parquet let through (large: no 2 GiB offset limit)
            values = batch.column(0).cast(pa.large_string())
            try:
                texts = values.to_pylist()
            except UnicodeDecodeError:  # a writer that skipped Arrow's validation: a traceback
                raise _not_utf8(path, column, row, values) from None
            yield from (t for t in texts if t is None or t)
            row += len(values)


def _not_utf8(path: Path, column: str, first: int, values) -> UserError:
    """Name the first row of ``values`` (rows ``first``... of the file) that is not UTF-8."""
    import pyarrow as pa

    raw = values.cast(pa.large_binary()).to_pylist()
    bad = next(i for i, v in enumerate(raw) if v is not None and not _valid_utf8(v))
    return UserError(f"{path}: row {first + bad:,} of column {column!r} is not valid UTF-8 "
                     "(Parquet strings are UTF-8); fix that row, or write the file again "
                     "with the text decoded")


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- saved Hugging Face datasets -------------------------------------------------------

def _data_files(path: Path) -> list[Path]:
    """The files a saved dataset is made of: each split's Arrow shards, as its state.json
    lists them. Not every file of the folder: ``datasets`` writes cache-*.arrow files
    beside the shards when a loaded dataset is mapped or filtered, which would change the
    fingerprint, and with it the data's identity, of text that did not change."""
    splits = [path / s for s in json.loads((path / "dataset_dict.json").read_text("utf-8"))["splits"]] \
        if (path / "dataset_dict.json").is_file() else [path]
    files = []
    for split in splits:
        state = json.loads((split / "state.json").read_text("utf-8"))
        files += [split / f["filename"] for f in state["_data_files"]]
    return files


def dataset_fingerprint(path: Path) -> tuple[int, str]:
    """(bytes, sha256) over the dataset's data files (``_data_files``) and their names
    (what the manifest records); the dataset was read by ``check_dataset`` first."""
    digest, size = hashlib.sha256(), 0
    try:
        files = _data_files(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read the saved dataset {path}'s file list ({exc!r}); save it "
                        "again with save_to_disk") from None
    for f in files:
        digest.update(str(f.relative_to(path)).encode("utf-8") + b"\0")
        with open(f, "rb") as r:
            while block := r.read(1 << 20):
                digest.update(block)
                size += len(block)
    return size, digest.hexdigest()


def _load(path: Path):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never reach for the hub
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path} is a saved Hugging Face dataset: reading it needs the datasets "
                        "package (pip install datasets)") from None
    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, json.JSONDecodeError, FileNotFoundError) as exc:
        raise UserError(f"cannot read the saved dataset {path} ({exc}); save it again with "
                        "save_to_disk") from None
    if isinstance(loaded, datasets.DatasetDict):
        return [loaded[name] for name in sorted(loaded)]
    return [loaded]


def check_dataset(path: Path, column: str) -> None:
    """UserError unless every split of the saved dataset has a string column ``column``."""
    for ds in _load(path):
        if column not in ds.column_names:
            raise _columns_error(path, column, ds.column_names)
        _check_text_type(ds.data.schema.field(column).type, path, column)


def dataset_texts(path: Path, column: str) -> Iterator[str | None]:
    """The non-empty texts of ``column`` of every split and None for each null,
    BATCH_ROWS rows at a time."""
    for ds in _load(path):
        for batch in ds.select_columns([column]).iter(batch_size=BATCH_ROWS):
            yield from (t for t in batch[column] if t is None or t)


# -- CSV and TSV tables ------------------------------------------------------------------

class _Unquoted(csv.excel_tab):
    """TSV as NLP corpora write it and Google's BERT reads it (``quotechar=None``): a quote
    is text, so a text opening with '"' cannot swallow the rows after it."""

    quoting = csv.QUOTE_NONE


DIALECTS = {"csv": csv.excel, "tsv": _Unquoted}  # corpus kind -> how its rows are written
# why a line a runaway quote took in is a bad row (``TableRows.body``)
TAKEN_IN = "taken into the quoted field that line {first} opens and never closes"

# csv refuses a field over 131,072 characters; a row's text is an article, read as the same
# text in a .txt or .jsonl file is. The limit is a C long: 2**31 - 1 fits every platform.
FIELD_LIMIT = 2**31 - 1


def _lifted(read):
    """read(), with csv's field size limit lifted only while it parses a row: the limit is
    global to the csv module, and other readers in the process keep theirs (setting it costs
    ~60 ns: per row, 35 ms over 200,000 rows, within the noise of reading them)."""
    old = csv.field_size_limit(FIELD_LIMIT)
    try:
        return read()
    finally:
        csv.field_size_limit(old)


class TableRows:
    """The rows of a CSV or TSV table's lines (without their newlines), as the corpus and the
    small tables (``zhbert.tables``) read them: ``header`` first, then ``body``. The lines of
    the row being read are held: a row that spans several is checked for a runaway quote."""

    def __init__(self, lines: Iterable[str], kind: str):
        self._dialect = DIALECTS[kind]
        self._held: list[str] = []
        self._rows = csv.reader(self._hold(lines), self._dialect)

    def _hold(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            line += "\n"  # its newline back: csv joins the lines of a quoted field with it
            self._held.append(line)
            yield line

    def _next(self) -> list[str] | None:
        """The next row, None at the end; csv.Error for a row csv cannot parse."""
        self._held.clear()  # csv reads no line past the row it returns
        return _lifted(lambda: next(self._rows, None))

    def header(self) -> list[str]:
        """The first non-blank row, its names stripped (a BOM is gone already: utf-8-sig);
        csv.Error where it cannot be read or its quotes ran away (columns from the rows)."""
        while (fields := self._next()) is not None and _blank(fields):
            pass
        if runaway := self._runaway():
            raise csv.Error(f"line {runaway[0]}: {runaway[1]}")
        return [f.strip() for f in fields or []]

    def body(self, each_line: bool = True) -> Iterator[tuple[int, list[str] | None, str | None]]:
        """(line, fields, None) for each non-blank row after the header, and (line, None, why)
        for a row csv cannot parse or whose quotes ran away; the reading goes on past it.
        A runaway quote takes in the rows after it: with ``each_line``, each further
        non-blank line it covered is a bad row of its own (``TAKEN_IN``), so a count of bad
        rows counts the rows lost, not 1 for thousands ("skipped 1 of 3 rows" had hidden
        2,998); without, the one bad row names them all (its ``why``: "runs over N lines")."""
        while True:
            try:
                fields = self._next()
            except csv.Error as exc:  # e.g. a NUL byte
                yield self._rows.line_num, None, str(exc)
                continue
            if fields is None:
                return
            if runaway := self._runaway():
                yield runaway[0], None, runaway[1]
                if each_line:
                    yield from self._taken_in(runaway[0])
            elif not _blank(fields):
                yield self._rows.line_num, fields, None

    def _taken_in(self, first: int) -> Iterator[tuple[int, None, str]]:
        """(line, None, why) for each non-blank line after the first of the runaway row just
        read (a blank line was no row to lose)."""
        why = TAKEN_IN.format(first=first)
        for line, text in enumerate(self._held[1:], first + 1):
            if text.strip():
                yield line, None, why

    def _runaway(self) -> tuple[int, str] | None:
        """(first line, why) if the row just read is a quoted field that ran away, else None.
        An unclosed quote reads on across rows to the next quote anywhere, where csv
        (lenient by default) closes it and goes on: rows merge into one text without a
        word. Only a row over several lines is read again, strictly (a quote inside a
        quoted field doubled, a closing one followed by the delimiter or the line's end),
        so a well-quoted multi-line field, however long, never trips it."""
        # one line: only an odd count of quotes can be a field left open (at the end of the
        # file, where csv closes it without a word: the last row's answer read as '"公')
        quote = self._dialect.quotechar if self._dialect.quoting != csv.QUOTE_NONE else None
        if len(self._held) < 2 and not (quote and self._held and self._held[0].count(quote) % 2):
            return None  # (a TSV is unquoted: its quotes are text, and never re-read)
        try:
            strict = csv.reader(self._held, self._dialect, strict=True)
            _lifted(lambda: deque(strict, 0))  # read it all, keep nothing
        except csv.Error as exc:
            end = self._rows.line_num
            span = (f"runs over {len(self._held)} lines, to line {end}, taking in the rows between"
                    if len(self._held) > 1 else "is never closed")
            return (end - len(self._held) + 1,
                    f"a quoted field opened here {span}: its quotes do not match "
                    f'({exc}); close it, and write a quote inside a quoted field twice ("")')
        return None


def _blank(fields: list[str]) -> bool:
    return not any(f.strip() for f in fields)


def check_csv(path: Path, lines: Iterable[str], kind: str, column: str,
              warn: Callable[[str], None]) -> None:
    """UserError unless the table's header names ``column``, once. A header name holding
    undecodable bytes (--skip-bad's lenient decoding) goes to ``warn`` (sources': the manifest too):
    the header is no row to skip, and such a column is one --text-column cannot name."""
    try:
        header = TableRows(lines, kind).header()
    except csv.Error as exc:
        raise UserError(f"{path}: cannot read its header row ({exc}); fix the file") from None
    if column not in header:
        raise _columns_error(path, column, header)
    if header.count(column) > 1:  # which one holds the text is anyone's guess
        raise UserError(shown(f"{path}: its header names the column {column!r} {header.count(column)} "
                              f"times (its columns: {', '.join(header)}); rename the others, or "
                              "name another text column with --text-column"))
    if stray := [f"'{name}'" for name in header if SURROGATES.search(name)]:
        warn(f"{path}: undecodable bytes in its header's column name{'s' * (len(stray) > 1)} "
             f"{', '.join(stray)} (shown as \\xNN); its rows are read as they are, but "
             "--text-column cannot name such a column: fix the header's bytes to read it")


def csv_texts(lines: Iterable[str], kind: str, column: str,
              bad: Callable[[int, str], None]) -> Iterator[str | None]:
    """The non-blank texts of ``column``, a row at a time, and None for a row too short to
    have the column (``sources`` counts it with the nulls: one warning, not a silent drop).
    A row csv cannot parse, or whose quotes ran away (``TableRows.body``), goes to
    ``bad(line, why)``, which raises or lets the reading go on."""
    rows = TableRows(lines, kind)
    index = rows.header().index(column)  # check_csv has seen it there
    # a runaway row once, its message naming the lines it covers: one error (or warning),
    # not one per line
    for line, fields, why in rows.body(each_line=False):
        if why is not None:
            bad(line, why)
        elif index >= len(fields):
            yield None
        elif SURROGATES.search(fields[index]):  # undecodable bytes (sources' --skip-bad)
            bad(line, "its text holds undecodable bytes")
        elif fields[index].strip():
            yield fields[index]
