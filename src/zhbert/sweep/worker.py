"""The worker loop: claim a trial, run it as an ordinary `zhbert train`, report, tell.

Each trial is a `python -m zhbert train` subprocess writing SWEEP_DIR/trials/NNNN/, so a
trial is a normal run (status, analyze, compare, export work on it), a diverging trial
fails like a normal run, and its threads are set like a normal run's. The worker tails
the trial's history.jsonl and reports every held-out eval as an Optuna intermediate
value; when the pruner says so it sends SIGTERM (the trainer checkpoints and exits 0)
and tells Optuna the trial was pruned, with the forecast that pruned it.

Which trials count, and which workers are alive: ``zhbert.sweep.liveness``; how a trainer's
end is told to Optuna: ``zhbert.sweep.outcome``; a sweep's K workers: ``zhbert.sweep.spawn``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from zhbert.argtypes import SEED_LIMIT
from zhbert.failure import FAILURE_FD_ENV
from zhbert.fileio import atomic_write_json
from zhbert.history import HistoryReader, eval_points
from zhbert.sweep.liveness import HEARTBEAT_S, counted, finished_count, reap_stale
from zhbert.sweep.outcome import (DISK_FULL, TakenOver, finish, interrupt,
                                  read_told, set_attrs, tell)
from zhbert.sweep.pruner import ForecastPruner, make_pruner
from zhbert.sweep.study import (SweepSpec, load_study, open_storage, require_same_sweep, sweep_mark,
                                trial_dir_name, trial_label)


@dataclass
class WorkerOptions:
    sweep_dir: Path
    threads: int
    index: int = 0
    data: str | None = None          # this machine's path to the data, when it differs
    poll_s: float = 0.5
    heartbeat_s: float = HEARTBEAT_S
    grace_s: float = 120.0
    deadline: float | None = None    # time.time() after which no trial starts


@dataclass
class Tally:
    ran: list[tuple[int, str]] = field(default_factory=list)   # (trial number, outcome)
    interrupted: bool = False
    disk_full: str | None = None   # why the worker stopped: its trial's trainer ran out of space


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


PARENT_ENV = "ZHBERT_SWEEP_PARENT"  # the spawning process's pid, set by spawn._start


class _Stop:
    """SIGINT/SIGTERM: stop the running trial cleanly (the trainer checkpoints), then exit.
    A spawned worker holds them blocked until these handlers are in (spawn._start), then
    unblocks them: a stop sent while it started is delivered here. The old dispositions
    come back on the way out."""

    def __init__(self) -> None:
        self.flag = False

    def __enter__(self) -> "_Stop":
        self._old = {s: signal.signal(s, self._set) for s in STOP_SIGNALS}
        # a stop held pending since the fork runs _set now (not blocked here: a no-op)
        self._mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        # a parent killed by -9 before this worker's death signal was set (spawn._start, as
        # it forked) sent none: the worker would run trials unattended to the end
        parent = os.environ.get(PARENT_ENV)
        if parent and parent.isdigit() and os.getppid() != int(parent):
            self.flag = True
        return self

    def _set(self, signum, frame) -> None:
        self.flag = True

    def __exit__(self, *exc) -> None:
        # a spawned worker (its stops came blocked) ignores them on its way out: its parent
        # re-sends a stop until it exits, and one landing on the old dispositions (the
        # default SIGTERM, KeyboardInterrupt) killed it, its registration left behind.
        # Ignored, not blocked again: other threads (torch's, Optuna's) do not share this
        # thread's mask, and a signal sent to the process goes to one that does not block it
        spawned = bool(self._mask & set(STOP_SIGNALS))
        for s, old in self._old.items():
            signal.signal(s, signal.SIG_IGN if spawned else old)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)


# ----------------------------------------------------------------------------- claiming

def claim(study: optuna.Study, spec: SweepSpec, sweep_dir: Path) -> optuna.Trial | None:
    """A trial to run (a waiting retry first), or None when every slot is taken (the ask
    lock: two workers sharing SWEEP_DIR never both take the last)."""
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(str(sweep_dir / "ask"), grace_period=60)
    lock.acquire()
    try:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        busy = sum(counted(t) or t.state == TrialState.RUNNING for t in trials)
        if not waiting and busy >= spec.trials:
            return None
        trial = study.ask(spec.space.distributions())
        # this worker's, at once (under the ask lock): a retry carries its dead attempt's
        # worker and heartbeat, and another worker failed it as lost before run_trial's stamp
        # the heartbeat first: until it is stamped, liveness judges the trial by its start,
        # which an RDB storage keeps in its writer's local time (one write each, in order)
        set_attrs(trial, {"heartbeat": time.time(), "worker_host": socket.gethostname(),
                          "worker_pid": os.getpid()})
        return trial
    finally:
        lock.release()


# ----------------------------------------------------------------------------- one trial

def die_with_parent() -> None:
    """In the trainer: get SIGTERM when the worker dies, even by kill -9 (Linux), so the
    trainer checkpoints and exits instead of training on beside the retry."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train_command(spec: SweepSpec, opts: WorkerOptions, trial_dir: Path, params: dict) -> list[str]:
    from zhbert.checkpoint import list_checkpoints
    cmd = [sys.executable, "-m", "zhbert", "train", "--data", opts.data or spec.data,
           "--out", str(trial_dir), "--config", spec.config_spec(opts.sweep_dir),
           "--no-progress", "--threads", str(opts.threads)]
    resume = bool(list_checkpoints(trial_dir))
    for item in spec.trial_overrides(params, exact=_as_started(trial_dir, params) if resume else ()):
        cmd += ["--set", item]
    if resume:
        cmd.append("--resume")                      # a retry: continue where it stopped
    elif (trial_dir / "config.json").exists():
        cmd.append("--force")                       # started but never checkpointed
    return cmd


