"""Checkpoint and history faults a fault-injection tester found, simulated with monkeypatch
(no root, mounts or chattr):

1. a save that cannot make its temporary folder (no inodes: ENOSPC; an immutable
   checkpoints folder: EPERM) was a traceback; retention that cannot delete an old
   checkpoint too; ENOSPC with bytes free blamed the bytes, not the inodes;
2. a corrupt checkpoint retention said was "left in place" was replaced by a new save of
   its step, and the history records a resume drops were lost without a copy;
3. a resume that cannot write its files was told to "choose another location" (EPERM)
   or to free disk space (EFBIG).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from test_checkpoint import _trained
from test_reliability_training import _train_args
from zhbert import checkpoint, history
from zhbert.checkpoint import apply_retention, list_checkpoints, save_checkpoint, verify_checkpoint
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.history import HistoryWriter, read_history, rewrite_for_resume


def _error(code: int, filename: str | None = None) -> OSError:
    if filename is None:
        return OSError(code, os.strerror(code))
    return OSError(code, os.strerror(code), filename)


def _refuse_mkdtemp(monkeypatch, code: int) -> None:
    """mkdtemp fails as on a file system out of inodes (ENOSPC) or an immutable folder (EPERM)."""
    def mkdtemp(*args, dir=None, **kwargs):
        raise _error(code, os.path.join(dir or "", ".step.partial"))
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


# -- 1. a save that cannot make its temporary folder; retention that cannot delete

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EPERM, errno.EACCES])
def test_a_save_that_cannot_make_its_temporary_folder_is_one_line(tmp_path, monkeypatch, code):
    m, opt = _trained()
    save_checkpoint(tmp_path, 10, m, opt, {})
    _refuse_mkdtemp(monkeypatch, code)
    with pytest.raises(UserError) as caught:
        save_checkpoint(tmp_path, 20, m, opt, {})
    message = str(caught.value)
    root = tmp_path / "checkpoints"
    assert "\n" not in message and f"could not write checkpoint {root / 'step_00000020'}" in message
    assert "previous checkpoints are intact" in message and "--resume" in message
    assert "choose another location" not in message
    if code != errno.ENOSPC:
        assert f"make {root} writable (chmod/chattr) and continue with --resume" in message
        assert "free disk space" not in message.lower()
    assert [r.step for r in list_checkpoints(tmp_path)] == [10]


def test_no_space_with_bytes_free_says_the_inodes_ran_out(tmp_path, monkeypatch):
    """It said "No space left on device (it needs about 6.1 MB, 100.0 MB free)"."""
    m, opt = _trained()
    _refuse_mkdtemp(monkeypatch, errno.ENOSPC)  # this disk has far more than 0.1 MB free
    with pytest.raises(UserError, match=r"out of inodes \(files\).*`df -i "):
        save_checkpoint(tmp_path, 10, m, opt, {})


def test_no_space_at_the_rename_with_bytes_free_names_the_inodes(tmp_path, monkeypatch):
    """The same inside the save's old try (a failed rename), where a message came."""
    m, opt = _trained()

    def replace(*args, **kwargs):
        raise _error(errno.ENOSPC)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(UserError) as caught:
        save_checkpoint(tmp_path, 10, m, opt, {})
    assert "No space left on device (it needs about" in str(caught.value)
    assert "out of inodes" in str(caught.value) and "df -i" in str(caught.value)


def test_a_history_out_of_inodes_says_so(tmp_path, monkeypatch):
    """A tmpfs of nr_inodes=14: the history cannot be created, with bytes to spare."""
    import types

    from zhbert import write_errors
    full = types.SimpleNamespace(f_files=14, f_favail=0, f_bavail=25_000, f_frsize=4096)
    monkeypatch.setattr(write_errors.os, "statvfs", lambda path: full)

    def no_inode(path, *args, **kwargs):
        raise _error(errno.ENOSPC, str(path))
    monkeypatch.setattr(history, "open", no_inode, raising=False)
    with pytest.raises(UserError) as caught:
        HistoryWriter(tmp_path / "history.jsonl")
    message = str(caught.value)
    assert "No space left on device (out of inodes (files), not bytes: 102,400,000 bytes free; " \
           f"`df -i {tmp_path}` shows them)" in message
    assert "delete files" in message and "continue with --resume" in message


