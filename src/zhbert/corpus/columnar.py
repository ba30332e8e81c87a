"""Columnar corpus sources: Parquet files, Hugging Face datasets saved with ``save_to_disk``,
and CSV/TSV tables.

Both are read a record batch at a time (pyarrow's ``iter_batches``; the
dataset's Arrow files are memory-mapped by ``datasets.load_from_disk``), so
memory stays bounded whatever the size. Only the text column is read
(``--text-column``, default ``text``); a missing column is a UserError that
names the columns the file has, and a column that is not text (numbers, lists) is refused
from the schema, once per file or dataset, before any row is read. Empty texts are
skipped; a null is handed on as None, for ``sources`` to count and report.

A saved dataset is a directory with ``state.json`` (a Dataset) or
``dataset_dict.json`` (a DatasetDict: every split is read, in sorted order).
``datasets`` is imported only here, offline (HF_DATASETS_OFFLINE=1).

CSV and TSV are parsed here from the lines ``sources`` decodes (any corpus encoding,
optionally compressed, a line at a time): the first non-blank row is the header, and a
quoted field may hold commas, quotes and line breaks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from zhbert.errors import UserError

BATCH_ROWS = 1024


def _columns_error(where: Path, column: str, columns: list[str]) -> UserError:
    return UserError(f"{where} has no column {column!r} (its columns: {', '.join(columns) or 'none'}); "
                     "name the text column with --text-column")


def _parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise UserError(f"corpus file {path} is not a readable Parquet file ({exc}); "
                        "fix or remove it") from None


def _check_text_type(kind, where: Path, column: str) -> None:
    """UserError unless the Arrow type ``kind`` of ``column`` holds text: told once from the
    schema rather than found row by row, where a number or a list would fail deep in cleaning."""
    import pyarrow as pa

    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"column {column!r} of {where} holds {kind}, not text; "
                        "name the text column with --text-column")


def check_parquet(path: Path, column: str) -> None:
    """UserError unless ``path`` is a Parquet file with a string column ``column``."""
    schema = _parquet(path).schema_arrow
    if column not in schema.names:
        raise _columns_error(path, column, schema.names)
    _check_text_type(schema.field(column).type, path, column)


def parquet_texts(path: Path, column: str) -> Iterator[str | None]:
    """The non-empty texts of ``column`` and None for each null, a record batch at a time."""
    for batch in _parquet(path).iter_batches(batch_size=BATCH_ROWS, columns=[column]):
        yield from (t for t in batch.column(0).to_pylist() if t is None or t)


# -- saved Hugging Face datasets -------------------------------------------------------

def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


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

DIALECTS = {"csv": csv.excel, "tsv": csv.excel_tab}  # corpus kind -> how its rows are written


def _csv_rows(lines: Iterable[str], kind: str):
    # each line gets its newline back: csv joins the lines of a quoted field with it
    return csv.reader((line + "\n" for line in lines), DIALECTS[kind])


def _header(rows) -> list[str]:
    """The first non-blank row, its names stripped (a BOM is gone already: utf-8-sig)."""
    for fields in rows:
        if any(f.strip() for f in fields):
            return [f.strip() for f in fields]
    return []


def check_csv(path: Path, lines: Iterable[str], kind: str, column: str) -> None:
    """UserError unless the table's header names ``column``."""
    try:
        header = _header(_csv_rows(lines, kind))
    except csv.Error as exc:  # the header row itself is over csv's field size limit
        raise UserError(f"{path}: cannot read its header row ({exc}); fix the file") from None
    if column not in header:
        raise _columns_error(path, column, header)


def csv_texts(lines: Iterable[str], kind: str, column: str,
              bad: Callable[[int, str], None]) -> Iterator[str]:
    """The non-blank texts of ``column``, a row at a time; a row csv cannot parse (a field
    over its size limit) goes to ``bad(line, why)``, which raises or lets the reading go on."""
    rows = _csv_rows(lines, kind)
    index = _header(rows).index(column)  # check_csv has seen it there
    while True:
        try:
            fields = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            bad(rows.line_num, str(exc))
            continue
        if index < len(fields) and fields[index].strip():
            yield fields[index]
