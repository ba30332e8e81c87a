"""`zhbert sweep --workers-per-machine K`: K worker processes, and this one waiting on them.

Stopping: Ctrl-C in a terminal reaches the whole process group, but SIGINT or SIGTERM to
this process alone (a `kill PID`, a scheduler's preemption) reached no worker: they ran
every trial on, or, on SIGTERM, trained on as orphans of PID 1. So both are forwarded to
each worker, which stops its trial cleanly (the trainer checkpoints; the trial resumes),
and this process waits for them, then exits 130 either way (as one worker does: stopped,
continue with `zhbert sweep SWEEP_DIR`). A worker that exits 2 (its trainer ran out of
disk space, or bad input every worker meets) stops the others the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOPPED = 130           # the exit code of a sweep stopped by SIGINT or SIGTERM
STOPS_THE_SWEEP = 2     # a worker's exit code that stops the others


def spawn_workers(sweep_dir: Path, k: int, threads: int, grace_s: float, data: str | None) -> int:
    """K worker processes; the exit code: STOPPED when a signal stopped them, else the worst."""
    base = [sys.executable, "-m", "zhbert", "sweep", str(sweep_dir), "--worker",
            "--threads", str(threads), "--grace-seconds", str(grace_s)]
    if data:
        base += ["--data", data]
    received: list[int] = []  # handlers only note the signal: the loop forwards it
    old = {s: signal.signal(s, lambda signum, frame: received.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _wait(_start(base, k), received)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _start(base: list[str], k: int) -> list[subprocess.Popen]:
    """The K workers. Each holds SIGINT and SIGTERM blocked from its fork until its own
    handlers are in (worker._Stop unblocks them): one signalled in its first moments died
    outright, mid-append to the journal at worst, leaving Optuna's lock file for the other
    workers to wait out. Blocked, not ignored: a signal mask survives exec, and a stop sent
    to the worker's pid meanwhile stays pending and is delivered once the handlers are in
    (ignored, it was dropped and the worker ran on until ``_wait`` sent it again)."""
    from zhbert.sweep.worker import PARENT_ENV, STOP_SIGNALS, die_with_parent  # not in the child
    env = {**os.environ, PARENT_ENV: str(os.getpid())}  # the worker tells a parent gone meanwhile

    def in_worker() -> None:  # between fork and exec
        # SIGTERM should this process die by kill -9: once its handlers are in, it stops cleanly
        die_with_parent()
    # blocked here, around the fork (on the main thread, as spawn_workers is), so the child
    # holds them from its first instruction; this process's own arrive once they are unblocked
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return [subprocess.Popen(base + ["--worker-index", str(i)], preexec_fn=in_worker, env=env)
                for i in range(k)]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _wait(procs: list[subprocess.Popen], received: list[int]) -> int:
    """Wait for every worker, forwarding each signal received. Every process is polled
    each round: `any(p.poll() is None ...)` stopped at the first running one, and a dead
    worker left unreaped was a zombie whose pid read alive, its trial waiting out
    --grace-seconds before its retry."""
    forwarded, stop = 0, None
    while True:
        running = [p for p in procs if p.poll() is None]  # polls (reaps) them all
        if not running:
            break
        if forwarded < len(received):
            stop, forwarded = received[-1], len(received)
        elif stop is None and any(p.returncode == STOPS_THE_SWEEP for p in procs):
            stop = signal.SIGINT
        # sent each round until they exit: a worker still starting holds it pending
        # (``_start``); one running only sets its stop flag again
        for p in running if stop is not None else []:
            p.send_signal(stop)
        time.sleep(0.5)
    # a worker killed by signal N (returncode -N) exits as a shell reports it, 128 + N (as
    # -N, max() let a worker that exited 0 hide it)
    codes = [128 - c if c < 0 else c for c in (p.returncode for p in procs)]
    if received:
        return STOPPED
    # the workers it stopped exit STOPPED: the one that stopped them tells why
    return STOPS_THE_SWEEP if STOPS_THE_SWEEP in codes else STOPPED if STOPPED in codes else max(codes)
