"""Crash-safe file writes: write a temporary file, fsync, rename.

A reader (or a crash) never sees a half-written file: either the old content or
the new one. Directories are staged the same way (``staged_dir``) so that an
interrupted job never leaves a directory that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from zhbert.errors import UserError


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> None:
    """Give a file the mode a plain open() would (0666 less the umask): safetensors'
    writer creates its files 0600, unlike every other file of a checkpoint or export."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a finished file gets the usual permissions.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UserError(f"could not write {path}: {exc.strerror or exc}; "
                        "the previous version (if any) is untouched. Free disk space "
                        "or choose another location.") from exc
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def json_safe(v: Any) -> Any:
    """``v`` with every float JSON can carry: NaN becomes None (no value) and an infinity
    the string "inf" or "-inf" (a step never reached, an open interval end), the one way
    zhbert writes them. json.dumps would write NaN and Infinity, which are not JSON: a
    browser's JSON.parse and strict readers reject the file. Dicts, lists and tuples are
    walked (tuples become lists, as json.dumps writes them)."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else v
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def read_json(path: str | os.PathLike, what: str = "file", missing_hint: str = "") -> Any:
    """Read a JSON file, turning every failure into a readable UserError; ``missing_hint``
    is the fix to print when the file is not there."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}" + (f"; {missing_hint}" if missing_hint else "")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is corrupt (not valid JSON: {exc}); "
                        "recreate it or restore it from a backup") from None


def temp_dir_for(final: Path) -> Path:
    """A hidden sibling directory to build `final` in (normal permissions, not mkdtemp's 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def check_out(out: Path, marker: str, what: str = "zhbert output") -> None:
    """Refuse to replace ``out`` unless it is missing, an empty directory or an earlier
    ``what`` (it holds ``marker``): replacing deletes it. ``prepare --force`` and
    ``export --force`` once deleted a training run, a folder of unrelated files and the
    corpus file they were reading, all named by mistake as --out."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists())):
        raise UserError(f"--out {out} exists and is not an earlier {what} (no {marker}); it would "
                        "be deleted: choose a new or empty directory")


def check_out_reads_none(out: Path, paths, what: str) -> None:
    """--out is replaced as a whole: never the folder of a file being read."""
    root = out.resolve()
    for p in map(Path, paths):
        if root == p.resolve() or root in p.resolve().parents:
            raise UserError(f"--out {out} holds {what} {p}, and --out is replaced as a whole; "
                            "write it somewhere else")


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, force: bool = False, marker: str | None = None,
               what: str = "zhbert output") -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final``.

    If the body raises, the temporary directory is removed and ``final`` is left
    exactly as it was. With ``force`` an existing ``final`` is replaced only
    after the new one is complete, and, given a ``marker``, only if it is an earlier
    ``what`` (``check_out``), checked before the body runs.
    """
    final = Path(final)
    if marker is not None:
        check_out(final, marker, what)
    if final.exists() and not force:
        raise UserError(f"{final} already exists; pass --force to replace it "
                        "(it is replaced only once the new one is complete)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_for(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