def _as_started(trial_dir: Path, params: dict) -> set[str]:
    """The keys a retry passes as drawn, not tidied (space.Param.tidy): those its run started
    with so, before the space tidied its float grids. Its config holds 0.30000000000000004,
    whose hash its checkpoints carry; the tidied 0.3 would have the resume refused."""
    try:
        saved = json.loads((trial_dir / "config.json").read_text(encoding="utf-8"))["config"]
        return {k for k, v in params.items() if isinstance(v, float)
                and saved[k.partition(".")[0]][k.partition(".")[2]] == v}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _wait_for_old_trainer(trial_dir: Path, beat, timeout_s: float = 300) -> None:
    """A retry after kill -9: the dead worker's trainer got SIGTERM and is saving its
    checkpoint; let it finish before resuming from that checkpoint (beating meanwhile:
    a silent wait let other workers fail this trial as lost)."""
    from zhbert.runstate import run_state
    t0 = time.time()
    while (trial_dir / "running.json").exists() and run_state(trial_dir, 0, 0) == "running":
        if time.time() - t0 > timeout_s:
            break
        beat()
        time.sleep(0.5)


@dataclass
class TrialRun:
    """One trial in flight: the Optuna trial, its directory and its trainer process."""
    trial: optuna.Trial
    spec: SweepSpec
    opts: WorkerOptions
    trial_dir: Path
    proc: subprocess.Popen | None = None
    reported: set = field(default_factory=set)
    last_beat: float = 0.0
    _reader: HistoryReader | None = None
    _records: list = field(default_factory=list)   # the eval records read so far
    _stale: bool = False   # the history is still the dead attempt's (``_hold_old_history``)
    _held: Any = None      # that file, open until the trainer has replaced it
    _told: Any = None      # the pipe's read end, the trainer's errno from it once read (outcome)

    def evals(self) -> list[tuple[int, float]]:
        """The trial's held-out evals of the sweep's metric so far; each poll parses only
        what the trainer appended (a whole re-read cost 79 ms on a 100k-step history).
        None of a dead attempt's before this attempt's trainer has rewritten its history."""
        if self._reader is None:
            self._reader = HistoryReader(self.trial_dir / "history.jsonl", warn=lambda _: None)
        try:
            chunk = self._reader.read()
        except FileNotFoundError:  # not written yet, or removed by --force for a new one
            self._let_go(reset=False)
            return []
        if chunk.reset:  # rewritten by a resume (rewrite_for_resume) or a new run (--force)
            self._records = []
        self._let_go(chunk.reset)
        self._records += [r for r in chunk.records if r.get("type") == "eval"]
        return [] if self._stale else eval_points(self._records, self.spec.metric)

    def _hold_old_history(self) -> None:
        """A retry: until its trainer rewrites the history (rewrite_for_resume on --resume, a
        new file on --force), seconds after it starts, the file is the dead attempt's, with
        evals past the checkpoint the trainer resumes from that it will run again: reported,
        the pruner judged the trial on values the resumed run replaces. Read it before the
        trainer starts, so that its rewrite shows as ``chunk.reset`` (whatever the timing of
        the polls), and hold it open until then: a file created after a removal may get the
        freed inode number and pass for the old one."""
        try:
            self._held = open(self.trial_dir / "history.jsonl", "rb")
        except FileNotFoundError:
            return  # a first attempt: no records of another
        self._stale = True
        self.evals()

    def _let_go(self, reset: bool) -> None:
        """After a read: the history is this attempt's once rewritten; the old file is let go
        then, or once the trainer exited without rewriting it (its evals stay unreported)."""
        if reset:
            self._stale = False
        if self._held is not None and (not self._stale or (self.proc is not None
                                                            and self.proc.poll() is not None)):
            self._held.close()
            self._held = None

    def start(self) -> None:
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        _wait_for_old_trainer(self.trial_dir, self.beat)
        self._hold_old_history()  # before the trainer can rewrite it
        cmd = train_command(self.spec, self.opts, self.trial_dir, self.trial.params)
        self._told, told = os.pipe()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.opts.threads), FAILURE_FD_ENV: str(told)}
        try:
            with open(self.trial_dir / "train.log", "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             start_new_session=True, preexec_fn=die_with_parent,
                                             pass_fds=(told,))
        except BaseException:
            self.told()  # no trainer: the read end too
            raise
        finally:
            os.close(told)  # the trainer's alone: its exit ends the pipe

    def told(self) -> dict | None:
        """The errno the exited trainer told of its failure (failure.tell_failure), or None;
        read once (the pipe is closed then)."""
        if isinstance(self._told, int):
            self._told = read_told(self._told)
        return self._told

    def beat(self) -> bool:
        """Heartbeat; False when another worker has failed this trial meanwhile."""
        now = time.time()
        if now - self.last_beat < self.opts.heartbeat_s:
            return True
        self.last_beat = now
        from optuna.exceptions import UpdateFinishedTrialError
        t = self.trial.study._storage.get_trial(self.trial._trial_id)
        if t.state != TrialState.RUNNING:
            return False
        try:
            self.trial.set_user_attr("heartbeat", now)
        except UpdateFinishedTrialError:  # failed by another worker since the look above
            return False
        return True

    def report_new(self, prune: bool) -> bool:
        """Report new evals; True when the pruner wants the trial stopped. Only the newest
        is judged: a retry replays its earlier evals, and judging each against a forecast
        from the whole history pruned trials that ran on uninterrupted were kept."""
        from optuna.exceptions import UpdateFinishedTrialError

        evals = self.evals()
        new = [(step, value) for step, value in evals if step not in self.reported]
        try:
            for step, value in new:
                self.trial.report(value, step)
                self.reported.add(step)
        except UpdateFinishedTrialError:
            raise TakenOver from None
        finished = any(step >= self.spec.steps for step, _ in evals)  # nothing to save
        return bool(new) and prune and not finished and self.trial.should_prune()

    def stop(self, timeout_s: float = 300) -> None:
        """SIGTERM (the trainer checkpoints, then exits 0), beating while it saves."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            t0 = time.time()
            while self.proc.poll() is None and time.time() - t0 < timeout_s:
                self.beat()
                time.sleep(0.2)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.told()  # not read after a stop: closed
        self._let_go(reset=False)  # stopped before it rewrote the history: no need to hold it


def _record_prune(run: TrialRun, pruner) -> str:
    step = max(run.reported)
    info: dict[str, Any] = {"pruner": type(pruner).__name__, "step": step,
                            "value": run.trial.study._storage.get_trial(
                                run.trial._trial_id).intermediate_values.get(step)}
    if isinstance(pruner, ForecastPruner) and run.trial.number in pruner.decisions:
        info.update(pruner.decisions[run.trial.number].to_json())
    run.trial.set_user_attr("pruned_by", info)
    atomic_write_json(run.trial_dir / "pruned.json", info)
    return info.get("reason") or f"{info['pruner']} at step {step}"


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, opts: WorkerOptions,
              pruner, stop: _Stop, log=print) -> str:
    from optuna.exceptions import UpdateFinishedTrialError
    rel = trial.user_attrs.get("trial_dir") or trial_dir_name(trial.number)
    run = TrialRun(trial, spec, opts, opts.sweep_dir / rel, last_beat=time.time())
    try:
        # a retry inherits its attempt's attributes: one killed while recording a prune
        # would read "pruned" to status and the dashboard
        set_attrs(trial, {"trial_dir": rel, "total_steps": spec.steps, "worker_host": socket.gethostname(),
                           "worker_pid": os.getpid(), "heartbeat": time.time(), "failure": None,
                           "message": None, "started": time.time(), "pruned_by": None})
        (run.trial_dir / "pruned.json").unlink(missing_ok=True)
        return _supervise(study, run, pruner, stop, log)
    except (TakenOver, UpdateFinishedTrialError):  # its report, attributes or tell refused
        run.stop()
        return "taken over: another worker failed it as lost and queued its retry"
    finally:  # the pipe's read end closed whichever way the trial ended: a worker had kept
        run.told()  # one open per complete or stopped trial


def _supervise(study: optuna.Study, run: TrialRun, pruner, stop: _Stop, log) -> str:
    """Start the trial's trainer, report its evals, prune or stop it, tell Optuna."""
    from zhbert.sweep.space import format_value
    trial, spec, opts = run.trial, run.spec, run.opts
    rel = trial.user_attrs.get("trial_dir")
    run.start()
    # said at the start too: the first line came only when a trial ended (1.6 min for 200 steps)
    chosen = ", ".join(f"{k}={format_value(v)}" for k, v in spec.space.tidy(trial.params).items())
    log(f"sweep: {trial_label(trial.number, rel)} started ({chosen or 'no parameters'}; "
        f"{spec.steps:,} steps): zhbert status {run.trial_dir}")
    prune_on = spec.pruner != "none"
    while run.proc.poll() is None:
        time.sleep(opts.poll_s)
        if stop.flag:
            run.stop()
            return interrupt(study, trial)
        if not run.beat():
            raise TakenOver
        if run.report_new(prune_on):
            # recorded before the stop: while the trainer checkpoints, status and the dashboard
            # read "pruned", not "stopped (continue with --resume)"
            why = _record_prune(run, pruner)
            run.stop()
            if spec.steps in dict(run.evals()):
                (run.trial_dir / "pruned.json").unlink(missing_ok=True)
                trial.set_user_attr("pruned_by", None)
                break  # it finished before the stop reached it: complete, not pruned
            tell(study, trial, state=TrialState.PRUNED)
            return f"pruned at step {max(run.reported):,}: {why}"
    run.report_new(prune=False)
    return finish(study, run, interrupted=stop.flag)


