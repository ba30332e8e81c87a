"""A failed command's OS error, told to the process that started it (a sweep's worker).

A trainer exits 2 on a full disk as on any bad input; the worker that started it must tell
the two apart (a full disk stops the sweep there, retried later; a bad input fails the trial
for good). Its message names the OS's words in the trainer's locale, maybe wrapped: so the
trainer also writes the errno behind its error, by name, with its file, as one JSON line on a
pipe the worker passes it (FAILURE_FD_ENV; a pipe, not a file: the disk is full).
``sweep.outcome.read_told`` reads it. Low in the house: the CLI calls ``tell_failure`` as it
prints a UserError, in any command a sweep started.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os

FAILURE_FD_ENV = "ZHBERT_FAILURE_FD"


def os_error_behind(exc: BaseException | None) -> OSError | None:
    """The OS's error behind ``exc``: itself, an OutputError's, or the first in its chain
    (a UserError raised ``from None`` inside ``except OSError`` keeps it as __context__)."""
    from zhbert.fileio import OutputError
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OutputError):
            return exc.error
        if isinstance(exc, OSError) and exc.errno:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def tell_failure(exc: BaseException) -> None:
    """In a trainer a sweep started (FAILURE_FD_ENV names the pipe): the OS error behind
    ``exc``, its errno's name and its file, one JSON line to the worker (``read_told``).
    The CLI calls it as it prints a UserError; it never raises."""
    fd = os.environ.get(FAILURE_FD_ENV, "")
    error = os_error_behind(exc) if fd.isdigit() else None  # (sweep.outcome.read_told reads it)
    if error is None:
        return
    told = {"errno": errno.errorcode.get(error.errno, str(error.errno)),
            "path": os.fsdecode(error.filename) if error.filename is not None else None}
    with contextlib.suppress(OSError):
        os.write(int(fd), (json.dumps(told) + "\n").encode())
