"""A spawned worker signalled in its first moments (each test fails on the code before it):
before it had installed its handlers, SIGINT or SIGTERM killed it outright, and mid-append
to the Optuna journal that left Optuna's lock file for the other workers to wait out."""

import os
import signal
import subprocess
import sys
import threading
import time

from test_sweep import _study
from test_sweep_faults import _new
from zhbert.sweep import spawn
from zhbert.sweep.worker import claim

REPORT = """
import pathlib, signal, sys
blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # held from the fork: blocked, not ignored
pathlib.Path(sys.argv[1]).write_text(" ".join(str(int(s in blocked))
                                              for s in (signal.SIGINT, signal.SIGTERM)))
"""

LATE_HANDLERS = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
out.with_suffix(".started").write_text("")
t0 = time.time()
while not out.with_suffix(".go").exists() and time.time() - t0 < 15:  # still starting
    time.sleep(0.05)
def stop(signum, frame):
    out.with_suffix(".signal").write_text(str(signum))
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))  # as worker._Stop
time.sleep(15)
"""


def _workers_run(monkeypatch, script: str, *args) -> list[subprocess.Popen]:
    """spawn_workers' workers run ``script`` (with spawn's own Popen options)."""
    made, real = [], subprocess.Popen

    def popen(cmd, **kw):
        made.append(real([sys.executable, "-c", script, *map(str, args)], **kw))
        return made[-1]
    monkeypatch.setattr(spawn.subprocess, "Popen", popen)
    return made


def test_a_spawned_worker_starts_ignoring_the_stop_signals(tmp_path, monkeypatch):
    """From its fork until its own handlers are in: blocked (a mask survives exec), so a
    stop sent meanwhile is held, not dropped as an ignored one was."""
    _workers_run(monkeypatch, REPORT, tmp_path / "seen")
    assert spawn.spawn_workers(tmp_path, 1, 1, 120.0, None) == 0
    assert (tmp_path / "seen").read_text() == "1 1"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # not this process's


def test_a_stop_a_starting_worker_ignored_reaches_it_once_its_handlers_are_in(tmp_path, monkeypatch):
    made = _workers_run(monkeypatch, LATE_HANDLERS, tmp_path / "w")

    def stop_then_ready():
        t0 = time.time()
        while not (tmp_path / "w.started").exists() and time.time() - t0 < 15:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # forwarded within 0.5 s, while it still starts
        time.sleep(1.5)
        (tmp_path / "w.go").write_text("")
    threading.Thread(target=stop_then_ready, daemon=True).start()
    t0 = time.time()
    assert spawn.spawn_workers(tmp_path, 1, 1, 120.0, None) == spawn.STOPPED
    assert made[0].returncode == 130 and time.time() - t0 < 12
    assert (tmp_path / "w.signal").read_text() == str(int(signal.SIGINT))


def test_a_real_worker_signalled_as_it_starts_is_not_killed(tmp_path, synthetic_data, monkeypatch):
    """Ctrl-C to the process group the instant a worker is started: it died by SIGINT (-2),
    before Python was up; now it runs on to its handlers and ends cleanly (0: the sweep was
    done; 130: a re-sent stop reached it first), leaving no lock behind."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    _, study = _study(sweep_dir)
    study.tell(claim(study, spec, sweep_dir), 0.3)  # done: the worker starts no trainer
    made, real = [], subprocess.Popen

    def popen(cmd, **kw):
        made.append(real(cmd, **kw))
        made[-1].send_signal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the group's: the sweep's own too
        return made[-1]
    monkeypatch.setattr(spawn.subprocess, "Popen", popen)
    assert spawn.spawn_workers(sweep_dir, 1, 1, 120.0, str(synthetic_data)) == spawn.STOPPED
    assert made[0].returncode in (0, 130)
    assert not list(sweep_dir.glob("*.lock")) and not (sweep_dir / "ask.lock").exists()


def test_a_worker_whose_parent_died_while_it_started_stops(monkeypatch):
    """A parent killed by -9 while its worker still ignored signals: the death signal was
    lost, and the worker would have run trials unattended to the end (a review). Once its
    handlers are in, the worker compares its parent with the one that spawned it."""
    import os

    from zhbert.sweep import worker
    monkeypatch.setenv(worker.PARENT_ENV, str(os.getppid()))
    with worker._Stop() as stop:
        assert not stop.flag
    monkeypatch.setenv(worker.PARENT_ENV, str(os.getppid() + 1_000_000))  # not its parent now
    with worker._Stop() as stop:
        assert stop.flag
    monkeypatch.delenv(worker.PARENT_ENV)  # not spawned (the sweep's own process): no check
    with worker._Stop() as stop:
        assert not stop.flag
