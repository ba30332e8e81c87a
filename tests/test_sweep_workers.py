"""zhbert sweep's workers, lost or stopped: what a tester found (each test fails on the code
before it): a running trial with no heartbeat waited on for ever, --force deleting a sweep
under a live worker, signals to a sweep of spawned workers not reaching them, a dead
spawned worker left a zombie, a full disk counted as a failed trial, and the nits."""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import types

import pytest
from optuna.trial import TrialState

from test_sweep import ENV, _args, _dead_pid, _space, _study
from test_sweep_faults import _new, _trainer_exits
from zhbert.cli import main as cli_main
from zhbert.runlock import pid_alive
from zhbert.sweep import command, liveness, spawn, worker
from zhbert.sweep.liveness import counted, finished_count, reap_stale
from zhbert.sweep.study import with_runtime
from zhbert.sweep.worker import WorkerOptions, claim, run_worker

NO_SPACE = ("zhbert: error: could not write checkpoint {trial_dir}/checkpoints/step_00000006: "
            "No space left on device (it needs about 2.1 MB, 0.0 MB free); the previous "
            "checkpoints are intact. Free disk space and resume.\n")


def _later(monkeypatch, seconds: float) -> None:
    """Liveness's clock, ``seconds`` on."""
    real = time.time
    monkeypatch.setattr(liveness, "time", types.SimpleNamespace(time=lambda: real() + seconds))


# ----------------------------------------------------------------------------- 1. no heartbeat

def test_a_running_trial_with_no_heartbeat_is_judged_by_its_start(tmp_path, synthetic_data, monkeypatch):
    """A worker killed between claim's ask and its stamp left a RUNNING trial with no
    heartbeat: read as beating now, it was never reaped and the sweep waited for ever."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    spec, study = _study(sweep_dir)
    study.ask()  # the dead worker's: no worker, no heartbeat
    assert reap_stale(study, grace_s=60) == []  # just started: its worker may stamp it yet
    assert "1 running, 0 waiting)" in command.summary(sweep_dir, spec)
    _later(monkeypatch, 61)
    assert reap_stale(study, grace_s=60) == [0]
    lost, retry = study.get_trials()
    assert lost.state == TrialState.FAIL and not counted(lost) and retry.state == TrialState.WAITING
    assert "no heartbeat" in lost.user_attrs["message"]


def test_a_sweep_with_a_trial_no_worker_stamped_goes_on(tmp_path, synthetic_data, monkeypatch):
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    spec, study = _study(sweep_dir)
    study.ask()
    _later(monkeypatch, 3600)
    monkeypatch.setattr(worker, "TrialRun", _FakeRun)
    _FakeRun.rc, _FakeRun.log = 0, ""

    def waited(_):
        raise AssertionError("waited on a trial no worker runs")
    monkeypatch.setattr(worker.time, "sleep", waited)
    tally = run_worker(spec, WorkerOptions(sweep_dir, threads=1, poll_s=0), log=lambda m: None)
    assert [o.split(":")[0] for _, o in tally.ran] == ["complete"] and finished_count(study) == 1


# ----------------------------------------------------------------------------- 2. --force

def test_force_is_refused_while_a_worker_of_the_sweep_is_alive(tmp_path, synthetic_data, capsys):
    """--force deleted the study and trials under a live worker: its trainer exited 2, the
    worker crashed with a traceback, and its trial and checkpoints were left in the new sweep."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=2)
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)  # this process's: a live pid on this host
    trial.set_user_attr("trial_dir", "trials/0000")
    (sweep_dir / "trials" / "0000").mkdir(parents=True)
    argv = ["sweep", str(tmp_path / "space.toml"), "--data", str(synthetic_data), "--out",
            str(sweep_dir), "--trials", "2", "--steps", "8", "--force"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "has a live worker" in err and f"pid {os.getpid()}" in err and "Traceback" not in err
    assert (sweep_dir / "trials" / "0000").exists() and len(_study(sweep_dir)[1].get_trials()) == 1


def test_force_starts_over_once_the_worker_is_gone(tmp_path, synthetic_data):
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=2)
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("worker_pid", _dead_pid())
    (sweep_dir / "trials" / "0000").mkdir(parents=True)
    command.prepare(_args_force(tmp_path, synthetic_data, sweep_dir))
    assert not (sweep_dir / "trials").exists() and _study(sweep_dir)[1].get_trials() == []


def _args_force(tmp_path, data, out):
    return _args(tmp_path / "space.toml", data, out, trials=2, steps=8, force=True)


