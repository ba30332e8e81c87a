"""One reader for the tables users bring: labelled texts as CSV, TSV or JSONL.

``probe --task-file`` and ``fill-mask --input`` read through ``read_table``, so
every such file follows the same rules:

- any encoding a corpus file may have (UTF-8 with or without BOM, GB18030/GBK,
  Big5, UTF-16), plain or compressed: the file is read as ``prepare`` reads text;
- columns named by the user (``--text-column``, ``--text-pair-column``,
  ``--label-column``) or else recognised by their common names: text, sentence,
  review, content, text_a + text_b, sentence1 + sentence2; label, labels;
- CSV and TSV rows are read as ``prepare`` reads a corpus table (``columnar.TableRows``);
- a row with an empty text or label, or a malformed one (wrong number of CSV
  fields, a quote that runs away over the rows after it, a JSONL line that is not an
  object), is skipped and counted, and one warning says how many and what was wrong with
  the first; with ``strict`` the first one is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import stat
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhbert.corpus.decoding import read_small_text
from zhbert.errors import UserError

TEXT_NAMES = ("text", "sentence", "review", "content", "text_a", "sentence1")
PAIR_NAMES = {"text_a": "text_b", "sentence1": "sentence2"}  # the second text of a pair
LABEL_NAMES = ("label", "labels")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TABLE_SUFFIXES = (".csv", ".tsv", *JSONL_SUFFIXES)


@dataclass(frozen=True)
class Columns:
    text: str
    pair: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Row:
    line: int                   # where the row ends in the file (1-based)
    text: str
    pair: str | None
    label: str | None
    extra: dict[str, str]       # the other columns (e.g. a probe task's "split")


@dataclass
class Table:
    path: str
    columns: Columns
    rows: list[Row]
    skipped: Counter = field(default_factory=Counter)   # reason -> rows skipped
    first_skipped: int | None = None                    # line of the first skipped row
    first_why: str | None = None                        # and what was wrong with it

    def to_json(self) -> dict:
        """What was read, without the rows themselves."""
        return {"path": self.path, "columns": dataclasses.asdict(self.columns),
                "rows": len(self.rows), "skipped": dict(self.skipped),
                "first_skipped": self.first_skipped}

    def skipped_line(self) -> str:
        """'skipped 2 of 10 rows in f.csv (1 empty text, 1 malformed); the first, at line 3:
        WHY; ...': what was wrong, where a count alone hid a quote that ran away over the rows
        after it (one skipped row, many lost)."""
        total = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
        return (f"skipped {total} of {total + len(self.rows)} rows in {self.path} ({reasons}); "
                f"the first, at line {self.first_skipped}: {self.first_why}; pass --strict to "
                "refuse such a file")


class _BadRow(Exception):
    """A row to skip (or, strict, to refuse); args: (reason counted, detail shown)."""


def add_table_arguments(p, *, pair: bool = True, label: bool = True) -> None:
    """The column and strictness options of a command that reads a table."""
    p.add_argument("--text-column", metavar="NAME",
                   help=f"column of the text (default: the first of {', '.join(TEXT_NAMES)})")
    if pair:
        p.add_argument("--text-pair-column", metavar="NAME",
                       help="column of a second text (default: text_b after text_a, "
                            "sentence2 after sentence1)")
    if label:
        p.add_argument("--label-column", metavar="NAME",
                       help=f"column of the label (default: {' or '.join(LABEL_NAMES)})")
    p.add_argument("--strict", action="store_true",
                   help="refuse a table with an empty or malformed row (default: skip and count them)")


def table_options(args) -> dict[str, Any]:
    """read_table's keyword arguments from the options add_table_arguments added."""
    return {"text_column": getattr(args, "text_column", None),
            "pair_column": getattr(args, "text_pair_column", None),
            "label_column": getattr(args, "label_column", None),
            "strict": getattr(args, "strict", False)}


