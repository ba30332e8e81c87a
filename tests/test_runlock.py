"""The writer lock: a second writer is refused naming the live PID; a dead holder's
lock never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

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
