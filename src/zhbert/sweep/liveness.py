"""Which trials count towards a sweep's --trials, and which workers are alive.

Dead workers: each running trial carries its worker's host, pid and a heartbeat (user
attributes). A worker that finds a running trial whose worker process is gone (same
host) or whose heartbeat (none yet: its start) is older than the grace period fails it
and enqueues a retry (Optuna's RetryHeartbeatStaleTrialCallback: same parameters, WAITING);
the retry runs in the same trial directory and resumes from its last checkpoint; a trial
whose worker (or trainer) was lost more than MAX_RETRY times is given up, one stopped by Ctrl-C always
resumes. A worker beats every HEARTBEAT_S, also while it waits for a trainer to save.
A worker between trials holds no running trial and sends no heartbeat, so every process of
a sweep also registers itself in SWEEP_DIR/.workers for as long as it lives (``registered``):
--force sees an idle worker too (``live_workers``).
Counting: a trial failed because its worker died or was interrupted, or its trainer alone
was stopped by a signal, or whose trainer ran out of disk space (the sweep stops; the trial
resumes once space is freed), is not counted (its retry is); a trial that completes, is pruned,
fails on its own (divergence, crash) or is given up counts once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from zhbert.fileio import atomic_write_json
from zhbert.runlock import pid_alive

NOT_COUNTED = ("worker_lost", "interrupted", "trainer_stopped", "disk_full")  # retried, not counted
MAX_RETRY = 3        # retries of a trial whose worker or trainer was lost (Ctrl-C: no limit)
GIVEN_UP = "given_up"  # the failure of a trial lost more than MAX_RETRY times: counted
HEARTBEAT_S = 15.0
MIN_GRACE_S = 3 * HEARTBEAT_S  # below, a live worker's trial can be failed as lost
WORKERS = ".workers"  # SWEEP_DIR/.workers/HOST-PID.json: a process of the sweep, while it lives


def counted(t: optuna.trial.FrozenTrial) -> bool:
    """Does this trial count towards --trials? (see the module docstring)"""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and t.user_attrs.get("failure") not in NOT_COUNTED


def finished_count(study: optuna.Study) -> int:
    return sum(counted(t) for t in study.get_trials(deepcopy=False))


# ----------------------------------------------------------------------------- dead workers

def _last_sign(t: optuna.trial.FrozenTrial) -> float | None:
    """When the trial's worker last showed it was alive: its heartbeat, else its start (a
    worker killed between claim's ask and its first stamp left a trial with no heartbeat,
    which counted as beating now and was never reaped: the sweep waited on it for ever)."""
    if "heartbeat" in t.user_attrs:
        return float(t.user_attrs["heartbeat"])
    return t.datetime_start.timestamp() if t.datetime_start is not None else None


def _alive(t: optuna.trial.FrozenTrial, now: float, grace_s: float) -> bool:
    a = t.user_attrs
    last = _last_sign(t)
    if last is None or now - last > grace_s:
        return False
    if a.get("worker_host") == socket.gethostname() and a.get("worker_pid"):
        return pid_alive(int(a["worker_pid"]))
    return True


def live_trials(study: optuna.Study, grace_s: float) -> list[optuna.trial.FrozenTrial]:
    """The running trials whose worker is alive (what ``reap_stale`` leaves alone)."""
    now = time.time()
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if _alive(t, now, grace_s)]


def _lost_message(t: optuna.trial.FrozenTrial) -> str:
    a = t.user_attrs
    if "worker_pid" not in a:
        return "its worker was lost before it stamped the trial (no heartbeat since its start)"
    return f"worker {a.get('worker_host')}:{a.get('worker_pid')} stopped answering"


def lost_attrs(attrs: dict, kind: str, message: str) -> dict:
    """The attributes of a trial failing as lost (``kind``: its worker gone, or its trainer
    alone stopped), counted once more on it (its retries inherit them); past MAX_RETRY it is
    given up: a failure that counts and is reported (one neither retried nor counted
    vanished from the report while the sweep started new trials in its place). Set before
    the trial is told FAIL: Optuna freezes a finished trial's attributes."""
    lost = int(attrs.get("lost", 0)) + 1
    if lost > MAX_RETRY:
        return {"lost": lost, "failure": GIVEN_UP, "message": f"{message}; given up after "
                f"{MAX_RETRY} retries"}
    return {"lost": lost, "failure": kind, "message": message}


def failure_message(log: Path, rc: int) -> str:
    """Why a trainer that exited ``rc`` (> 0) failed: its log's last error line."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors[-1] if errors else lines[-1] if lines else "") or f"trainer exited with code {rc}"


def reap_stale(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail the running trials whose worker is gone and enqueue their retries."""
    from optuna.exceptions import UpdateFinishedTrialError

    reaped, now = [], time.time()
    storage = study._storage  # Optuna's own fail_stale_trials works the same way
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _alive(t, now, grace_s):
            continue
        try:
            # counted on the trial (lost_attrs): Optuna's own count would include the Ctrl-C
            # retries, which are not limited
            attrs = lost_attrs(t.user_attrs, "worker_lost", _lost_message(t))
            for key, value in attrs.items():
                storage.set_trial_user_attr(t._trial_id, key, value)
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
    if frozen.user_attrs.get("failure") == GIVEN_UP or int(frozen.user_attrs.get("lost", 0)) > MAX_RETRY:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)


# ----------------------------------------------------------------------------- registered workers

