"""How a trial's trainer ended, told to Optuna: complete, failed (counted), or stopped and
retried (a signal, a lost trainer, a full disk: not counted; ``zhbert.sweep.liveness``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from zhbert.sweep.liveness import GIVEN_UP, failure_message, lost_attrs, queue_retry

if TYPE_CHECKING:
    from zhbert.sweep.worker import TrialRun

# a trainer ended by SIGTERM / SIGINT outside its training loop (loading, saving at the end),
# which handles them: -N from the signal itself, 130 from zhbert's KeyboardInterrupt exit
SIGNAL_EXITS = (-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT)

# The outcome of a trial whose trainer ran out of disk space: the worker stops there (every
# trial after it would fail the same way, each counted as a failure for good)
DISK_FULL = "out of disk space"
# The trainer exits 2 on a full disk like on any bad input. What tells them apart: first the
# trainer's own word, the errno of the OS error behind its error (``tell_failure``), by name,
# on a pipe the worker passes it (not a file: the disk is full; the log may not take it
# either); failing that (a trainer of before), its message: the OS's words (strerror) that
# its checkpoint, history and output errors quote, a full disk or a full quota, in this
# process's locale and in the C locale's, and the errno number as Python and Rust print it
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE = tuple({os.strerror(e) for e in _NO_SPACE_ERRNOS}
                  | {"No space left on device", "Disk quota exceeded"}
                  | {f"{form} {e}" for e in _NO_SPACE_ERRNOS for form in ("[Errno", "(os error")})


def read_told(fd: int) -> dict | None:
    """What the trainer told on the pipe's read end ``fd`` (closed here), once it exited;
    None when it told nothing (it did not fail on an OS error, or is a trainer of before)."""
    os.set_blocking(fd, False)  # a data-loader child of the trainer may still hold it open
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        data = b""
    finally:
        os.close(fd)
    try:
        told = json.loads(data.decode("utf-8", "replace").splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return told if isinstance(told, dict) else None


def _out_of_space_here(told: dict | None, msg: str, trial_dir: Path) -> bool:
    """A full disk (or quota) under the trial directory: the trainer's own outputs, not a
    full /dev/shm (torch's shared memory), which no freeing of disk space under the sweep
    helps. ``msg``: the log's error, spaces and line breaks as they came (it may wrap)."""
    flat = " ".join(msg.split())
    if told is not None:  # its errno, as the trainer told it
        if told.get("errno") not in {errno.errorcode[e] for e in _NO_SPACE_ERRNOS}:
            return False
        where = told.get("path")
        if where:  # a file named: under the trial directory?
            where = os.path.abspath(where)
            return where == os.path.abspath(trial_dir) or where.startswith(
                os.path.abspath(trial_dir) + os.sep)
    elif not any(words in flat for words in _NO_SPACE):
        return False
    # a write naming no file (f.write on a full disk): its message names it
    return "".join(str(trial_dir).split()) in "".join(msg.split())


def finish(study: optuna.Study, run: TrialRun, interrupted: bool = False) -> str:
    """Complete only when the trainer exited 0 with the last eval: a non-zero exit may
    come before any training at all (a trial directory holding a run of other
    parameters is refused), and then the history's evals are that other run's. A trainer
    that exited 0 short of it was stopped by a signal and saved a checkpoint: resumed."""
    trial, spec = run.trial, run.spec
    evals = dict(run.evals())
    rc = run.proc.returncode
    if rc == 0 and spec.steps in evals:
        tell(study, trial, evals[spec.steps])
        return f"complete: {spec.metric} {evals[spec.steps]:.4f} at step {spec.steps:,}"
    stopped = _stop_step(run.trial_dir) if rc == 0 else None
    if stopped is not None or rc in SIGNAL_EXITS or rc == -signal.SIGKILL:  # the OOM killer's
        return _stopped(study, run, stopped, interrupted, rc)
    msg = (failure_message(run.trial_dir / "train.log", rc) if rc else
           f"the trainer exited without an eval at step {spec.steps:,}")
    told = run.told()
    text = _error_text(run.trial_dir / "train.log") or msg
    if rc and _out_of_space_here(told, text, run.trial_dir):
        return _out_of_space(study, trial, " ".join(text.split()))  # a wrapped one, whole
    tell_failed(study, trial, "trainer", msg, retry=False)
    return f"failed: {msg}"


def _error_text(log: Path) -> str:
    """The trainer's log from its last line naming an error to the end: its error message,
    with the lines a wrapped one continues on."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    last = max((i for i, ln in enumerate(lines) if "error" in ln.lower()), default=None)
    return "\n".join(lines[last:]) if last is not None else ""


def _out_of_space(study: optuna.Study, trial: optuna.Trial, msg: str) -> str:
    """Retried, not counted: after the user frees space, `zhbert sweep DIR` resumes it from
    its last checkpoint (counted as failed, the resume ran nothing and said "no trial
    succeeded"). The trainer's own advice ("Free disk space and resume") is dropped: in a
    sweep, resuming the trial directory by hand is not the way on."""
    what = re.split(r"[.;:,]?\s*free disk space", msg.removeprefix("zhbert: error: "),
                    flags=re.IGNORECASE)[0]
    tell_failed(study, trial, "disk_full", f"{what}; free disk space and run `zhbert sweep "
                "SWEEP_DIR` again: the trial resumes from its last checkpoint", retry=True)
    return f"{DISK_FULL}: {what}"


def _stop_step(trial_dir: Path) -> int | None:
    """The step of the trainer's stop checkpoint when its history ends on one."""
    from zhbert.history import STOP_EVENT, HistoryReader
    try:
        records = HistoryReader(trial_dir / "history.jsonl", warn=lambda _: None).read().records
    except FileNotFoundError:
        return None
    events = [r for r in records if r.get("type") == "event"]
    return events[-1].get("step") if events and events[-1].get("kind") == STOP_EVENT else None


def _stopped(study: optuna.Study, run: TrialRun, step: int | None, interrupted: bool,
             rc: int) -> str:
    """The trainer saved a checkpoint at ``step`` on a signal and exited 0 (``step`` None: a
    signal ended it outside its loop, or killed it: SIGKILL from the out-of-memory killer,
    which it cannot catch): the sweep's own Ctrl-C reaching it first (resumed, always), or a
    signal to it alone (a preemption, a kill by pid), resumed like a trial whose worker was
    lost, MAX_RETRY times at most."""
    from zhbert.checkpoint import list_checkpoints
    trial = run.trial
    if interrupted:
        return interrupt(study, trial)
    msg = ("its trainer was ended by a signal outside its training loop" if step is None else
           f"its trainer was stopped by a signal at step {step:,} (a checkpoint was saved)")
    if rc == -signal.SIGKILL:  # a crash (SIGSEGV) fails the trial with its log's error instead
        msg = "its trainer was killed by SIGKILL (the out-of-memory killer sends it; see `dmesg`)"
    attrs = lost_attrs(trial.user_attrs, "trainer_stopped", msg)
    trial.set_user_attr("lost", attrs["lost"])
    tell_failed(study, trial, attrs["failure"], attrs["message"], retry=True)
    if attrs["failure"] == GIVEN_UP:
        return f"failed: {attrs['message']}"
    # one killed before its first checkpoint starts over (train_command: --force)
    saved = step is not None or list_checkpoints(run.trial_dir)
    where = "its last checkpoint" if saved else "the start"
    return f"stopped: {msg}; retried from {where}"


def interrupt(study: optuna.Study, trial: optuna.Trial) -> str:
    tell_failed(study, trial, "interrupted", "stopped by Ctrl-C/SIGTERM; resumes from its "
                "checkpoint on the next `zhbert sweep SWEEP_DIR`", retry=True)
    return "interrupted (will resume)"


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        trial.set_user_attr(k, v)


def tell_failed(study: optuna.Study, trial: optuna.Trial, kind: str, message: str, retry: bool) -> None:
    set_attrs(trial, {"failure": kind, "message": message})
    tell(study, trial, state=TrialState.FAIL)
    if retry:
        queue_retry(study, trial._trial_id)


class TakenOver(Exception):
    """Another worker failed this trial as lost (and queued its retry) while it ran here."""


def tell(study: optuna.Study, trial: optuna.Trial, *args, **kwargs) -> None:
    try:
        study.tell(trial, *args, **kwargs)
    except ValueError:  # "Cannot tell a FAIL trial": only when another worker finished it
        if study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING:
            raise TakenOver from None
        raise
