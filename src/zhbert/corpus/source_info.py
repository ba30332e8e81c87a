"""One corpus file's record (``SourceInfo``, for the data directory's manifest), and how
``sources`` tells what is wrong with a file: a warning recorded with the file, or a
UserError naming it. File names need not be UTF-8 (GBK names from a Windows zip):
whatever names one is escaped as valid text (``filetypes.shown``) for the JSON the
manifest and report are, and for the terminal."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from zhbert.corpus.filetypes import shown
from zhbert.errors import UserError


@dataclass
class SourceInfo:
    """One input file, filled while reading; goes into the data directory's manifest."""

    spec: str               # what the user typed ("builtin", a path)
    kind: str               # "builtin" | "builtin-en" | "wiki" | "text" | "jsonl" | "json" | "csv" | "tsv"
    #                         | "parquet" | "hf-dataset"
    path: str               # resolved file path (for builtin: the package file)
    bytes: int
    sha256: str             # of the raw (compressed) file bytes
    encoding: str           # "utf-8", "gb18030", "big5", "utf-16", ...
    documents: int = 0
    skipped: bool = False   # skipped with --skip-bad
    warnings: list[str] = field(default_factory=list)
    # the file in document ids and sources: below the directory named ("notes/a.txt", as
    # found there, a link by its own name) or the file's name; not in the manifest
    name: str = field(default="", repr=False)
    # bad lines, items or rows skipped with --skip-bad, by noun ("line"): past the first
    # PART_WARNINGS of a noun they are counted in one warning (``more_bad_parts``)
    bad_parts: dict[str, int] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        del out["name"], out["bad_parts"]
        # a file name need not be UTF-8 (GBK names from a Windows zip): JSON holds text
        return {k: shown(v) if isinstance(v, str) else v for k, v in out.items()}


def warn(info: SourceInfo, message: str) -> None:
    message = shown(message)  # for the report's JSON: a file name's undecodable bytes escaped
    info.warnings.append(message)
    print(f"zhbert: warning: {message}", file=sys.stderr)


def file_error(message: str) -> UserError:
    """A UserError naming a file, with its name's undecodable bytes escaped (``shown``) as
    the warnings and the manifest have them."""
    return UserError(shown(message))


class BadFile(UserError):
    """A corpus file that is not readable text: --skip-bad skips such files."""

    def __init__(self, message: str, path: Path | str):
        super().__init__(message)
        self.path = str(path)


def bad_file(path: Path | str, why: Exception) -> BadFile:
    """A bad corpus file; the fix is the reason's own where it has one (``NotText.fix``)."""
    fix = "" if getattr(why, "fix", None) else "; fix or remove it, or pass --skip-bad to skip bad files"
    return BadFile(shown(f"corpus file {path} {why}{fix}"), path)


PART_WARNINGS = 10  # bad parts of one kind named one by one per file; the rest counted


def bad_part(info: SourceInfo, skip_bad: bool, what: str, message: str) -> None:
    """A bad JSONL line, JSON item or table row (``what``): a UserError, or with --skip-bad
    a warning, and the reading goes on. An array of 300 strings had put 300 warnings on the
    terminal and in the manifest: past PART_WARNINGS they are counted."""
    noun = what.split()[-1]
    if not skip_bad:
        raise file_error(f"bad {what} in {message}; fix the {noun}, "
                         f"or pass --skip-bad to skip bad {noun}s") from None
    info.bad_parts[what] = info.bad_parts.get(what, 0) + 1
    if info.bad_parts[what] <= PART_WARNINGS:
        warn(info, f"skipped bad {what} in {message}")


def more_bad_parts(info: SourceInfo) -> None:
    """Once a file is read: the bad parts skipped past the first PART_WARNINGS, in one warning."""
    for what, n in info.bad_parts.items():
        if n > PART_WARNINGS:
            warn(info, f"skipped {n - PART_WARNINGS:,} more bad {what}s in {info.path} "
                       f"({n:,} in all; the first {PART_WARNINGS} are named above)")
