"""Which trials count towards a sweep's --trials, and which workers are alive.

Dead workers: each running trial carries its worker's host, pid and a heartbeat (user
attributes). A worker that finds a running trial whose worker process is gone (same
host) or whose heartbeat is older than the grace period fails it and enqueues a retry
(Optuna's RetryHeartbeatStaleTrialCallback: same parameters, WAITING); the retry runs
in the same trial directory and resumes from its last checkpoint; a trial whose worker was
lost more than MAX_RETRY times is not retried again, one stopped by Ctrl-C always is. A worker
beats every HEARTBEAT_S, also while it waits for a trainer to save. Counting: a trial
failed because its worker died or was interrupted is not counted (its retry is); a
trial that completes, is pruned, or fails on its own (divergence, crash) counts once.
"""

from __future__ import annotations

import os
import socket
import time
import warnings

import optuna
from optuna.trial import TrialState

NOT_COUNTED = ("worker_lost", "interrupted", "trainer_stopped")  # retried, not counted
MAX_RETRY = 3        # retries of a trial whose worker or trainer was lost (Ctrl-C: no limit)
HEARTBEAT_S = 15.0
MIN_GRACE_S = 3 * HEARTBEAT_S  # below, a live worker's trial can be failed as lost


def counted(t: optuna.trial.FrozenTrial) -> bool:
    """Does this trial count towards --trials? (see the module docstring)"""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and t.user_attrs.get("failure") not in NOT_COUNTED


def finished_count(study: optuna.Study) -> int:
    return sum(counted(t) for t in study.get_trials(deepcopy=False))


# ----------------------------------------------------------------------------- dead workers

def _alive(t: optuna.trial.FrozenTrial, now: float, grace_s: float) -> bool:
    a = t.user_attrs
    if now - float(a.get("heartbeat", now)) > grace_s:
        return False
    if a.get("worker_host") == socket.gethostname() and a.get("worker_pid"):
        try:
            os.kill(int(a["worker_pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def reap_stale(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail the running trials whose worker is gone and enqueue their retries."""
    from optuna.exceptions import UpdateFinishedTrialError

    reaped, now = [], time.time()
    storage = study._storage  # Optuna's own fail_stale_trials works the same way
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _alive(t, now, grace_s):
            continue
        try:
            # counted on the trial (its retries inherit its attributes): Optuna's own count
            # would include the Ctrl-C retries, which are not limited
            storage.set_trial_user_attr(t._trial_id, "lost", int(t.user_attrs.get("lost", 0)) + 1)
            storage.set_trial_user_attr(t._trial_id, "failure", "worker_lost")
            storage.set_trial_user_attr(t._trial_id, "message",
                                        f"worker {t.user_attrs.get('worker_host')}:"
                                        f"{t.user_attrs.get('worker_pid')} stopped answering")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker reaped it first
        queue_retry(study, t._trial_id)
        reaped.append(t.number)
    return reaped


def queue_retry(study: optuna.Study, trial_id: int) -> None:
    """A WAITING copy of a failed trial (same parameters and trial directory), unless its
    worker was lost more than MAX_RETRY times: an interrupted trial always resumes."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = study._storage.get_trial(trial_id)
    if int(frozen.user_attrs.get("lost", 0)) > MAX_RETRY:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
