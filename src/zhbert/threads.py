"""How many CPU threads a training takes when it shares the machine.

Two trainings that each take every core do not run at half speed each: on 2 cores
they ran at a fifth (OpenMP threads spin at barriers waiting for a sibling the
kernel has descheduled to run the other process; benchmarks/RESULTS.md, "A shared
machine"). So each training registers in a machine-wide directory of trainers, and
takes its share of the cores: cores less what trainings with a fixed thread count
hold, divided among those that adapt. It looks again every few seconds between steps,
so the first training gives up cores when a second starts and takes them back when
it ends.

A registration is a file holding an ``fcntl.flock`` for the process's life (as
zhbert.runlock does for run directories): the kernel drops it however the process
dies, so a dead trainer is never counted. A fixed count (``--threads N`` or
``OMP_NUM_THREADS``) is never changed, and keeps a resumed run bit-identical to one
that never stopped; an adapting run's thread count, and so its last bits, follow the
machine's load.

Before torch loads, ``quiet_openmp_waits`` asks GNU OpenMP (torch's CPU builds ship
libgomp, which reads its wait policy once, when it loads) to sleep rather than spin
when a thread waits for work.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REGISTRY_ENV = "ZHBERT_TRAINERS_DIR"
POLL_SECONDS = 5.0


def registry_dir() -> Path:
    """Where trainings register: one directory per machine, for every user (sticky, as /tmp)."""
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / "zhbert-trainers")


def available_cores() -> int:
    """The cores this process may run on (taskset, cpusets), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quiet_openmp_waits() -> bool:
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy; True if it can still take
    effect (torch, and with it libgomp, not loaded yet)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def recorded_threads(header: object) -> int | None:
    """The thread count (per process) a history header records: its ``threads`` field
    (train writes it beside ``machine``), else, for headers written before that field,
    parsed from the ``machine`` line as machine.describe_machine writes it ("AMD EPYC (...)
    · 2 threads · torch 2.13.0"); None where it records none (a hand-written header). A
    ``machine`` string alone is still read, by that parse only (callers that pass it)."""
    if isinstance(header, dict):
        n = header.get("threads")
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            return n
        header = header.get("machine")
    found = re.search(r"(?:^| · )(\d+) threads?(?: · |$)", header) if isinstance(header, str) else None
    return int(found.group(1)) if found else None


def fixed_threads(requested: int | None) -> int | None:
    """The thread count the user fixed: ``--threads``, else OMP_NUM_THREADS, else None."""
    if requested is not None:
        return requested
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        n = int(value) if value else 0
    except ValueError:
        n = -1
    if n >= 1:
        return n
    if value:  # set, but not a count: say so rather than quietly take the share
        print(f"zhbert: warning: OMP_NUM_THREADS={value!r} is not a thread count >= 1; ignored "
              "(this training takes its share of the cores; --threads N fixes a count)",
              file=sys.stderr)
    return None


@dataclass(frozen=True)
class Trainer:
    """One registered training, as its registration file describes it."""
    pid: int
    started: float
    threads: int | None  # fixed count, or None: it adapts
    run: str | None = None  # its run directory, resolved (status: the *other* trainings)

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "started": self.started, "threads": self.threads,
                           "run": self.run})


def share(me: Trainer, trainers: list[Trainer], cores: int) -> int:
    """My thread count: the cores that fixed-count trainings leave, split evenly among the
    adapting ones, the first started taking one more each while the split leaves cores
    over; never below 1. ``trainers`` includes ``me``."""
    if me.threads is not None:
        return me.threads
    free = cores - sum(t.threads for t in trainers if t.threads is not None and t != me)
    adapting = sorted((t for t in trainers if t.threads is None), key=lambda t: (t.started, t.pid))
    if me not in adapting:
        adapting.append(me)
    base, extra = divmod(max(free, 0), len(adapting))
    return max(1, base + (1 if adapting.index(me) < extra else 0))


