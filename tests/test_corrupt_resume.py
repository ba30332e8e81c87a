"""Resuming past corrupt files destroys nothing: retention neither counts a corrupt
checkpoint toward train.keep_last (which deleted the good checkpoint a resume falls back
to) nor deletes it, and the history's rewrite on resume keeps the lines it could not
parse in a copy of the file as it was."""

from __future__ import annotations

import os
import shutil

import pytest

from test_checkpoint import _trained
from test_reliability_training import _train_args
from zhbert import history
from zhbert.checkpoint import apply_retention, list_checkpoints, save_checkpoint, verify_checkpoint
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.history import HistoryWriter, read_history, rewrite_for_resume


def _corrupt(ckpt):
    os.truncate(ckpt / "model.safetensors", 100)  # as the bug report did


def _steps(run):
    return [r.step for r in list_checkpoints(run)]


# -- retention

def test_retention_keeps_keep_last_good_checkpoints_past_corrupt_ones(tmp_path):
    m, opt = _trained()
    for step in range(1, 8):
        save_checkpoint(tmp_path, step, m, opt, {})
    for step in (7, 5, 2):  # the newest, one among the kept, one retention would delete
        _corrupt(tmp_path / "checkpoints" / f"step_{step:08d}")
    seen = []
    assert apply_retention(tmp_path, keep_last=3, keep_every=0, warn=seen.append) == [1]
    assert _steps(tmp_path) == [2, 3, 4, 5, 6, 7]
    good = [s for s in _steps(tmp_path)
            if verify_checkpoint(tmp_path / "checkpoints" / f"step_{s:08d}") is None]
    assert good == [3, 4, 6]  # three good ones, as keep_last asks
    # every corrupt one is named, left in place, untouched (still the 100 truncated bytes)
    assert sorted(m.split("step_")[1][:8] for m in seen) == ["00000002", "00000005", "00000007"]
    assert all("left in place" in m and "keep_last" in m for m in seen)
    assert (tmp_path / "checkpoints" / "step_00000007" / "model.safetensors").stat().st_size == 100


def test_retention_with_keep_every_and_only_good_checkpoints_is_unchanged(tmp_path):
    m, opt = _trained()
    for step in (1, 2, 3, 4, 5, 6):
        save_checkpoint(tmp_path, step, m, opt, {})
    seen = []
    assert apply_retention(tmp_path, keep_last=2, keep_every=3, warn=seen.append) == [1, 2, 4]
    assert _steps(tmp_path) == [3, 5, 6] and seen == []


# -- the history's rewrite on resume

def test_retention_hashes_each_checkpoint_once_per_process(tmp_path, monkeypatch):
    """Retention runs at every save over the same newest checkpoints: 0.05 s of hashing
    each for a 36 MB `tiny` one. A checkpoint does not change once in place."""
    from zhbert import checkpoint as C

    m, opt = _trained()
    calls = []
    monkeypatch.setattr(C, "verify_checkpoint", lambda path: calls.append(path.name))
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, m, opt, {})
        apply_retention(tmp_path, keep_last=2, keep_every=0)
    assert sorted(calls) == [f"step_{s:08d}" for s in range(1, 6)]  # each once


def _history(path, lines):
    w = HistoryWriter(path)
    w.write({"type": "header", "schema": "zhbert-history", "version": 1})
    for s in (10, 20, 30):
        w.write({"type": "train", "step": s, "loss": 1.0 / s})
    w.close()
    data = path.read_bytes().splitlines(keepends=True)
    for n, text in lines.items():  # 1-based line number -> its corrupt content
        data[n - 1] = text
    path.write_bytes(b"".join(data))
    return path.read_bytes()


