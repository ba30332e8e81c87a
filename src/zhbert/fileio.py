"""Crash-safe file writes: write a temporary file, fsync, rename.

A reader (or a crash) never sees a half-written file: either the old content or
the new one. Directories are staged the same way (``staged_dir``) so that an
interrupted job never leaves a directory that looks complete.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from zhbert.errors import UserError
from zhbert.runlock import pid_alive
# the advice by errno has its own module; its names stay importable from here
from zhbert.write_errors import _WRITE_ONLY_ERRNOS, OutputError, cannot_write, writing  # noqa: F401


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes,
                       run_folder: str | os.PathLike | None = None) -> None:
    """``path`` holds ``data`` or what it held before; a failure is ``cannot_write``
    (given ``run_folder``, a run's own file: its fix is one for a resume)."""
    path = Path(path)
    tmp = None
    try:  # the folder and the temporary file too: --out under /proc or a read-only mount
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates 0600; a finished file gets the usual permissions.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise cannot_write(path, exc, "the previous version, if any, is untouched",
                           run_folder) from exc
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str,
                      run_folder: str | os.PathLike | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), run_folder)


def atomic_write_json(path: str | os.PathLike, obj: Any,
                      run_folder: str | os.PathLike | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n",
                      run_folder)


def utc_stamp() -> str:
    """Now in UTC for a file name's suffix (a kept copy's, a corrupt checkpoint's aside)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def unused_name(path: Path) -> Path:
    """``path``, else ``path-2``, ``path-3``, ...: the first name not taken (two copies
    within a second never overwrite each other)."""
    found, n = path, 1
    while os.path.lexists(found):
        n += 1
        found = path.with_name(f"{path.name}-{n}")
    return found


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


def json_type(value: Any) -> str:
    """A JSON value's kind as a message names it ("an array", "null"): what a file holds
    where another kind was wanted (a corpus item's text, a manifest's value)."""
    names = {bool: "true or false", int: "a number", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_json(path: str | os.PathLike, what: str = "file", missing_hint: str = "") -> Any:
    """Read a JSON file, turning every failure into a readable UserError; ``missing_hint``
    is the fix to print when the file is not there (or a folder is, by its name)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}" + (f"; {missing_hint}" if missing_hint else "")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is corrupt (not valid JSON: {exc}); "
                        "recreate it or restore it from a backup") from None
    except IsADirectoryError:  # a traceback before; the file is not there either
        raise UserError(f"{what} {path} is a folder, not a file; "
                        + (missing_hint or "recreate it or restore it from a backup")) from None
    except OSError as exc:  # unreadable: permissions, an I/O error
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def temp_dir_for(final: Path) -> Path:
    """A hidden sibling directory to build `final` in (normal permissions, not mkdtemp's 0700).
    For checkpoints, written under the run's lock (``checkpoint.remove_partial`` clears
    them); ``staged_dir`` makes its own, locked (``_new_staging``)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


# ----------------------------------------------------------------------------- staged directories
#
# A staging directory is named ``.OUT.<8 random characters>.<PID>.partial`` and its creator
# holds an flock on it while it works (as zhbert.runlock and zhbert.threads do for their
# files): the kernel drops the lock however the process dies (SIGKILL, OOM), so a later run
# tells a killed run's directory (unlocked: removed) from a live one's (locked: untouched)
# without trusting a PID that may have been reused or belong to another host. The PID in the
# name is for people reading ``ls -a`` and marks the directory as one that is locked.
# Where directories cannot be locked (NFS refuses an exclusive flock on one) nothing is
# removed: a leftover then costs disk space, never a live run's work.
_OWNED = r"[a-z0-9_]{8}\.\d{1,7}\.partial"   # mkdtemp's random part, then the PID (< 2**22)
_LEGACY = r"[a-z0-9_]{8}\.partial"           # zhbert before owners were recorded
_ASIDE = r"[a-z0-9_]{8}\.(\d{1,7})\.old"     # a replaced output on its way out
LEGACY_IDLE_S = 86400.0
_HELD: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the staging directories this process locks


def _open_dir(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None


def _inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _lock(fd: int, block: bool) -> bool | None:
    """flock LOCK_EX: True once held, False while another holds it, None where the
    filesystem has no locks for directories."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