def live_trainers(directory: Path | None = None) -> list[Trainer]:
    """The registered trainings whose process still holds its registration's lock."""
    directory = registry_dir() if directory is None else directory
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # removed by its owner meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: a live trainer
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                found.append(Trainer(int(info["pid"]), float(info["started"]),
                                     info.get("threads"), info.get("run")))
                continue
            _remove_dead(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or half written: skip it this time
        finally:
            os.close(fd)
    return found


def _remove_dead(path: Path) -> None:
    """Unlocked under its final name: its owner died (owners lock before the rename)."""
    try:
        path.unlink()
    except OSError:
        pass  # another user's file in the sticky directory, or already gone


class ThreadShare:
    """``with ThreadShare(args.threads):`` registers this training and sets torch's thread
    count to its share; ``rebalance()`` between steps follows other trainings coming and
    going (torch's count stays as last set on exit, as ``torch.set_num_threads`` leaves it)."""

    def __init__(self, requested: int | None, run: str | Path | None = None,
                 directory: Path | None = None, cores: int | None = None,
                 poll_seconds: float = POLL_SECONDS):
        self.directory = registry_dir() if directory is None else Path(directory)
        self.cores = available_cores() if cores is None else cores
        self.me = Trainer(os.getpid(), time.time(), fixed_threads(requested),
                          str(Path(run).resolve()) if run is not None else None)
        self.poll_seconds = poll_seconds
        self.threads = 0
        self.others = 0  # other live trainings at the last look
        self._fd: int | None = None
        self._path: Path | None = None
        self._next_poll = 0.0
        self._unannounced = False

    def __enter__(self) -> "ThreadShare":
        self._register()
        _ACTIVE.add(self)
        self.rebalance(force=True)
        # said at the first step, not here: a command that then fails on its arguments or
        # data says only that
        self._unannounced = self.me.threads is None and os.environ.get("RANK", "0") == "0"
        return self

    def announce(self) -> None:
        """Once, at the first training step: the share, where other trainings take cores."""
        if self._unannounced and self.others:
            print(f"zhbert: {self.threads} of {self.cores} cores: {self.others} other zhbert "
                  f"training{'s' if self.others > 1 else ''} on this machine "
                  f"{'share' if self.others > 1 else 'shares'} them "
                  "(--threads N fixes the count)", file=sys.stderr)
        self._unannounced = False

    def __exit__(self, *exc) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)  # still locked: nobody else removes it
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._path = None
        _ACTIVE.discard(self)

    def _register(self) -> None:
        """Write and lock the registration under a temporary name, then rename it into
        place: a file under its final name without a lock is always a dead trainer's."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.directory.stat().st_uid == os.getuid():
                os.chmod(self.directory, 0o1777)  # every user's trainings count
            name = f"{self.me.pid}-{secrets.token_hex(4)}"
            tmp = self.directory / f".{name}.tmp"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, self.me.to_json().encode())
            os.rename(tmp, self.directory / f"{name}.json")
        except OSError as exc:  # no shared temp directory: adapt to nobody but keep training
            print(f"zhbert: warning: cannot register in {self.directory} ({exc.strerror or exc}); "
                  "this training will not see others on the machine", file=sys.stderr)
            return
        self._fd, self._path = fd, self.directory / f"{name}.json"

    def rebalance(self, force: bool = False) -> int:
        """Re-read the registry (every ``poll_seconds``, or now with ``force``) and set
        torch's thread count to this training's share; returns the count."""
        now = time.monotonic()
        if not force and now < self._next_poll:
            return self.threads
        self._next_poll = now + self.poll_seconds
        others = [t for t in live_trainers(self.directory) if t != self.me]
        self.others = len(others)
        threads = share(self.me, [self.me, *others], self.cores)
        if threads != self.threads:
            import torch

            torch.set_num_threads(threads)
            self.threads = threads
        return threads


_ACTIVE: set[ThreadShare] = set()


def rebalance() -> None:
    """Between training steps: the active ThreadShare (if any) follows the machine."""
    for s in list(_ACTIVE):
        s.rebalance()
        s.announce()
