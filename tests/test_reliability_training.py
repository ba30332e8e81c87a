"""Paths of training pinned by tests: gradient accumulation equals one big batch, the
schedule and clipping included; one trainer per run directory; a save killed midway
and an attempt killed before its first checkpoint leave nothing behind on --resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from test_golden import B, _batch, halves, run_steps, trainer
from zhbert import trainloop
from zhbert.cli import main as cli_main
from zhbert.history import iter_records
from zhbert.runlock import WriterLock, is_locked, lock_path


def test_grad_accum_2x4_equals_1x8():
    """Six steps, warm-up then cosine, clipping engaged, rows with fewer masked tokens:
    the same losses, gradient norms and weights (fp32 rounding apart). Dropout is off:
    its draws depend on how the batch is split."""
    one = trainer(1, [_batch(s) for s in range(6)], dropout=0.0)
    two = trainer(2, [half for s in range(6) for half in halves(s)], dropout=0.0)
    assert two.cfg.train.batch_size * two.cfg.train.grad_accum == one.cfg.train.batch_size == B
    loss1, norm1 = run_steps(one, range(1, 7))
    loss2, norm2 = run_steps(two, range(1, 7))
    assert min(norm1) > one.cfg.train.clip_norm  # clipping is part of what is compared
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert norm2 == pytest.approx(norm1, rel=1e-4)
    for (name, p1), p2 in zip(one.raw_model.named_parameters(), two.raw_model.parameters()):
        assert torch.allclose(p1, p2, rtol=1e-4, atol=1e-6), name
    assert [g["lr"] for g in one.optimizer.param_groups] == [g["lr"] for g in two.optimizer.param_groups]


# -- the run directory: one trainer, unfinished saves, an attempt killed before its
# -- first checkpoint

SMALL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
         "model.intermediate_size=128", "data.max_len=64", "data.eval_sequences=64",
         "train.batch_size=8", "train.lr=2e-3", "train.warmup_steps=2", "train.precision=fp32",
         "data.warmup_len=0", "train.steps=8", "train.log_every=2", "train.eval_every=4",
         "train.checkpoint_every=4"]


def _train_args(data, run):
    return ["train", "--data", str(data), "--out", str(run), "--no-progress",
            *sum((["--set", s] for s in SMALL), [])]


def _records(run):
    return [{k: v for k, v in r.items() if k not in ("elapsed", "tokens_per_s", "data_wait")}
            for r in iter_records(run / "history.jsonl") if r["type"] in ("train", "eval")]


def test_second_trainer_exits_2_naming_the_live_pid(synthetic_data, tmp_path, capsys):
    run = tmp_path / "run"
    with WriterLock(lock_path(run / "train"), "zhbert train"):  # a live trainer: this process
        for extra in ([], ["--resume"], ["--force"]):
            assert cli_main(_train_args(synthetic_data, run) + extra) == 2
            err = capsys.readouterr().err
            assert f"zhbert train is running as PID {os.getpid()}" in err and err.count("\n") == 1
        assert not (run / "history.jsonl").exists()  # nothing written, nothing cleared
    (run / ".train.lock").write_text('{"pid": 999999999}')  # a dead holder's file: no flock
    assert cli_main(_train_args(synthetic_data, run)) == 0
    assert not is_locked(run / ".train.lock")  # released when train returned


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the trainer (but its finally blocks)."""


def test_killed_before_the_first_checkpoint_inside_a_save(synthetic_data, tmp_path, monkeypatch, capsys):
    """The first save dies with its .partial directory half written: --resume removes it,
    starts from step 0 without keeping the dead attempt's records, and ends with the
    history of a run that never stopped."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert cli_main(_train_args(synthetic_data, ref)) == 0

    def dies_mid_save(run_dir, step, *args, **kwargs):
        partial = Path(run_dir) / "checkpoints" / f".step_{step:08d}.abc.partial"
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"half")
        raise _Killed()
    with monkeypatch.context() as mp:
        mp.setattr(trainloop, "save_checkpoint", dies_mid_save)
        with pytest.raises(_Killed):
            cli_main(_train_args(synthetic_data, run))
    assert [r["step"] for r in _records(run)] == [2, 4, 4]  # train 2, 4 and eval 4 written
    capsys.readouterr()
    assert cli_main(_train_args(synthetic_data, run) + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "removed 1 unfinished checkpoint directories left by an interrupted save or deletion: " \
           ".step_00000004.abc.partial" in err
    assert "starting at step 0 (3 history records dropped)" in err
    assert not list((run / "checkpoints").glob(".*partial"))
    assert _records(run) == _records(ref)
