"""staged_dir against other processes: a concurrent writer's output is never replaced
(two `prepare`s into one --out once both said "wrote" and the later silently deleted the
earlier's), and the staging directory a SIGKILLed run left is removed by the next run,
never one a live run is writing."""

import os
import subprocess
import sys
import time

import pytest

from zhbert import fileio
from zhbert.errors import UserError
from zhbert.fileio import staged_dir

# A writer in another process: it enters staged_dir, says where it builds, and waits.
CHILD = """
import sys
from zhbert.fileio import staged_dir
with staged_dir(sys.argv[1]) as d:
    (d / "index.bin").write_bytes(b"x" * 1000)
    print(d, flush=True)
    sys.stdin.readline()
"""


def _write(final, text, force=False):
    with staged_dir(final, force=force) as d:
        (d / "f").write_text(text)


def _hidden(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _child(final):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(final)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    staging = p.stdout.readline().strip()
    assert staging, "the child writer did not start"
    return p, staging


def test_output_written_meanwhile_is_kept_and_this_run_refused(tmp_path):
    final = tmp_path / "data"
    with pytest.raises(UserError) as err:
        with staged_dir(final) as d:
            (d / "f").write_text("mine")
            _write(final, "theirs")  # the other prepare finishes first
    msg = str(err.value)
    assert str(final) in msg and "another process" in msg and "--force" in msg and "\n" not in msg
    assert (final / "f").read_text() == "theirs"
    assert _hidden(tmp_path) == []  # this run's staging directory is gone


@pytest.mark.parametrize("existed", [False, True])
def test_force_does_not_clobber_a_concurrent_writers_output(tmp_path, existed):
    final = tmp_path / "data"
    if existed:
        _write(final, "old")
    with pytest.raises(UserError, match="another process.*run this again to replace it"):
        with staged_dir(final, force=True) as d:
            (d / "f").write_text("mine")
            _write(final, "theirs", force=True)
    assert (final / "f").read_text() == "theirs"
    assert _hidden(tmp_path) == []


def test_force_replaces_an_unchanged_output(tmp_path):
    """compare, report and sweep report always pass force=True for their own folder."""
    final = tmp_path / "data"
    _write(final, "old")
    _write(final, "new", force=True)
    assert (final / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_killed_runs_staging_is_removed_by_the_next_run(tmp_path, capsys):
    final = tmp_path / "data"
    p, staging = _child(final)
    p.kill()  # SIGKILL: no cleanup of its own
    p.wait()
    assert os.path.isdir(staging)
    _write(final, "new")
    assert not os.path.exists(staging)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    err = capsys.readouterr().err.strip()
    assert err.startswith("zhbert: removed 1 unfinished directory") and os.path.basename(staging) in err
    assert "\n" not in err


def test_live_runs_staging_is_left_alone(tmp_path, capsys):
    final = tmp_path / "data"
    p, staging = _child(final)
    try:
        _write(final, "x")  # while the other run is still writing
        assert os.path.isfile(os.path.join(staging, "index.bin"))
        assert "removed" not in capsys.readouterr().err
    finally:
        p.communicate("\n")  # let it finish: it finds our output and refuses, keeping it
    assert p.returncode == 1 and (final / "f").read_text() == "x"
    assert not os.path.exists(staging)


def test_staging_taken_between_creation_and_lock_is_made_again(tmp_path, monkeypatch):
    """Another run may find a new staging directory before its creator locks it and remove
    it as a killed run's: the creator then makes another."""
    final = tmp_path / "data"
    real, calls = fileio.tempfile.mkdtemp, []

    def mkdtemp(*a, **k):
        made = real(*a, **k)
        calls.append(made)
        if len(calls) == 1:
            fileio._remove_stale(final)  # the other run, in the window
        return made

    monkeypatch.setattr(fileio.tempfile, "mkdtemp", mkdtemp)
    _write(final, "ok")
    assert len(calls) == 2 and (final / "f").read_text() == "ok"


def test_older_zhberts_staging_is_removed_only_when_untouched_for_a_day(tmp_path, capsys):
    final = tmp_path / "data"
    legacy = tmp_path / ".data.ab12cd34.partial"
    (legacy / "sub").mkdir(parents=True)
    (legacy / "sub" / "index.bin").write_bytes(b"x")
    other = tmp_path / ".data2.ab12cd34.partial"  # another output's: never touched
    other.mkdir()
    _write(final, "1")
    assert legacy.is_dir() and "note: .data.ab12cd34.partial" in capsys.readouterr().err
    old = time.time() - 2 * 86400
    for p in (legacy / "sub" / "index.bin", legacy / "sub", legacy, other):
        os.utime(p, (old, old))
    _write(final, "2", force=True)
    assert not legacy.exists() and other.is_dir()
    assert ".data.ab12cd34.partial" in capsys.readouterr().err


def test_staged_dir_inside_a_staging_directory_does_not_wait_for_itself(tmp_path):
    with staged_dir(tmp_path / "outer") as d:
        _write(d / "inner", "x")  # its swap locks its folder: our own locked staging directory
    assert (tmp_path / "outer" / "inner" / "f").read_text() == "x"


# A --force writer killed right after moving the old output aside, before its new one is in.
KILLED_MID_SWAP = """
import os, signal, sys
from zhbert.fileio import staged_dir
real = os.replace
def replace(a, b):
    real(a, b)
    if str(a) == sys.argv[1]:  # the old output just moved aside
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
with staged_dir(sys.argv[1], force=True) as d:
    (d / "f").write_text("new")
"""


def test_a_kill_between_the_renames_loses_no_output(tmp_path, capsys):
    """The next run deleted the aside (the old output's only copy) as a killed run's leftover."""
    final = tmp_path / "data"
    _write(final, "precious")
    p = subprocess.run([sys.executable, "-c", KILLED_MID_SWAP, str(final)])
    assert p.returncode == -9 and not final.exists()
    with pytest.raises(UserError, match="already exists"):  # the old output is back in place
        _write(final, "other")
    assert (final / "f").read_text() == "precious"
    assert f"restored {final}" in capsys.readouterr().err


def test_an_interrupt_between_the_renames_puts_the_old_output_back(tmp_path, monkeypatch):
    final = tmp_path / "data"
    _write(final, "precious")
    real, hits = os.replace, []

    def replace(a, b):
        if str(b) == str(final) and not hits:  # the new output's rename: interrupted
            hits.append(a)
            raise KeyboardInterrupt
        real(a, b)
    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        _write(final, "new", force=True)
    monkeypatch.undo()
    assert (final / "f").read_text() == "precious" and _hidden(tmp_path) == []
