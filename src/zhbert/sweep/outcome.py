"""How a trial's trainer ended, told to Optuna: complete, failed (counted), or stopped and
retried (a signal, a lost trainer, a full disk: not counted; ``zhbert.sweep.liveness``).
"""

from __future__ import annotations

import errno
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
# The trainer exits 2 on a full disk like on any bad input, so its message is all that tells
# them apart: the OS's own words (strerror) that its checkpoint, history and output errors
# quote, a full disk or a full quota
_NO_SPACE = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT))


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
    # the trainer's own outputs on a full disk: its messages name the file (a full /dev/shm
    # in torch's shared memory is no disk space the user can free under the sweep)
    if rc and any(words in msg for words in _NO_SPACE) and str(run.trial_dir) in msg:
        return _out_of_space(study, trial, msg)
    tell_failed(study, trial, "trainer", msg, retry=False)
    return f"failed: {msg}"


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