def is_table(path: str | Path) -> bool:
    """True for a file named like a table (the suffix before any compression suffix)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zst"):
        suffixes.pop()
    return bool(suffixes) and suffixes[-1] in TABLE_SUFFIXES


def read_table(path: str | Path, *, what: str = "table", need_label: bool = True,
               text_column: str | None = None, pair_column: str | None = None,
               label_column: str | None = None, strict: bool = False) -> Table:
    """Read and check a table; skipped rows are counted and reported in one warning."""
    path = Path(path)
    text = read_small_text(path, what)
    jsonl = _is_jsonl(path, text)
    header, records = _jsonl_records(text) if jsonl else _csv_records(text, path, what)
    if not header:
        raise UserError(f"{what} {path} has no rows; write a header line and one row per example"
                        if not jsonl else f"{what} {path} has no rows; write one JSON object per line")
    columns = _columns(header, path, what, need_label, text_column, pair_column, label_column)
    table = Table(str(path), columns, [])
    for line, record in records:
        try:
            table.rows.append(_row(record, line, columns, header))
        except _BadRow as exc:
            reason, detail = exc.args
            if strict:
                raise UserError(f"{what} {path}, line {line}: {detail}; fix the row, "
                                "or drop --strict to skip such rows") from None
            table.skipped[reason] += 1
            if table.first_skipped is None:
                table.first_skipped, table.first_why = line, detail
    if table.skipped:
        print(f"zhbert: warning: {table.skipped_line()}", file=sys.stderr)
    return table


def _is_jsonl(path: Path, text: str) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if any(s in JSONL_SUFFIXES for s in suffixes):
        return True
    return not any(s in (".csv", ".tsv") for s in suffixes) and text.lstrip().startswith("{")


def _csv_records(text: str, path: Path, what: str) -> tuple[list[str], list[tuple[int, Any]]]:
    """The header and (line, fields | _BadRow) for each non-blank row, read as ``prepare``
    reads a corpus table (``columnar.TableRows``): a .tsv unquoted, a field past csv's
    131,072 characters read, and a quote that runs away over the rows after it a bad row
    rather than one text swallowing them."""
    from zhbert.corpus.columnar import TableRows
    from zhbert.corpus.decoding import lines_of

    kind = "tsv" if ".tsv" in [s.lower() for s in path.suffixes] else "csv"
    rows = TableRows(lines_of(iter([text])), kind)
    try:
        header = rows.header()
    except csv.Error as exc:
        raise UserError(f"{what} {path}: cannot read its header row ({exc}); fix the file") from None

    return header, [(line, fields if why is None else _BadRow("malformed", why))
                    for line, fields, why in rows.body()]


def _jsonl_records(text: str) -> tuple[list[str], list[tuple[int, Any]]]:
    """Every key seen (in order of appearance) and (line, object | _BadRow) per line."""
    keys: dict[str, None] = {}
    records = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            records.append((line, _BadRow("malformed", f"not JSON ({exc.msg})")))
            continue
        if not isinstance(obj, dict):
            records.append((line, _BadRow("malformed", "not a JSON object")))
            continue
        keys.update(dict.fromkeys(obj))
        records.append((line, obj))
    return list(keys), records


def _columns(header: list[str], path: Path, what: str, need_label: bool, text: str | None,
             pair: str | None, label: str | None) -> Columns:
    """The columns to read: the user's names (checked) or the first common name found."""
    by_name = {name.strip().lower(): name for name in header}

    def pick(given: str | None, names, option: str) -> str | None:
        if given is not None:
            if given not in header and given.strip().lower() not in by_name:
                raise UserError(f"{what} {path} has no column {given!r} ({option}); its "
                                f"columns are: {', '.join(header)}")
            return given if given in header else by_name[given.strip().lower()]
        return next((by_name[n] for n in names if n in by_name), None)

    text_col = pick(text, TEXT_NAMES, "--text-column")
    if text_col is None:
        raise UserError(f"{what} {path} has no text column (looked for {', '.join(TEXT_NAMES)}); "
                        f"its columns are: {', '.join(header)}; name one with --text-column")
    pair_names = [PAIR_NAMES.get(text_col.strip().lower())] if pair is None else []
    pair_col = pick(pair, [n for n in pair_names if n], "--text-pair-column")
    label_col = pick(label, LABEL_NAMES, "--label-column") if need_label or label else None
    if need_label and label_col is None:
        raise UserError(f"{what} {path} has no label column (looked for {', '.join(LABEL_NAMES)}); "
                        f"its columns are: {', '.join(header)}; name one with --label-column")
    return Columns(text_col, pair_col, label_col)


def _row(record: Any, line: int, columns: Columns, header: list[str]) -> Row:
    """One checked row; raises _BadRow with what is wrong."""
    if isinstance(record, _BadRow):
        raise record
    if isinstance(record, list):  # CSV fields
        if len(record) != len(header):
            raise _BadRow("malformed", f"{len(record)} fields where the header has {len(header)} "
                                       "(an unquoted comma or quote in a text?)")
        record = dict(zip(header, record))
    text = _text(record, columns.text)
    pair = _text(record, columns.pair) if columns.pair else None
    label = _label(record, columns.label) if columns.label else None
    used = {columns.text, columns.pair, columns.label}
    extra = {k: str(v) for k, v in record.items() if k not in used and v is not None}
    return Row(line, text, pair, label, extra)


def _text(record: dict, column: str) -> str:
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _BadRow(f"empty {column}", f"empty {column!r}")
    if not isinstance(value, str):
        raise _BadRow("malformed", f"{column!r} is not a string ({type(value).__name__})")
    return value.strip()


def _label(record: dict, column: str) -> str:
    value = record.get(column)
    if isinstance(value, (list, dict)):
        raise _BadRow("malformed", f"{column!r} is not one label ({json.dumps(value, ensure_ascii=False)})")
    if value is None or not str(value).strip():
        raise _BadRow(f"empty {column}", f"empty {column!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON 1.0 and 1 are one class
    return (json.dumps(value) if isinstance(value, bool) else str(value)).strip()


def check_input_file(path: str, option: str, expected: str) -> None:
    """One line naming ``option``'s file and ``expected`` (what to give instead), where the
    reader said "cannot be decompressed as" of /proc/self/mem, "Is a directory" with no fix,
    read a pipe (/dev/stdin) twice and found it empty, and took '' for the directory "."."""
    if not path:
        raise UserError(f"{option} '' names no file; give {expected}")
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{option} {path} not found; give {expected}") from None
    except OSError as exc:
        raise UserError(f"{option} {path} cannot be read ({exc.strerror}); give {expected}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{option} {path} is a directory, not a file; give {expected}")
    if not stat.S_ISREG(mode):  # sniffed, then read: a pipe or device cannot be read twice
        raise UserError(f"{option} {path} is not a regular file (a pipe or device); save its "
                        f"content to a file and give that: {expected}")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise UserError(f"{option} {path} cannot be read ({exc.strerror}); give {expected}") from None