def test_retention_that_cannot_delete_an_old_checkpoint_warns_and_goes_on(tmp_path, monkeypatch):
    """chattr +i RUN/checkpoints/step_00000010, then a resume's retention: PermissionError."""
    m, opt = _trained()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, m, opt, {})
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src).name == "step_00000010":
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(src))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(checkpoint.os, "replace", replace)
    seen = []
    assert apply_retention(tmp_path, keep_last=1, keep_every=0, warn=seen.append) == [20]
    assert [r.step for r in list_checkpoints(tmp_path)] == [10, 30]
    (line,) = seen
    old = tmp_path / "checkpoints" / "step_00000010"
    assert f"could not delete the old checkpoint {old}" in line
    assert "Operation not permitted" in line and "training goes on" in line and "\n" not in line


def test_train_whose_save_cannot_make_its_folder_exits_2_with_one_line(synthetic_data, tmp_path,
                                                                       monkeypatch, capsys):
    run = tmp_path / "run"
    real = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "checkpoints":
            raise _error(errno.EPERM, os.path.join(dir, ".step.partial"))
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    assert cli_main(_train_args(synthetic_data, run) + ["--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert f"make {run / 'checkpoints'} writable (chmod/chattr) and continue with --resume" in line


# -- 2. corrupt checkpoints are never replaced; dropped history records are kept

def _corrupt(ckpt: Path) -> None:
    os.truncate(ckpt / "model.safetensors", 1000)


def test_a_save_moves_a_corrupt_checkpoint_of_its_step_aside(tmp_path, capsys):
    m, opt = _trained()
    final = save_checkpoint(tmp_path, 10, m, opt, {})
    _corrupt(final)
    capsys.readouterr()
    save_checkpoint(tmp_path, 10, m, opt, {})
    assert verify_checkpoint(final) is None  # the new one
    (aside,) = (tmp_path / "checkpoints").glob("step_00000010.corrupt-*")
    assert (aside / "model.safetensors").stat().st_size == 1000  # untouched
    assert [r.step for r in list_checkpoints(tmp_path)] == [10]  # no reader lists it
    err = capsys.readouterr().err
    assert f"moved the corrupt checkpoint {final}" in err and aside.name in err
    save_checkpoint(tmp_path, 10, m, opt, {})  # a good one of the same step: replaced
    assert len(list((tmp_path / "checkpoints").glob("step_00000010.corrupt-*"))) == 1


def _history(path: Path) -> bytes:
    w = HistoryWriter(path)
    w.write({"type": "header", "schema": "zhbert-history", "version": 1})
    for s in (10, 20, 30, 35):
        w.write({"type": "train", "step": s, "loss": 1.0 / s})
    w.close()
    return path.read_bytes()


@pytest.mark.parametrize("step", [0, 20])
def test_the_records_a_resume_drops_are_kept_in_a_copy(tmp_path, step):
    path = tmp_path / "history.jsonl"
    original = _history(path)
    assert rewrite_for_resume(path, step, warn=lambda m: None)[0] == (4 if step == 0 else 2)
    (copy,) = tmp_path.glob("history.jsonl.dropped-*")
    assert copy.read_bytes() == original
    assert rewrite_for_resume(path, step)[0] == 0  # nothing dropped: no copy
    assert len(list(tmp_path.glob("history.jsonl.*"))) == 1


STEPS = ["--threads", "1", "--set", "train.steps=12", "--set", "train.checkpoint_every=4",
         "--set", "train.keep_last=2"]


def test_a_resume_past_only_corrupt_checkpoints_keeps_them_and_the_history(synthetic_data,
                                                                           tmp_path, capsys):
    """The report's run: every checkpoint corrupt, --resume starts over at step 0, and its
    saves of steps 4, 8, 12 replaced the corrupt ones (retention then deleted them) and the
    dropped history records were gone."""
    run = tmp_path / "run"
    assert cli_main(_train_args(synthetic_data, run) + STEPS) == 0
    ckpts = run / "checkpoints"
    assert [r.step for r in list_checkpoints(run)] == [8, 12]
    for ref in list_checkpoints(run):
        _corrupt(ref.path)
    original = (run / "history.jsonl").read_bytes()
    capsys.readouterr()
    assert cli_main(_train_args(synthetic_data, run) + STEPS + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "starting at step 0" in err
    (copy,) = run.glob("history.jsonl.dropped-*")
    assert copy.read_bytes() == original and str(copy) in err
    asides = sorted(p.name.split(".")[0] for p in ckpts.glob("step_*.corrupt-*"))
    assert asides == ["step_00000008", "step_00000012"]
    for aside in ckpts.glob("step_*.corrupt-*"):
        assert (aside / "model.safetensors").stat().st_size == 1000
    assert [r.step for r in list_checkpoints(run)] == [8, 12]
    assert all(verify_checkpoint(r.path) is None for r in list_checkpoints(run))
    assert max(r["step"] for r in read_history(run / "history.jsonl").records
               if r["type"] == "train") == 12


# -- 3. the fix fits the errno, and a resume is never told to go elsewhere

def test_a_history_that_cannot_be_opened_says_make_the_run_writable(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    monkeypatch.setattr(history, "open", refuse, raising=False)
    with pytest.raises(UserError) as caught:
        HistoryWriter(tmp_path / "history.jsonl")
    message = str(caught.value)
    assert f"make {tmp_path} writable (chmod/chattr) and continue with --resume" in message
    assert "Permission denied" in message and "choose another" not in message


@pytest.mark.parametrize("step", [35, 20])  # the rewrite alone; the copy of dropped records first
@pytest.mark.parametrize("code", [errno.EPERM, errno.EACCES])
def test_a_resume_that_cannot_rewrite_the_history_says_make_the_run_writable(
        tmp_path, monkeypatch, code, step):
    """It said "cannot write RUN/history.jsonl: Operation not permitted ...; choose
    another location": a resume cannot go elsewhere."""
    path = tmp_path / "history.jsonl"
    original = _history(path)
    from zhbert import fileio

    def replace(src, dst, *args, **kwargs):
        raise PermissionError(code, os.strerror(code), str(src))
    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(UserError) as caught:
        rewrite_for_resume(path, step, warn=lambda m: None)
    message = str(caught.value)
    assert f"make {tmp_path} writable (chmod/chattr) and continue with --resume" in message
    assert "choose another" not in message and "free disk space" not in message.lower()
    assert "\n" not in message and path.read_bytes() == original


def test_a_history_at_the_file_size_limit_names_the_limit(tmp_path):
    """ulimit -f: EFBIG; it said "Free disk space, then continue with --resume"."""
    path = tmp_path / "history.jsonl"
    w = HistoryWriter(path)
    w.write({"type": "train", "step": 1})

    class AtLimit:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise _error(errno.EFBIG)

        def __getattr__(self, name):
            return getattr(self._f, name)
    w._f = AtLimit(w._f)
    with pytest.raises(UserError) as caught:
        w.write({"type": "train", "step": 2})
    w.close()
    message = str(caught.value)
    assert "size limit (ulimit -f)" in message and "--resume" in message
    assert "free disk space" not in message.lower() and "choose another" not in message


def test_a_checkpoint_at_the_file_size_limit_names_the_limit(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def too_big(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")
    monkeypatch.setattr(checkpoint, "save_model", too_big)
    m, opt = _trained()
    with pytest.raises(UserError) as caught:
        save_checkpoint(tmp_path, 10, m, opt, {})
    message = str(caught.value)
    assert "size limit (ulimit -f)" in message and "--resume" in message
    assert "free disk space" not in message.lower()
    assert not list((tmp_path / "checkpoints").iterdir())
    shutil.rmtree(tmp_path / "checkpoints")


def test_a_run_folder_whose_lock_cannot_be_made_says_make_it_writable(tmp_path, monkeypatch):
    """`.train.lock` in a read-only run folder said "choose a writable location", even on a
    --resume, which cannot go elsewhere; a new folder still may."""
    import errno as errno_
    import os as os_
    import pytest as pytest_
    from zhbert.errors import UserError
    from zhbert.runlock import WriterLock
    real = os_.open

    def refused(path, *a, **k):
        if str(path).endswith(".train.lock"):
            raise PermissionError(errno_.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(os_, "open", refused)
    run = tmp_path / "run"
    run.mkdir()
    with pytest_.raises(UserError, match=r"make .*run writable \(chmod/chattr\) and continue with --resume"):
        WriterLock(run / ".train.lock", "zhbert train").acquire()
    with pytest_.raises(UserError, match=r"choose a folder you can write to"):
        WriterLock(tmp_path / "new" / ".train.lock", "zhbert train").acquire()
