"""One writer at a time: an OS lock held for a process's life.

Two trainers on one run directory would both append to history.jsonl and both
write checkpoints; two `checkpoint-eval`s or `probe`s would interleave their
result files. Each writer holds ``fcntl.flock`` on a lock file next to what it
writes. The kernel releases the lock when the process dies, however it dies
(SIGKILL, OOM, power loss of the process), so a stale lock never blocks: the
lock file left behind only says who held it last. The lock file is never
deleted (a process could be holding the old inode while another creates a new
one). flock is reliable on local filesystems; on NFS it may be advisory per host.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from zhbert.errors import UserError


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (another user's counts as alive). The
    sweep's worker check, `status` and staged_dir's leftovers ask this one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, another user's
        return True
    return True


def lock_path(target: str | Path) -> Path:
    """The lock file guarding ``target``: ``RUN/.train.lock`` for a run directory is
    ``lock_path(RUN / "train")``; ``RUN/.probe.jsonl.lock`` guards probe.jsonl."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


class LockHeld(UserError):
    """A WriterLock another live process holds (its PID named); callers that refuse
    something else for it (train --force deleting the run) tell it from other failures."""


class WriterLock:
    """``with WriterLock(path, "zhbert train"):`` -- exclusive, non-blocking; a second
    holder gets a UserError (exit 2) naming the live PID."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "WriterLock":
        existed = self.path.parent.is_dir()  # a run's folder: a resume cannot go elsewhere
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            file = next((p for p in (self.path.parent, *self.path.parent.parents) if p.is_file()), None)
            if file is not None:  # mkdir says only "File exists" (a newcomer's --out file.txt)
                raise UserError(f"{file} is a file, not a directory: give a directory "
                                "(a new one, or the run's)") from None
            from zhbert.write_errors import write_fix
            raise UserError(f"cannot create the run directory {self.path.parent} or its lock: "
                            f"{exc.strerror or exc}; "
                            f"{write_fix(exc, self.path.parent if existed else None)}") from None
        try:
            _flock_exclusive(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(f"{self.path.parent} is in use: {holder.get('what', 'another zhbert')} "
                            f"is running as PID {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')} (since {holder.get('started', '?')}); "
                            "wait for it to finish or stop it, then run this again") from None
        except OSError as exc:
            os.close(fd)
            raise UserError(f"cannot lock {self.path}: {exc.strerror or exc}; "
                            "is the directory on a filesystem without locks?") from None
        holder = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)  # who holds it, for the next one
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ``is_locked`` takes a shared lock for microseconds to test for a holder (flock has no
# test-only call): an exclusive attempt that meets it tries again before calling the
# directory in use. A real holder keeps its lock; ~0.2 s of retries cost nothing next to it.
_RETRIES, _RETRY_S = 8, 0.025


def _flock_exclusive(fd: int) -> None:
    """LOCK_EX | LOCK_NB, retried past another process's brief test (``is_locked``);
    BlockingIOError if the lock is still held after the retries."""
    for attempt in range(_RETRIES + 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == _RETRIES:
                raise
            time.sleep(_RETRY_S)


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):  # being written this instant, or damaged
        return {}
    return holder if isinstance(holder, dict) else {}


def is_locked(path: str | Path) -> bool:
    """True while some live process holds the lock at ``path`` (e.g. a trainer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