@contextlib.contextmanager
def _dir_locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s flock: zhbert's writers into one folder swap their outputs in one at a
    time, so the check that ``final`` is unchanged and the rename that replaces it are one
    step for them (unlocked where the filesystem has no locks)."""
    fd = _open_dir(path)
    try:
        # not inside this process's own staging directory (a staged_dir within a staged_dir's
        # body): flock would wait for ourselves, and no other process writes there
        if fd is not None and _inode(fd) not in _HELD:
            _lock(fd, block=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _new_staging(final: Path) -> tuple[Path, int | None]:
    """A locked hidden sibling directory to build ``final`` in, and the descriptor holding
    its lock (None where there are no locks), with normal permissions (not mkdtemp's 0700)."""
    for _ in range(5):
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=f".{os.getpid()}.partial",
                                    dir=final.parent))
        fd = _open_dir(tmp)
        if fd is not None and _lock(fd, block=True) is None:
            break  # no locks here: nobody removes it either
        # Between mkdtemp and the lock another run may have found it unlocked and removed it
        # as a killed run's (_remove_stale): ours only if it is still there.
        with contextlib.suppress(OSError):
            st = os.stat(tmp, follow_symlinks=False)
            if fd is None or os.path.samestat(st, os.fstat(fd)):
                break
        if fd is not None:
            os.close(fd)
    else:
        raise UserError(f"could not create a staging directory beside {final}: each one "
                        "vanished as it was made; is something deleting hidden folders there?")
    os.chmod(tmp, 0o777 & ~_umask())
    if fd is not None:
        _HELD.add(_inode(fd))
    return tmp, fd


def _remove_if_dead(path: Path) -> bool:
    """Remove a staging directory whose creator no longer holds its lock."""
    fd = _open_dir(path)
    if fd is None:
        return False
    try:
        if not _lock(fd, block=False):  # its creator is alive, or no locks here: keep it
            return False
        shutil.rmtree(path, ignore_errors=True)  # holding the lock: nobody can claim it now
    finally:
        os.close(fd)
    return not os.path.lexists(path)


def _idle_s(path: Path) -> float:
    """Seconds since anything in the tree at ``path`` last changed."""
    newest = 0.0
    for root, _, files in os.walk(path):
        for p in [root, *(os.path.join(root, f) for f in files)]:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(p).st_mtime)
    return time.time() - newest


def _stale(final: Path, name: str) -> str | None:
    """What ``name`` beside ``final`` is, and what was done: "removed" (a killed run's
    staging directory or replaced output), "restored" (a replaced output whose run was killed
    before its new one was renamed in: the only copy, put back as ``final``), "kept" (an older
    zhbert's staging directory that may still be running), or None (none of these)."""
    head, path = re.escape(f".{final.name}."), final.parent / name
    if re.fullmatch(head + _OWNED, name):
        return "removed" if _remove_if_dead(path) else None
    m = re.fullmatch(head + _ASIDE, name)
    if not (m or re.fullmatch(head + _LEGACY, name)) or not path.is_dir() or path.is_symlink():
        return None
    if m:  # an aside is deleted (or put back) by its live owner right away
        if pid_alive(int(m[1])):
            return None
        if not os.path.lexists(final):
            os.replace(path, final)
            return "restored"
    elif _idle_s(path) <= LEGACY_IDLE_S:  # no owner recorded: no run writes for a day idle
        return "kept"
    shutil.rmtree(path, ignore_errors=True)
    return "removed"