def test_the_resume_rewrite_keeps_the_unparsed_lines_in_a_copy(tmp_path):
    p = tmp_path / "history.jsonl"
    original = _history(p, {1: b'{"type": "header", "sch\n', 3: b"\x00\x00\x00\n"})
    seen = []
    assert rewrite_for_resume(p, 20, warn=seen.append)[0] == 1
    copies = list(tmp_path.glob("history.jsonl.corrupt-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == original  # byte for byte
    assert str(copies[0]) in seen[-1] and "lines 1, 3" in seen[-1]
    assert len(seen) == 1  # one warning, the one naming the copy (not the reader's as well)
    assert [r["step"] for r in read_history(p).records] == [10]  # 20 was line 3, 30 dropped
    # a second resume with a clean file makes no copy; one with bad lines never overwrites
    assert rewrite_for_resume(p, 10, warn=seen.append)[0] == 0
    assert len(list(tmp_path.glob("history.jsonl.corrupt-*"))) == 1
    p.write_bytes(original)
    rewrite_for_resume(p, 20, warn=seen.append)
    assert sorted(c.read_bytes() for c in tmp_path.glob("history.jsonl.corrupt-*")) == [original] * 2


def test_the_resume_rewrite_keeps_an_unfinished_last_line_in_a_copy(tmp_path):
    p = tmp_path / "history.jsonl"
    _history(p, {})
    with open(p, "ab") as f:
        f.write(b'{"type": "eval", "step": 30, "eval_mlm')  # torn by a crash
    original = p.read_bytes()
    seen = []
    rewrite_for_resume(p, 30, warn=seen.append)
    (copy,) = tmp_path.glob("history.jsonl.corrupt-*")
    assert copy.read_bytes() == original and "unfinished last line" in seen[-1]


def test_a_copy_that_cannot_be_written_leaves_the_history_untouched(tmp_path, monkeypatch):
    p = tmp_path / "history.jsonl"
    original = _history(p, {1: b"garbage\n"})

    def full_disk(path, data):
        raise UserError(f"could not write {path}") from OSError(28, "No space left on device")
    monkeypatch.setattr(history, "atomic_write_bytes", full_disk)
    with pytest.raises(UserError, match="No space left on device; nothing was changed"):
        rewrite_for_resume(p, 10, warn=lambda m: None)
    assert p.read_bytes() == original


# -- end to end: zhbert train --resume

STEPS = ["--threads", "1", "--set", "train.steps=16", "--set", "train.checkpoint_every=2",
         "--set", "train.keep_last=3"]


@pytest.fixture(scope="module")
def finished_run(synthetic_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("corrupt_resume") / "run"
    assert cli_main(_train_args(synthetic_data, run) + STEPS) == 0
    assert _steps(run) == [12, 14, 16]
    return run


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_resume_past_corrupt_checkpoints_keeps_the_good_ones(synthetic_data, finished_run,
                                                              tmp_path, capsys):
    """The bug report's run: the resume falls back to an older checkpoint and its saves
    must not delete that one while keeping a corrupt one (step 13 here)."""
    run = _copy(finished_run, tmp_path)
    ckpts = run / "checkpoints"
    shutil.copytree(ckpts / "step_00000012", ckpts / "step_00000013")
    for step in (13, 14, 16):
        _corrupt(ckpts / f"step_{step:08d}")
    capsys.readouterr()
    assert cli_main(_train_args(synthetic_data, run) + STEPS + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming from step 12" in err
    assert _steps(run) == [12, 13, 14, 16]  # 14 and 16 saved again; 12 kept, 13 untouched
    assert [verify_checkpoint(ckpts / f"step_{s:08d}") is None for s in (12, 13, 14, 16)] == [
        True, False, True, True]
    # 13 named once, though both saves (14, 16) found it; 16 by the save of 14, before
    # the run saved it again
    left = [line for line in err.splitlines() if "left in place" in line]
    assert [("step_00000013" in line, "step_00000016" in line) for line in left] == [
        (False, True), (True, False)]


def test_resume_keeps_a_copy_of_a_history_with_a_corrupt_header(synthetic_data, finished_run,
                                                                 tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    _corrupt(run / "checkpoints" / "step_00000016")
    path = run / "history.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0][:50] + b"\n" + b"".join(lines[1:]))  # the header, torn
    original = path.read_bytes()
    capsys.readouterr()
    assert cli_main(_train_args(synthetic_data, run) + STEPS + ["--resume"]) == 0
    err = capsys.readouterr().err
    (copy,) = run.glob("history.jsonl.corrupt-*")
    assert copy.read_bytes() == original and str(copy) in err and "line 1" in err
    records = read_history(path).records  # the rewritten history: no corrupt line left
    assert [r.get("resumed_from") for r in records if r["type"] == "header"] == [14]
    assert max(r["step"] for r in records if r["type"] == "train") == 16