# ----------------------------------------------------------------------------- the loop

def _others_running(study: optuna.Study) -> bool:
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def sampler_seed(storage, spec: SweepSpec, index: int) -> int:
    """The sweep's seed (+ the worker's index); on a resumed sweep one that depends on the trials
    so far (or the sampler repeats its first draws); below 2^32 (past it, TPESampler's ValueError)."""
    done = len(load_study(storage, spec).get_trials(deepcopy=False))
    return (spec.sampler_seed + index + 7919 * done) % SEED_LIMIT


def run_worker(spec: SweepSpec, opts: WorkerOptions, log=print) -> Tally:
    """Run trials until the sweep has spec.trials counted trials, the budget is spent, or
    Ctrl-C; while other workers' trials run, wait (one may die and need a retry). A sweep
    deleted or started over under it (rm, or a --force that could not see it) is
    SweepGone, one line: it read a missing journal with a traceback."""
    storage = open_storage(opts.sweep_dir, spec.storage)
    pruner = make_pruner(spec.pruner, opts.sweep_dir, spec.metric, spec.steps, spec.eval_every)
    study = load_study(storage, spec, sampler_seed(storage, spec, opts.index), pruner)
    mark = sweep_mark(opts.sweep_dir, spec, storage)
    tally = Tally()
    with _Stop() as stop:
        try:
            _trials(study, spec, opts, pruner, stop, tally, log,
                    still=lambda: require_same_sweep(opts.sweep_dir, spec, mark, storage))
        except Exception:
            require_same_sweep(opts.sweep_dir, spec, mark, storage)  # the reason, if it is gone
            raise
        tally.interrupted = stop.flag
    return tally


