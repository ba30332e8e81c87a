"""Why the OS refused a write, as one line with its fix: the one table of advice by errno
for every writer (fileio's atomic writes and staged outputs, a run's checkpoints and
history). An output the user names can go elsewhere ("choose another location"); a run's
own files cannot (a resume continues them where they are), so each errno has a fix of
each kind."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable, Iterator

from zhbert.errors import UserError

_RESUME = " and continue with --resume"
_WRITABLE = ("no permission to write there: choose a folder you can write to",
             "make {where} writable (chmod/chattr)" + _RESUME)
_NOT_DIR = ("a part of the path is a file, not a folder: choose another path",
            "a part of the path to {where} is a file, not a folder: move it aside" + _RESUME)
_SIZE_LIMIT = "the file is at the process's or file system's size limit (ulimit -f): "
# errno -> (the fix for an output the user names, the fix for a run's own file in {where})
_FIXES = {
    errno.EACCES: _WRITABLE,
    errno.EPERM: ("the system does not allow writing there: choose another location",
                  _WRITABLE[1]),
    errno.EROFS: ("that file system is read-only: choose a location on a writable one",
                  "that file system is read-only: remount it read-write" + _RESUME),
    errno.ENOSPC: ("free disk space or choose another location",
                   "free disk space (inodes too: delete files)" + _RESUME),
    errno.EDQUOT: ("free space under your disk quota or choose another location",
                   "free space under your disk quota" + _RESUME),
    errno.EFBIG: (_SIZE_LIMIT + "raise it or choose another location",
                  _SIZE_LIMIT + "raise it (or make room under it)" + _RESUME),
    errno.ENOTDIR: _NOT_DIR,
    errno.EEXIST: _NOT_DIR,  # mkdir
    errno.ENOENT: ("its folder cannot be created there: choose an existing, writable location",
                   "{where} is gone (deleted or unmounted?): restore it" + _RESUME),
}
_OTHER = ("choose another location", "fix that" + _RESUME)
# a write's errors that name no file (f.write on a full disk): still the output's
_WRITE_ONLY_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def write_fix(exc: OSError, run_folder: str | os.PathLike | None = None) -> str:
    """The fix for ``exc``: for an output the user can put elsewhere, or, given the
    ``run_folder`` of a run's own file (a checkpoint, the history), for one that a resume
    has to write where it is (never "choose another location")."""
    fixes = _FIXES.get(exc.errno, _OTHER)
    return fixes[0] if run_folder is None else fixes[1].format(where=run_folder)


def no_space(folder: str | os.PathLike, need: int,
             says: Callable[[int, int], str] = lambda need, free: f"{need:,} more bytes needed, "
                                                                  f"{free:,} free") -> str:
    """The parenthesis after "No space left on device": ``says(need, free)``, unless there
    are bytes enough and the file system is out of inodes (files) instead, which ``df``
    does not show; "" where ``folder`` cannot be asked (it is gone)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize  # as shutil.disk_usage counts it
    inodes_out = st.f_files > 0 and st.f_favail == 0  # (some file systems count none: 0)
    if not need:  # not known (a rename, a sync): only what statvfs tells for sure
        return (f" (out of inodes (files), not bytes: {free:,} bytes free; `df -i {folder}` "
                "shows them)") if inodes_out else ""
    if not inodes_out and free <= need:
        return f" ({says(need, free)})"
    how = "it is" if inodes_out else "so it is probably"
    return (f" ({says(need, free)}: {how} out of inodes (files), not bytes; "
            f"`df -i {folder}` shows them)")


class OutputError(UserError):
    """An output the OS refused to create, write or rename: ``path`` and the ``error``."""

    def __init__(self, message: str, path: Path, error: OSError):
        super().__init__(message)
        self.path, self.error = path, error


def cannot_write(path: str | os.PathLike, exc: OSError, kept: str,
                 run_folder: str | os.PathLike | None = None) -> OutputError:
    """One line for an OSError writing ``path``: the OS's reason, what was ``kept``, the fix
    (``write_fix``: a run's own file given its ``run_folder``)."""
    inodes = no_space(Path(path).parent, 0) if exc.errno == errno.ENOSPC else ""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}{inodes} ({kept}); "
                       f"{write_fix(exc, run_folder)}", Path(path), exc)


@contextlib.contextmanager
def writing(path: str | os.PathLike, kept: str = "nothing was written") -> Iterator[None]:
    """An OSError in the body (making ``path``'s folder, opening it) is ``cannot_write``."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc, kept) from None
