"""A full disk and a killed save: ENOSPC injected at each write site of a checkpoint
and of the history stops with one line naming the path and the space needed, leaves
the previous checkpoints and every earlier history line intact, and a resumed run
then writes the history of a run that never stopped. Unfinished ``.partial`` save
directories are removed at the next start."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from zhbert import checkpoint
from zhbert.checkpoint import (latest_valid_checkpoint, list_checkpoints, remove_partial,
                               save_checkpoint)
from zhbert.errors import UserError
from zhbert.history import HistoryWriter, iter_records

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    return model, opt


def _fail_safetensors(monkeypatch, name):
    def full(*args, **kwargs):  # what safetensors really raises on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(checkpoint, name, full)


def _fail_write_text(monkeypatch, filename):
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == filename:
            raise ENOSPC
        return real(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)


def _fail_os(monkeypatch, name):
    def full(*args, **kwargs):
        raise ENOSPC
    monkeypatch.setattr(checkpoint.os, name, full)


SITES = {
    "model.safetensors": lambda mp: _fail_safetensors(mp, "save_model"),
    "optimizer.safetensors": lambda mp: _fail_safetensors(mp, "save_file"),
    "state.json": lambda mp: _fail_write_text(mp, "state.json"),
    "meta.json": lambda mp: _fail_write_text(mp, "meta.json"),
    "fsync": lambda mp: _fail_os(mp, "fsync"),
    "rename": lambda mp: _fail_os(mp, "replace"),
}


@pytest.mark.parametrize("site", SITES)
def test_checkpoint_enospc_at_each_write_site(tmp_path, monkeypatch, site):
    model, opt = _model()
    save_checkpoint(tmp_path, 10, model, opt, {"progress": 10})
    with monkeypatch.context() as mp:
        SITES[site](mp)
        with pytest.raises(UserError) as caught:
            save_checkpoint(tmp_path, 20, model, opt, {"progress": 20})
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "checkpoints" / "step_00000020") in message
    assert "No space left on device (it needs about 0.1 MB," in message  # 4,420 params x 3 x 4 bytes
    assert [r.step for r in list_checkpoints(tmp_path)] == [10]
    assert latest_valid_checkpoint(tmp_path).step == 10
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no unfinished directory left
    save_checkpoint(tmp_path, 20, model, opt, {"progress": 20})  # space freed: it works
    assert latest_valid_checkpoint(tmp_path).step == 20


def test_other_safetensors_errors_pass_through(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise SafetensorError("tensors share memory")
    monkeypatch.setattr(checkpoint, "save_model", broken)
    model, opt = _model()
    with pytest.raises(SafetensorError, match="share memory"):
        save_checkpoint(tmp_path, 1, model, opt, {})


def test_partial_directories_of_a_killed_save_are_removed(tmp_path):
    model, opt = _model()
    save_checkpoint(tmp_path, 10, model, opt, {})
    root = tmp_path / "checkpoints"
    for name in (".step_00000020.abc123.partial", ".step_00000030.x.partial"):
        (root / name).mkdir()
        (root / name / "model.safetensors").write_bytes(b"half")
    assert remove_partial(tmp_path) == [".step_00000020.abc123.partial", ".step_00000030.x.partial"]
    assert sorted(p.name for p in root.iterdir()) == ["step_00000010"]
    assert remove_partial(tmp_path) == [] and remove_partial(tmp_path / "nowhere") == []


class _FullAfter:
    """A history file whose disk fills up at the n-th write, after half the record landed."""

    def __init__(self, f, n):
        self._f, self._n = f, n

    def write(self, data):
        self._n -= 1
        if self._n == 0:
            self._f.write(bytes(data[: len(data) // 2]))
            raise ENOSPC
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_history_enospc_keeps_whole_lines(tmp_path):
    path = tmp_path / "history.jsonl"
    w = HistoryWriter(path)
    w._f = _FullAfter(w._f, 3)
    w.write({"type": "train", "step": 1})
    w.write({"type": "train", "step": 2})
    with pytest.raises(UserError) as caught:
        w.write({"type": "train", "step": 3, "loss": 1.5})
    w.close()  # no second error from closing after the failure
    message = str(caught.value)
    assert f"could not append to {path}: No space left on device (42 more bytes needed," in message
    assert "--resume" in message and "\n" not in message
    assert path.read_bytes().endswith(b"}\n")  # the half record was taken back
    assert [r["step"] for r in iter_records(path)] == [1, 2]
    w = HistoryWriter(path)  # space freed: appending goes on
    w.write({"type": "train", "step": 3})
    w.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
