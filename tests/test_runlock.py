"""The writer lock: a second writer is refused naming the live PID; a dead holder's
lock never blocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.errors import UserError
from zhbert.runlock import WriterLock, is_locked, lock_path

HOLD = textwrap.dedent("""
    import sys, time
    from zhbert.runlock import WriterLock
    WriterLock(sys.argv[1], "zhbert train").acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_lock_path():
    assert lock_path("/r/run/train").as_posix() == "/r/run/.train.lock"
    assert lock_path("/r/run/probe.jsonl").as_posix() == "/r/run/.probe.jsonl.lock"


def test_second_writer_in_this_process_is_refused(tmp_path):
    path = tmp_path / "run" / ".train.lock"
    with WriterLock(path, "zhbert train") as first:
        assert first.held and is_locked(path)
        with pytest.raises(UserError, match=rf"run is in use: zhbert train is running as PID {os.getpid()}"):
            WriterLock(path, "zhbert train").acquire()
    assert not is_locked(path) and path.exists()  # released, the file stays
    with WriterLock(path, "zhbert probe"):  # free again
        assert '"what": "zhbert probe"' in path.read_text()


def test_a_writer_starting_while_another_process_tests_the_lock_gets_it(tmp_path):
    """``is_locked`` (status, the monitor) takes a shared lock for an instant to test for a
    holder: a trainer starting in that instant must not be refused as "in use"."""
    import fcntl
    import threading

    path = tmp_path / "run" / ".train.lock"
    with WriterLock(path, "zhbert train"):
        pass  # a stale lock file, as a finished run leaves it
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the test's instant, held 30 ms
    threading.Timer(0.03, os.close, (fd,)).start()
    with WriterLock(path, "zhbert train") as lock:
        assert lock.held


def test_other_process_then_killed(tmp_path):
    """A live holder in another process is named; SIGKILL it and the lock is free at once."""
    path = tmp_path / ".train.lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"PID {child.pid} on "):
            WriterLock(path, "zhbert train").acquire()
        assert is_locked(path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert str(child.pid) in path.read_text()  # the stale file still names the dead process...
    with WriterLock(path, "zhbert train"):    # ...and does not block
        assert str(os.getpid()) in path.read_text()


def test_unreadable_holder_still_refused(tmp_path):
    path = tmp_path / ".x.lock"
    with WriterLock(path, "zhbert train"):
        path.write_text("garbage")  # e.g. being rewritten this instant
        with pytest.raises(UserError, match=r"running as PID \?"):
            WriterLock(path, "zhbert train").acquire()


def test_a_file_where_the_run_directory_goes_is_named(tmp_path):
    """`train --out afile.txt` said "cannot create the run directory ...: File exists"."""
    (tmp_path / "afile").write_text("x")
    for run in (tmp_path / "afile", tmp_path / "afile" / "run"):
        with pytest.raises(UserError, match=f"{tmp_path / 'afile'} is a file, not a directory: give a directory"):
            WriterLock(run / ".train.lock", "zhbert train").acquire()
    assert (tmp_path / "afile").read_text() == "x"


def test_eval_and_probe_writers_take_their_file_locks(trained_run, tmp_path):
    """A second `eval` (or `probe`) on a run is refused while one writes its results;
    evaluation alongside a trainer is fine (different files)."""
    from zhbert.checkpoint_eval import evaluate_checkpoints
    from zhbert.probe import ProbeSettings, probe_run
    from zhbert.run import EVAL_RESULTS

    run = shutil.copytree(trained_run, tmp_path / "run")
    with WriterLock(lock_path(run / EVAL_RESULTS), "zhbert eval"):
        with pytest.raises(UserError, match=f"zhbert eval is running as PID {os.getpid()}"):
            evaluate_checkpoints(run, step=10, log=lambda m: None)
    with WriterLock(lock_path(run / "probe.jsonl"), "zhbert probe"):
        with pytest.raises(UserError, match=f"zhbert probe is running as PID {os.getpid()}"):
            probe_run(run, "sentiment", ProbeSettings(linear=True), step=10, log=lambda m: None)
    assert not (run / EVAL_RESULTS).exists() and not (run / "probe.jsonl").exists()
    with WriterLock(lock_path(run / "train"), "zhbert train"):  # a live trainer does not block eval
        assert len(evaluate_checkpoints(run, step=10, log=lambda m: None)) == 1
