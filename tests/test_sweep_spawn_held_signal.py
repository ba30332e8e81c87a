"""A stop sent straight to a spawned worker's pid while it starts, before its handlers are
in: the worker ignored SIGINT/SIGTERM then, and the stop was dropped (the worker ran on,
until its parent happened to send one again). Now they are blocked from the fork, held
pending, and delivered once the handlers are in (each test fails on the code before it)."""

import os
import signal
import subprocess
import sys
import threading

from test_sweep import _study
from test_sweep_faults import _new
from zhbert.sweep import spawn
from zhbert.sweep.worker import claim

# the real worker (`zhbert sweep DIR --worker --worker-index 0`), with a hook in its window:
# just before its handlers go in it says so on stdout and waits for the test's word on stdin
WORKER = """
import sys
from zhbert.cli import main
from zhbert.sweep import worker
enter = worker._Stop.__enter__
def hooked(self):
    print("starting", flush=True)   # no handlers yet: the window
    sys.stdin.readline()            # the test has signalled this pid
    return enter(self)
worker._Stop.__enter__ = hooked
sys.exit(main(sys.argv[1:]))
"""


def test_a_sigterm_to_a_starting_workers_pid_is_held_and_stops_it(tmp_path, synthetic_data,
                                                                   monkeypatch):
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    _, study = _study(sweep_dir)
    study.tell(claim(study, spec, sweep_dir), 0.3)  # done: a worker that runs on exits 0
    made, real, signalled = [], subprocess.Popen, threading.Event()

    def handshake(proc):
        assert proc.stdout.readline() == "starting\n"
        os.kill(proc.pid, signal.SIGTERM)  # to the worker alone, not through its parent
        signalled.set()
        proc.stdin.write("go\n")
        proc.stdin.flush()

    def popen(cmd, **kw):  # spawn's own options (its preexec_fn, env), the hooked worker
        made.append(real([sys.executable, "-c", WORKER, *cmd[3:]], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw))
        threading.Thread(target=handshake, args=(made[-1],), daemon=True).start()
        return made[-1]
    monkeypatch.setattr(spawn.subprocess, "Popen", popen)
    code = spawn.spawn_workers(sweep_dir, 1, 1, 120.0, str(synthetic_data))
    err = made[0].stderr.read()
    assert signalled.is_set()
    # stopped as a stop reaching a running worker stops it: exit 130, which the sweep reads as
    # "sweep: stopped; continue with `zhbert sweep DIR`"; not killed by the signal (-15)
    assert made[0].returncode == spawn.STOPPED and code == spawn.STOPPED, err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # this process's own are back
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, []) & {signal.SIGINT, signal.SIGTERM}


def test_a_spawned_worker_holds_the_stop_signals_blocked_not_ignored(tmp_path, monkeypatch):
    report = ("import pathlib, signal, sys\n"
              "blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
              "pathlib.Path(sys.argv[1]).write_text(' '.join(\n"
              "    f'{int(s in blocked)}{int(signal.getsignal(s) is signal.SIG_IGN)}'\n"
              "    for s in (signal.SIGINT, signal.SIGTERM)))\n")
    real = subprocess.Popen
    monkeypatch.setattr(spawn.subprocess, "Popen",
                        lambda cmd, **kw: real([sys.executable, "-c", report, str(tmp_path / "seen")], **kw))
    assert spawn.spawn_workers(tmp_path, 1, 1, 120.0, None) == 0
    assert (tmp_path / "seen").read_text() == "10 10"  # blocked, and not ignored


LATE_STOP = """
import os, signal, sys, time
from zhbert.sweep.worker import STOP_SIGNALS, _Stop
signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)   # as spawn._start leaves a worker
with _Stop() as stop:
    os.kill(os.getpid(), signal.SIGTERM)                  # the parent's stop: the flag
    time.sleep(0.2)
assert stop.flag
os.kill(os.getpid(), signal.SIGTERM)                      # its repeat, after the loop
time.sleep(0.2)
print("exited cleanly", flush=True)
"""


def test_a_stop_repeated_after_the_workers_loop_does_not_kill_it_on_its_way_out():
    """The parent re-sends its stop until the worker exits (spawn._wait); once _Stop had
    unblocked the signals and put the default SIGTERM back, a late repeat killed the worker
    (rc -15), its registration in .workers left behind. _Stop's exit now blocks them again."""
    done = subprocess.run([sys.executable, "-c", LATE_STOP], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "exited cleanly" in done.stdout, (done.returncode, done.stderr)
