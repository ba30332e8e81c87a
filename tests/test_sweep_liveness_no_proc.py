"""A sweep's registered processes where there is no /proc (macOS): a local entry whose pid
was reused by another process counted as alive (its start time was never compared), and
--force told how to remove a stale entry only for other hosts' (each test fails on the code
before it)."""

import json
import os
import socket
import subprocess

import pytest

from zhbert.errors import UserError
from zhbert.sweep import liveness


@pytest.fixture
def no_proc(monkeypatch):
    """/proc's reader finds nothing, as on macOS."""
    monkeypatch.setattr(liveness, "_start_ticks", lambda pid: None)


def _entry(sweep_dir, name: str, **fields):
    path = sweep_dir / liveness.WORKERS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"what": "zhbert sweep --worker", "started": "2026-01-01T00:00:00+00:00",
                                "host": socket.gethostname(), "pid": os.getpid(), **fields}))
    return path


def test_without_proc_a_reused_pid_is_told_from_the_worker_by_its_start_time(tmp_path, no_proc):
    # an entry left by a worker killed -9, its pid since taken by this process
    _entry(tmp_path, "reused.json", start_ps="Thu Jan  1 00:00:00 1970")
    assert liveness.live_workers(tmp_path) == []
    with liveness.registered(tmp_path, "zhbert sweep") as path:
        # `ps -o lstart=` (procps, macOS, the BSDs), in the C locale
        ps = subprocess.run(["ps", "-o", "lstart=", "-p", str(os.getpid())], capture_output=True,
                            text=True, env={**os.environ, "LC_ALL": "C"}, check=True)
        assert json.loads(path.read_text())["start_ps"] == " ".join(ps.stdout.split())
        assert [p for p, _ in liveness.live_workers(tmp_path)] == [path]


def test_an_entry_that_cannot_be_verified_is_kept_and_force_says_how_to_remove_it(
        tmp_path, no_proc, monkeypatch):
    monkeypatch.setattr(liveness, "_ps_start", lambda pid: None, raising=False)  # no `ps` either
    stale = _entry(tmp_path, "old.json")  # a live pid: this process's, or one reusing it
    assert [p for p, _ in liveness.live_workers(tmp_path)] == [stale]
    with pytest.raises(UserError) as refused:
        liveness.start_over_if_idle(tmp_path, "", "sweep", 120.0)
    msg = str(refused.value)
    assert "has a live worker" in msg and f"remove {stale}" in msg and "\n" not in msg
    assert "cannot tell whether pid" in msg


def test_a_live_verified_local_worker_gets_no_removal_hint(tmp_path, no_proc):
    with liveness.registered(tmp_path, "zhbert sweep --worker") as path:
        with pytest.raises(UserError) as refused:
            liveness.start_over_if_idle(tmp_path, "", "sweep", 120.0)
    assert "has a live worker" in str(refused.value) and "remove" not in str(refused.value)
    assert not path.exists()