def _trials(study: optuna.Study, spec: SweepSpec, opts: WorkerOptions, pruner, stop: _Stop,
            tally: Tally, log, still) -> None:
    """run_worker's loop; ``still()`` raises SweepGone when the sweep is no longer there:
    asked before each claim, where a worker that waited between trials met it deleted."""
    while not stop.flag:
        still()
        for n in reap_stale(study, opts.grace_s):
            log(f"sweep: Optuna trial {n}: its worker is gone; failed it and queued a retry")
        if finished_count(study) >= spec.trials:
            break
        if opts.deadline is not None and time.time() >= opts.deadline:
            log("sweep: the time budget is spent; no new trial starts")
            break
        trial = claim(study, spec, opts.sweep_dir)
        if trial is None:
            if not _others_running(study):
                break
            time.sleep(max(opts.poll_s, 1.0))
            continue
        started = time.time()
        outcome = run_trial(study, trial, spec, opts, pruner, stop, log)
        tally.ran.append((trial.number, outcome))
        label = trial_label(trial.number, trial.user_attrs.get('trial_dir'))
        log(f"sweep: {label} {outcome}; {(time.time() - started) / 60:.1f} min")
        if outcome.startswith(DISK_FULL):  # the next trials would fail alike, each counted
            tally.disk_full = f"{label}: {outcome}"
            break
