"""A sweep's Optuna journal file (``optuna.journal``): Optuna's own backend and lock, with
two guards. A record half-written by a crash or a full disk is cut off (and kept aside)
before the next append lands on it and leaves a line Optuna can never read again; a journal
that cannot be read is one line naming the line and the fix, never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_bytes, writing
from zhbert.history import warn_stderr
from zhbert.run import last_line_end


def cut_torn_tail(path: Path) -> Path | None:
    """A journal whose last record has no newline (a crash or a full disk mid-append): its
    partial bytes moved to a sibling file and the journal cut to its last whole record;
    the sibling's path, or None when the journal ends whole. Only under the journal's lock:
    a reader may see a live append's first half, and Optuna's reader skips it; but the next
    append would land on that half line and leave a line Optuna can never read again."""
    import datetime as dt
    with writing(path, "the journal is untouched"), open(path, "r+b") as f:
        size = f.seek(0, 2)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        cut = last_line_end(f, size)
        f.seek(cut)
        torn = f.read()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{path.name}.torn-{stamp}")
        atomic_write_bytes(aside, torn)  # saved before a byte of the journal goes
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    warn_stderr(f"{path}: its last record was half-written ({len(torn)} bytes without a newline: "
                f"a crash or a full disk while it was written); moved them to {aside} and cut the "
                "journal back to its last whole record, which Optuna never read anyway")
    return aside


def _is_record(log) -> bool:
    """An Optuna journal record as far as its replay trusts it: an object with a known
    operation and its worker ({"op_code": 99} hit Optuna's "Should not reach" assertion, one
    without worker_id a KeyError that read as "no such study")."""
    from optuna.storages.journal._storage import JournalOperation
    return (isinstance(log, dict) and "worker_id" in log and type(log.get("op_code")) is int
            and log["op_code"] in {op.value for op in JournalOperation})


class DamagedJournal(UserError):
    """A journal Optuna cannot read; the sweep's --force may still start over (its live
    workers cannot be seen then)."""


def _bad_line(path: Path) -> tuple[int, str] | None:
    """The first line of the journal Optuna cannot replay, and why (a last line without its
    newline is a torn append, not damage); None if every line is a record."""
    with open(path, "rb") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            return None
        try:
            log = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            return number, f"not JSON: {type(exc).__name__}"
        if not _is_record(log):
            return number, "JSON, but not an Optuna journal record"
    return None


def damaged_journal(path: Path, exc: Exception | None = None) -> DamagedJournal:
    """One line for a journal Optuna cannot read: where, and the fix; nothing is changed."""
    bad = _bad_line(path)
    where = (f"line {bad[0]} is {bad[1]}" if bad else
             f"Optuna cannot read it ({type(exc).__name__}: {exc})" if exc else "Optuna cannot read it")
    return DamagedJournal(f"{path} is damaged: {where}. zhbert left it untouched; restore it from "
                          "a copy, or remove the damaged line(s) (every other line is one record), "
                          "then run again; or start the sweep over (its trials go): `zhbert sweep SPACE "
                          "--data DATA --out SWEEP_DIR --force`")


def journal_backend(path: str):
    """Optuna's journal file backend and lock, with zhbert's two guards: every append first
    cuts a torn tail (cut_torn_tail, under the lock Optuna takes for appends, so no append
    is half-done then), and a record that cannot be read is `damaged_journal`, one line."""
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    class Lock(JournalFileOpenLock):
        def acquire(self) -> bool:
            got = super().acquire()
            try:
                cut_torn_tail(Path(path))
            except BaseException:
                self.release()
                raise
            return got

    class Backend(JournalFileBackend):
        def read_logs(self, log_number_from: int):
            try:
                for log in super().read_logs(log_number_from):
                    if not _is_record(log):
                        raise ValueError("not an Optuna journal record")
                    yield log
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a torn mid-file line
                raise damaged_journal(Path(path), exc) from None

    return Backend(path, lock_obj=Lock(path))