def _remove_stale(final: Path) -> None:
    """Clear what runs writing ``final`` that were killed midway left beside it (a Ctrl-C
    cleans up itself): their staging directories, which can hold a gigabyte of dedup index,
    and a replaced output's remains, or the replaced output itself where the new one never
    arrived; say so on stderr, and name an older zhbert's staging directories that are kept."""
    found: dict[str, list[str]] = {"removed": [], "restored": [], "kept": []}
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(final.parent)):
            kind = _stale(final, name)
            if kind is not None:
                found[kind].append(name)
    if restored := found["restored"]:
        print(f"zhbert: restored {final} from {restored[0]}, left by a run killed while "
              "replacing it", file=sys.stderr)
    if gone := found["removed"]:
        print(f"zhbert: removed {len(gone)} unfinished director{'y' if len(gone) == 1 else 'ies'} "
              f"beside {final} left by runs that were killed: {', '.join(gone)}", file=sys.stderr)
    if kept := found["kept"]:
        print(f"zhbert: note: {', '.join(kept)} beside {final}: unfinished output of an older "
              "zhbert, kept while it may still be running; remove it (rm -r) if none is",
              file=sys.stderr)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """What ``path`` is now, to tell whether another process replaced it: a replacement is
    a new inode, and an inode reused after a deletion has a newer mtime."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):  # a file in the path: mkdir says so
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _swap_in(tmp: Path, final: Path, before: tuple | None, force: bool) -> None:
    """Rename the finished ``tmp`` to ``final`` if ``final`` is still what it was when the
    run began (``before``). Another run may have written it meanwhile: two ``prepare``s
    into one --out, the later one once silently deleting the earlier's. Its output is kept
    even under ``force``: --force asks to replace what was there at the start, not what a
    concurrent run wrote since, which the user has not seen."""
    old = None
    with _dir_locked(final.parent.resolve()):  # a symlinked parent: lock the folder itself
        if _identity(final) not in (None, before):
            shutil.rmtree(tmp, ignore_errors=True)
            again = "run this again" if force else "run this again with --force"
            raise UserError(f"{final} was written by another process while this one ran; it was "
                            f"kept as that process wrote it and this run's output discarded: "
                            f"{again} to replace it")
        if before is not None and os.path.lexists(final):
            old = tmp.with_name(tmp.name[:-len(".partial")] + ".old")
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:  # also a Ctrl-C between the two renames
            if old is not None:
                os.replace(old, final)  # the previous output stays where it was
            raise
        fsync_dir(final.parent)
    if old is not None:  # a kill during this leaves it to the next run's _remove_stale
        shutil.rmtree(old, ignore_errors=True)


_KEPT = "nothing was written, and what was there is kept"


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _output_error(exc: BaseException, tmp: Path, final: Path) -> OutputError | None:
    """``exc`` as a failure to write ``final``: an OSError (or an atomic write's OutputError)
    on a path in the staging directory ``tmp``, or a write's naming no file (a full disk);
    None for anything else (reading an input, a bug)."""
    if not isinstance(exc, (OSError, OutputError)):
        return None
    error, where = (exc.error, str(exc.path)) if isinstance(exc, OutputError) else (exc, exc.filename)
    if where is None:
        ours = error.errno in _WRITE_ONLY_ERRNOS
    else:
        where, staging = os.path.abspath(os.fsdecode(where)), os.path.abspath(tmp)
        ours = where == staging or where.startswith(staging + os.sep)
    return cannot_write(final, error, _KEPT) if ours else None


def _empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:  # unreadable: not known to be empty
        return False


def refuse_existing(final: Path, force: bool) -> None:
    """An output that exists is replaced only with --force; an empty folder holds nothing to
    lose, as check_out's advice ("a new or empty directory") says, and needs none."""
    if final.exists() and not force and not _empty_dir(final):
        raise UserError(f"{final} already exists; pass --force to replace it "
                        "(it is replaced only once the new one is complete)")


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, force: bool = False,
               marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final``.

    If the body raises, the temporary directory is removed and ``final`` is left
    exactly as it was. With ``force`` an existing ``final`` is replaced only
    after the new one is complete, and, given a ``marker``, only if it is an earlier
    output of that kind (``check_out``), checked before the body runs. Whatever another process
    wrote at ``final`` while the body ran is never replaced (``_swap_in``): a UserError
    says so. Staging directories of killed runs are removed first (``_remove_stale``).
    An OSError making, writing or renaming the output is ``cannot_write`` naming ``final``.
    """
    final = Path(final)
    if final.name in ("", ".."):  # built beside it and renamed over it: never "." or ".."
        raise UserError(f"{final} is the current directory or above it: name a new folder for the output")
    _remove_stale(final)  # first: a killed run's replaced output may have to be put back
    if marker is not None:
        from zhbert.outputs import check_out  # (it imports nothing of fileio)
        check_out(final, marker)
    refuse_existing(final, force)
    before = _identity(final)
    made = _missing_dirs(final.parent)
    try:
        with writing(final, _KEPT):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp, held = _new_staging(final)
    except UserError:
        _remove_empty(made)
        raise
    try:
        yield tmp
        _swap_in(tmp, final, before, force)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        error = _output_error(exc, tmp, final)
        if error is None:
            raise
        raise error from None
    finally:
        if held is not None:
            _HELD.discard(_inode(held))
            os.close(held)  # drops the lock (after the rename it is final's)


def _remove_empty(dirs: list[Path]) -> None:
    """The folders made for an output that failed (deepest first), where still empty."""
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()