# ----------------------------------------------------------------------------- 3, 4. spawned workers

FAKE_WORKER = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    out.with_suffix(".signal").write_text(str(signum))
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))  # as worker._Stop
out.with_suffix(".ready").write_text("")
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[3]))
"""


def _fake_workers(tmp_path, monkeypatch, lives: list[float], codes=(0, 0)):
    """spawn_workers' workers, faked: worker i lives ``lives[i]`` seconds unless signalled
    (130), then exits ``codes[i]``."""
    made, real = [], subprocess.Popen

    def popen(cmd, **kw):
        i = int(cmd[cmd.index("--worker-index") + 1])
        p = real([sys.executable, "-c", FAKE_WORKER, str(tmp_path / f"w{i}"),
                              str(lives[i]), str(codes[i])], **kw)
        made.append(p)
        return p
    monkeypatch.setattr(spawn.subprocess, "Popen", popen)
    return made


def _when_ready(tmp_path, k, then):
    def run():
        t0 = time.time()
        while not all((tmp_path / f"w{i}.ready").exists() for i in range(k)) and time.time() - t0 < 30:
            time.sleep(0.05)
        then()
    threading.Thread(target=run, daemon=True).start()


def _spawning_sweep(tmp_path, synthetic_data, monkeypatch):
    """`zhbert sweep SWEEP_DIR` starting two (faked) workers: its exit code. A SIGTERM this
    process gets where the sweep installs no handler fails the test, not the test run."""
    sweep_dir, _ = _new(tmp_path, synthetic_data, trials=2)
    monkeypatch.setattr(command, "_saved_workers", lambda spec, d: 2)  # whatever the cores here

    def unhandled(signum, frame):
        raise AssertionError("the sweep let SIGTERM end it")
    old = signal.signal(signal.SIGTERM, unhandled)
    try:
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        return command.run(parser.parse_args([str(sweep_dir)]))
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_sweep_alone_reaches_its_workers(tmp_path, synthetic_data, monkeypatch, signum):
    """SIGINT to the sweep's pid alone: its workers ran every trial on; SIGTERM: the sweep
    died (143) and its workers trained on under PID 1."""
    made = _fake_workers(tmp_path, monkeypatch, [20, 20])
    _when_ready(tmp_path, 2, lambda: os.kill(os.getpid(), signum))
    t0 = time.time()
    code = _spawning_sweep(tmp_path, synthetic_data, monkeypatch)
    assert code == 130 and time.time() - t0 < 15
    assert [(tmp_path / f"w{i}.signal").read_text() for i in range(2)] == [str(int(signum))] * 2
    assert all(p.returncode == 130 for p in made)


def test_a_dead_spawned_worker_is_reaped_at_once(tmp_path, synthetic_data, monkeypatch):
    """The wait stopped at the first running worker: the second, dead, stayed a zombie whose
    pid read alive, and its trial waited out --grace-seconds before its retry."""
    made = _fake_workers(tmp_path, monkeypatch, [20, 0])
    seen = []

    def look():
        time.sleep(1.5)  # worker 1 exited at once; the wait polls every 0.5 s
        seen.append(pid_alive(made[1].pid))
        os.kill(os.getpid(), signal.SIGINT)
    _when_ready(tmp_path, 2, look)
    assert _spawning_sweep(tmp_path, synthetic_data, monkeypatch) == 130
    assert seen == [False]


def test_a_worker_that_stops_the_sweep_stops_the_others(tmp_path, monkeypatch):
    """A worker exits 2 (its trainer ran out of disk space): the others stop too, and the
    sweep exits 2, not 130 from the workers it stopped."""
    _fake_workers(tmp_path, monkeypatch, [60, 0], codes=(0, 2))
    assert spawn.spawn_workers(tmp_path, 2, 1, 120.0, None) == 2
    assert (tmp_path / "w0.signal").read_text() == str(int(signal.SIGINT))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # its handlers put back


@pytest.mark.slow
def test_sigterm_to_a_sweep_of_two_workers_stops_them_and_their_trainers(tmp_path, synthetic_data):
    """End to end: SIGTERM to the sweep's pid; it exits 130, no worker or trainer left."""
    space = _space(tmp_path)
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "zhbert", "sweep", str(space), "--data",
                             str(synthetic_data), "--out", str(out), "--trials", "3", "--steps",
                             "400", "--workers-per-machine", "2", "--threads", "1"], env=ENV,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(list(out.glob("trials/*/running.json"))) < 2 and time.time() - t0 < 120:
        time.sleep(0.5)
    time.sleep(2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped; continue with" in err
    time.sleep(1)
    assert not any(pid_alive(int(c)) for c in children)
    assert not list(out.glob("trials/*/running.json")) or all(
        "running" not in p.read_text() for p in out.glob("trials/*/running.json"))


# ----------------------------------------------------------------------------- 5. disk full

class _FakeRun:
    """The trainer process, faked: exits ``rc`` after writing ``log`` (class attributes)."""
    rc, log = 0, ""

    def __init__(self, trial, spec, opts, trial_dir, last_beat):
        self.trial, self.spec, self.opts, self.trial_dir = trial, spec, opts, trial_dir
        self.reported = set()
        self.proc = types.SimpleNamespace(poll=lambda: self.rc, returncode=self.rc)

    def start(self):
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        (self.trial_dir / "train.log").write_text(self.log.format(trial_dir=self.trial_dir))

    def beat(self):
        return True

    def told(self):  # no pipe: the trainer told no errno
        return None

    def report_new(self, prune):
        return False

    def evals(self):
        return [] if self.rc else [(self.spec.steps, 0.3)]

    def stop(self):
        pass


def test_a_trial_whose_disk_filled_is_retried_not_counted(tmp_path, synthetic_data, monkeypatch):
    """Counted as failed: after space was freed, a resume ran nothing ("2 of 2 trials
    finished ... no trial succeeded")."""
    out, study, next_dir = _trainer_exits(tmp_path, synthetic_data, monkeypatch, 2,
                                          checkpoint=True,
                                          log=NO_SPACE.format(trial_dir=tmp_path / "s" / "trials" / "0000"))
    assert out.startswith("out of disk space: could not write checkpoint") and next_dir == "trials/0000"
    failed = study.get_trials()[0]
    assert not counted(failed) and failed.user_attrs["failure"] == "disk_full"
    assert "Free disk space and resume" not in failed.user_attrs["message"]
    assert "zhbert sweep SWEEP_DIR` again" in failed.user_attrs["message"]


def test_no_space_outside_the_trial_is_a_failure_not_a_full_disk(tmp_path, synthetic_data, monkeypatch):
    """A full /dev/shm (torch's shared memory) says "No space left on device" too, but no
    freeing of disk space under the sweep helps: it fails like any error (a review)."""
    shm = "zhbert: error: unable to write to file </torch_123_456>: No space left on device (28)\n"
    out, study, _ = _trainer_exits(tmp_path, synthetic_data, monkeypatch, 2, checkpoint=True, log=shm)
    assert out.startswith("failed: ") and study.get_trials()[0].user_attrs["failure"] == "trainer"


def test_a_full_disk_stops_the_sweep_and_the_resume_runs_the_trial(tmp_path, synthetic_data,
                                                                  monkeypatch, capsys):
    sweep_dir, _ = _new(tmp_path, synthetic_data, trials=2)
    monkeypatch.setattr(worker, "TrialRun", _FakeRun)
    monkeypatch.setattr(_FakeRun, "rc", 2)
    monkeypatch.setattr(_FakeRun, "log", NO_SPACE)
    assert cli_main(["sweep", str(sweep_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("started (") == 1  # stopped at the first: every next one would fail alike
    last = err.strip().splitlines()[-1]
    assert last.startswith("zhbert: error: trials/0000: out of disk space: could not write") and (
        f"free disk space and run `zhbert sweep {sweep_dir}` again" in last)
    assert "no trial succeeded" not in err and "Traceback" not in err
    monkeypatch.setattr(_FakeRun, "rc", 0)  # space freed
    assert cli_main(["sweep", str(sweep_dir)]) == 0
    _, study = _study(sweep_dir)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["trial_dir"] for t in done] == ["trials/0000", "trials/0002"]


# ----------------------------------------------------------------------------- 6. nits

def test_more_trials_finished_than_asked_is_said_plainly(tmp_path, synthetic_data):
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=2)
    _, study = _study(sweep_dir)
    for _ in range(2):
        study.tell(claim(study, spec, sweep_dir), 0.3)
    line = command.summary(sweep_dir, with_runtime(spec, trials=1))
    assert "2 trials finished (more than the --trials 1 asked)" in line and "2 of 1" not in line


def test_sweep_help_names_the_report(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["sweep", "--help"])
    assert exc.value.code == 0 and "zhbert sweep report" in capsys.readouterr().out
