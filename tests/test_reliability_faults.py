"""Faults a review found in training and status, each test failing on the code before it:
TensorBoard on a full disk, a run killed before its final checkpoint called finished, a
deletion killed midway left as a "corrupt" checkpoint, a run that lost its config.json
overwritten, a reused pid read as a running trainer, a checkpoint durable before the
records it follows."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from test_reliability_training import SMALL, _records, _train_args
from zhbert import checkpoint, trainloop
from zhbert.cli import main as cli_main
from zhbert.runstate import STOPPED, collect, run_state
from zhbert.tblog import TensorBoardLog


def test_tensorboard_failures_turn_its_events_off_with_one_warning(tmp_path, capsys):
    class Full:
        def add_scalar(self, *a):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            raise OSError(28, "No space left on device")
    tb = TensorBoardLog(tmp_path)
    tb.writer = Full()
    tb.log({"type": "train", "step": 1, "loss": 2.0})
    tb.log({"type": "train", "step": 2, "loss": 2.0})
    tb.close()
    err = capsys.readouterr().err
    assert err.count("warning: TensorBoard events") == 1 and "No space left" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tb").write_text("a file in the way")
    assert TensorBoardLog(tmp_path / "other").writer is None
    assert "TensorBoard events in" in capsys.readouterr().err


def test_a_run_with_a_file_named_tb_trains_and_says_so(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tb").write_text("x")  # a traceback (FileExistsError) at the start, exit 1
    assert cli_main(_train_args(synthetic_data, run)) == 0
    assert "TensorBoard events in" in capsys.readouterr().err
    assert [r["step"] for r in _records(run)][-1] == 8


def test_finished_needs_the_final_checkpoint(synthetic_data, tmp_path, capsys):
    """Killed after its last log and before its final save, a run read "finished" (and
    --resume retrains from the checkpoint before); a corrupt final checkpoint too."""
    run = tmp_path / "run"
    assert cli_main(_train_args(synthetic_data, run)) == 0
    assert collect(run)["state"] == "finished"
    final = run / "checkpoints" / "step_00000008"
    (final / "model.safetensors").write_bytes(b"torn")
    capsys.readouterr()
    assert cli_main(["status", str(run)]) == 0
    assert f"[{STOPPED}]" in capsys.readouterr().out
    shutil.rmtree(final)
    assert collect(run)["state"] == STOPPED


def test_a_deletion_killed_midway_leaves_no_corrupt_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for step in (1, 2, 3):
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        (d / "meta.json").write_text("{}")
    monkeypatch.setattr(checkpoint, "_verified", lambda path: None)

    def killed(path, ignore_errors=False):  # SIGKILL after the first file went
        (Path(path) / "meta.json").unlink()
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.apply_retention(run, keep_last=2, keep_every=0)
    monkeypatch.undo()
    assert [r.step for r in checkpoint.list_checkpoints(run)] == [2, 3]  # no half of step 1
    assert checkpoint.remove_partial(run) == [".step_00000001.deleting"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]


def test_a_run_that_lost_its_config_is_not_overwritten(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(_train_args(synthetic_data, run)) == 0
    (run / "config.json").unlink()
    history = (run / "history.jsonl").read_text()
    capsys.readouterr()
    assert cli_main(_train_args(synthetic_data, run)) == 2  # was 0: appended to its history
    assert "no config.json" in capsys.readouterr().err
    assert cli_main(_train_args(synthetic_data, run) + ["--resume"]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    minutes = ["train", "--data", str(synthetic_data), "--out", str(run), "--minutes", "0.1"]
    assert cli_main(minutes) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and "a step at length" not in err  # before its timing
    assert (run / "history.jsonl").read_text() == history
    assert cli_main(_train_args(synthetic_data, run) + ["--force"]) == 0
    assert (run / "history.jsonl").read_text().count('"type": "header"') == 1


def test_a_live_pid_without_the_trainers_lock_is_no_running_run(tmp_path):
    """running.json of a killed trainer whose pid another process took (here: this one)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "running.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert run_state(run, 10, 5) == STOPPED
    from zhbert.runlock import WriterLock, lock_path
    with WriterLock(lock_path(run / "train"), "zhbert train"):
        assert run_state(run, 10, 5) == "running"


def test_the_records_are_durable_before_the_checkpoint_after_them(synthetic_data, tmp_path, monkeypatch):
    """After a power loss a checkpoint must not outlive the records before it: at each save,
    every byte of the history written so far has been synced."""
    from zhbert.history import HistoryWriter
    run, synced, at_save = tmp_path / "run", {"bytes": -1}, []
    real_sync, real_save = HistoryWriter.sync, trainloop.save_checkpoint

    def sync(self):
        real_sync(self)
        synced["bytes"] = (run / "history.jsonl").stat().st_size

    def save(*a, **k):
        at_save.append((run / "history.jsonl").stat().st_size == synced["bytes"])
        return real_save(*a, **k)
    monkeypatch.setattr(HistoryWriter, "sync", sync)
    monkeypatch.setattr(trainloop, "save_checkpoint", save)
    # checkpoints at steps without an eval (an eval syncs the history anyway)
    assert cli_main(_train_args(synthetic_data, run) + ["--set", "train.checkpoint_every=2"]) == 0
    assert at_save == [True] * 4


def test_a_resume_into_data_prepared_again_with_the_same_vocabulary_is_refused(
        synthetic_data, tmp_path, capsys):
    """Only the vocabulary was compared: other text (another split seed) with the same
    characters resumed without a word, on other batches and another held-out set."""
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(synthetic_data, data)
    assert cli_main(_train_args(data, run)) == 0
    path, original = data / "manifest.json", (data / "manifest.json").read_text()
    manifest = json.loads(original)
    manifest["splits"]["validation"] = {**manifest["splits"]["validation"], "documents": 10**6}
    path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert cli_main(_train_args(data, run) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "the data:" in err and "prepared again since, with other text or splits" in err
    path.write_text(original)
    shutil.copytree(data, tmp_path / "moved")  # the same data elsewhere is the same data
    assert cli_main(_train_args(tmp_path / "moved", run) + ["--resume"]) == 0