def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux; None elsewhere or
    unreadable). With the pid it names one process: a pid reused after a worker's kill -9
    (its entry left behind) is another process, not the worker."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # the command name (field 2) may hold spaces and ")": fields count from its end
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _ps_start(pid: int) -> str | None:
    """When process ``pid`` started, as `ps` tells it (macOS and the BSDs have no /proc;
    `ps -o lstart` is theirs and procps'), in the C locale's words; None if it cannot say.
    Asked only where /proc is not there: it costs a process."""
    try:
        done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                              text=True, timeout=10, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    stamp = " ".join(done.stdout.split())
    return stamp if done.returncode == 0 and stamp else None


def _verdict(entry: dict) -> str:
    """A registered process: "remote" (another host: no pid can be asked), "dead" (its pid
    gone, or reused by a process started at another time), "alive" (its pid, the same
    process), or "unverified" (its pid runs, but no start time tells whether it is the same
    process: a kill -9 left the entry and the pid may since be another's)."""
    if entry.get("host") != socket.gethostname():
        return "remote"
    pid = int(entry["pid"])
    if not pid_alive(pid):
        return "dead"
    for key, read in (("start_ticks", _start_ticks), ("start_ps", _ps_start)):
        if entry.get(key) is not None and (now := read(pid)) is not None:
            return "alive" if now == entry[key] else "dead"
    return "unverified"


@contextlib.contextmanager
def registered(sweep_dir: Path, what: str) -> Iterator[Path]:
    """This process registered as one of the sweep's for the body's duration (its entry
    written atomically: a reader never sees half of one; removed on the way out, however
    the body ends; a kill -9 leaves it, and ``live_workers`` then finds its pid dead)."""
    pid, host = os.getpid(), socket.gethostname()
    path = sweep_dir / WORKERS / f"{host}-{pid}.json"
    ticks = _start_ticks(pid)
    entry = {"what": what, "pid": pid, "host": host, "start_ticks": ticks,
             "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if ticks is None:  # no /proc (macOS): `ps` tells the start time a reused pid would not share
        entry["start_ps"] = _ps_start(pid)
    atomic_write_json(path, entry)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def live_workers(sweep_dir: Path) -> list[tuple[Path, dict]]:
    """The registered processes of the sweep in ``sweep_dir`` that may be alive (entry
    file, entry), stale ones (dead on this host, or their pid reused) left out."""
    live = []
    # not the dot-files: atomic_write_json's temporary files, being written
    for path in sorted((sweep_dir / WORKERS).glob("[!.]*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            alive = _verdict(entry) != "dead"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # removed as it was read (its process ended), or no entry of ours
        if alive:
            live.append((path, entry))
    return live


# ----------------------------------------------------------------------------- --force

def start_over_if_idle(sweep_dir: Path, url: str, study_name: str, grace_s: float) -> None:
    """--force, refused while a process of the old sweep is alive: one registered in it
    (liveness.live_workers: a worker between trials holds no running trial) or a running
    trial's worker (liveness.live_trials: one joined from another machine registers in its
    own SWEEP_DIR). It was deleted under a running worker, whose trainer then failed, whose
    worker crashed, and whose trial and checkpoints were left in the new one."""
    from zhbert.errors import UserError
    from zhbert.sweep.study import JOURNAL, start_over  # study imports this module
    nothing = "stop it (Ctrl-C) or let it finish, then start over; nothing was deleted"
    if live := live_workers(sweep_dir):
        path, a = live[0]
        more = f" and {len(live) - 1} more" if len(live) > 1 else ""
        raise UserError(f"--force: the sweep in {sweep_dir} has a live worker ({a.get('what')} pid "
                        f"{a.get('pid')} on {a.get('host')} since {a.get('started')}{more}); {nothing}"
                        + _removal_hint(path, a))
    if url or (sweep_dir / JOURNAL).exists():  # no journal: no study, and none created here
        live_trial = _live_trial(sweep_dir, url, study_name, grace_s)
        if live_trial:
            raise UserError(f"--force: the sweep in {sweep_dir} has a live worker ({live_trial}; a "
                            f"heartbeat within --grace-seconds {grace_s:g}); {nothing}")
    start_over(sweep_dir, url, study_name)


def _removal_hint(path: Path, entry: dict) -> str:
    """How to go on where the entry's process cannot be told alive from here: its pid on
    another host cannot be asked; on this one without a start time (no /proc, no `ps`) the
    pid may be another process's since a kill -9 left the entry."""
    verdict = _verdict(entry)
    if verdict == "remote":
        return f" (if that machine's worker is gone for good: remove {path})"
    if verdict == "unverified":
        return (f" (this system cannot tell whether pid {entry.get('pid')} is still that worker: "
                f"if it is not, remove {path})")
    return ""


def _live_trial(sweep_dir: Path, url: str, study_name: str, grace_s: float) -> str | None:
    """The first running trial whose worker is alive, in words; None if none is."""
    import optuna

    from zhbert.history import warn_stderr
    from zhbert.sweep.journal import DamagedJournal
    from zhbert.sweep.study import open_storage, trial_label
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(sweep_dir, url))
    except KeyError:
        return None
    except DamagedJournal as exc:  # --force is the way out of a damaged journal
        warn_stderr(f"{exc}; starting over without knowing whether a worker is alive")
        return None
    live = live_trials(study, grace_s)
    if not live:
        return None
    t, a = live[0], live[0].user_attrs
    more = f" and {len(live) - 1} more" if len(live) > 1 else ""
    return (f"{a.get('worker_host', '?')} pid {a.get('worker_pid', '?')}, running "
            f"{trial_label(t.number, a.get('trial_dir'))}{more}")
