"""Outputs a command replaces as a whole (a data directory, an export, an analysis, a
comparison, a sweep and its report): which folders may be replaced, told by their marker
file's content, never by its name alone.

Each kind of output marks its folder with a file, its marker. A file of that name alone said
"an earlier zhbert output": `prepare --force` then deleted a web app's folder (its
manifest.json) and `export --force` would have deleted a downloaded Hugging Face model (its
model.safetensors). So the module that writes each kind registers here how it knows its own
marker by content (``output_kind``), and ``check_out`` asks that, one rule for every kind,
without this low module importing the writers. fileio.staged_dir asks it before a swap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zhbert.errors import UserError


@dataclass(frozen=True)
class _OutputKind:
    what: str                           # "zhbert data directory", for the messages
    recognise: Callable[[Path], bool]   # the folder -> is its marker this kind's? (never raises)


_OUTPUT_KINDS: dict[str, _OutputKind] = {}


def output_kind(marker: str, what: str, recognise: Callable[[Path], bool]) -> None:
    """Register the kind of output marked by the file ``marker``: ``recognise(folder)`` is
    true where the folder's marker was written by zhbert (by any version of it), false for
    another program's file or an unreadable one, which check_out then refuses to replace."""
    _OUTPUT_KINDS[marker] = _OutputKind(what, recognise)


def json_object(path: Path) -> dict:
    """The JSON object in the file ``path``, for the recognisers; {} where it is missing, not a
    plain file (a FIFO would block), unreadable, not JSON or not an object."""
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        return {}
    return obj if isinstance(obj, dict) else {}


def json_says(marker: str, key: str, value: Any) -> Callable[[Path], bool]:
    """The recogniser of a kind whose JSON marker always named it: ``key`` is ``value``."""
    return lambda folder: json_object(folder / marker).get(key) == value


def is_output(folder: Path, marker: str) -> bool:
    """Whether ``folder`` holds an earlier output of the kind ``marker`` marks, by its
    content (``output_kind``): prepare's folder walk skips a data directory so."""
    return (folder / marker).is_file() and _OUTPUT_KINDS[marker].recognise(folder)


def out_state(out: Path, marker: str) -> str:
    """What the folder ``out`` is to an output of the kind ``marker`` marks: "missing",
    "empty", "ours" (an earlier output of that kind, by content: ``is_output``), "file" (no
    folder), "foreign" (a folder of other things, no marker) or "unrecognised" (its marker
    is another program's, or unreadable). The one decision on a folder to be written: by
    ``check_out`` and by any check of its own wording (benchmarks' --data), so none of
    them decides it again."""
    if not out.exists():
        return "missing"
    if not out.is_dir():
        return "file"
    if (out / marker).exists():
        return "ours" if is_output(out, marker) else "unrecognised"
    return "foreign" if any(out.iterdir()) else "empty"


def check_out(out: Path, marker: str) -> None:
    """Refuse to replace ``out`` unless it is missing, an empty directory or an earlier
    output of the kind ``marker`` marks (registered with ``output_kind``, which names it):
    replacing deletes it. ``prepare --force`` and ``export
    --force`` once deleted a training run, a folder of unrelated files and the corpus file
    they were reading, all named by mistake as --out."""
    what = _OUTPUT_KINDS[marker].what  # KeyError: the module writing this kind registers it on import
    state = out_state(out, marker)
    if state in ("file", "foreign"):
        raise UserError(f"--out {out} exists and is not an earlier {what} (no {marker}); it would "
                        "be deleted: choose a new or empty directory")
    if state == "unrecognised":
        raise UserError(f"--out {out} exists and is not an earlier {what} (the file {out / marker} "
                        f"is not a {what}'s: another program's, or unreadable); it would be deleted: "
                        "choose a new or empty directory")


def check_out_reads_none(out: Path, paths, what: str) -> None:
    """--out is replaced as a whole: never the folder of a file being read."""
    root = out.resolve()
    for p in map(Path, paths):
        if root == p.resolve() or root in p.resolve().parents:
            raise UserError(f"--out {out} holds {what} {p}, and --out is replaced as a whole; "
                            "write it somewhere else")
