"""The training step's GPU-facing behaviour, checked on the CPU: fp16 loss-scaler skips
(GradScaler("cpu")) do not stop a run, every tensor the step makes is put on the model's
device, a stop checkpoint says whether it beat torchrun's SIGKILL."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import zhbert.precision as P
import zhbert.train as T
from zhbert import trainparts
import zhbert.trainloop as TL
from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert.history import iter_records

SMALL = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
         "model.intermediate_size=64", "data.max_len=32", "data.eval_sequences=16",
         "train.batch_size=4", "train.warmup_steps=1", "train.precision=fp32",
         "train.log_every=2", "train.eval_every=100", "train.checkpoint_every=100"]


def _cfg(*extra):
    return load_config("tiny", SMALL + ["data.warmup_len=0", *extra])


def _events(run, kind):
    return [r for r in iter_records(run / "history.jsonl") if r["type"] == "event" and r["kind"] == kind]


def test_loss_scaler_overflows_are_skips_not_divergence(synthetic_data, tmp_path, monkeypatch):
    """fp16's GradScaler skips steps while it searches its scale down from 2^16. Forced
    here on the CPU (GradScaler("cpu"), inf gradients for 5 steps in a row, more than
    train.max_nonfinite = 3): the run goes on, and records each skip. Before, the skips
    counted as non-finite steps and the run stopped with 'training diverged'."""
    monkeypatch.setattr(P, "needs_grad_scaler", lambda precision, device: True)
    real_unscale, calls = torch.amp.GradScaler.unscale_, {"n": 0}

    def overflowing_unscale(self, optimizer):
        calls["n"] += 1
        if calls["n"] <= 5:  # an fp16 overflow: inf in a gradient before unscaling
            next(p for g in optimizer.param_groups for p in g["params"] if p.grad is not None).grad[0] = float("inf")
        return real_unscale(self, optimizer)

    monkeypatch.setattr(torch.amp.GradScaler, "unscale_", overflowing_unscale)
    run = tmp_path / "run"
    T.main(_cfg("train.steps=8", "train.max_nonfinite=3"), synthetic_data, run, progress=False)
    skips = _events(run, "scaler_skip")
    assert [e["step"] for e in skips] == [1, 2, 3, 4, 5] and not _events(run, "nonfinite_loss")
    assert "loss scale now 2048" in skips[-1]["message"]  # halved five times from 65536
    assert [r["step"] for r in iter_records(run / "history.jsonl") if r["type"] == "train"] == [6, 8]


def test_a_non_finite_loss_under_the_scaler_still_counts(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "needs_grad_scaler", lambda precision, device: True)
    real_stats = TL._step_stats
    monkeypatch.setattr(TL, "_step_stats", lambda out: real_stats(out) * float("nan"))
    with pytest.raises(UserError, match="training diverged: 3 non-finite steps"):
        T.main(_cfg("train.steps=8", "train.max_nonfinite=3"), synthetic_data, tmp_path / "run",
               progress=False)


FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.tensor, torch.arange,
             torch.rand, torch.randn, torch.randint, torch.eye, torch.linspace, torch.as_tensor,
             torch.scalar_tensor}


class DeviceLess(TorchFunctionMode):
    """Records every tensor factory called without a device: on a GPU it would make a
    CPU tensor (a copy, or an error, next to the CUDA ones)."""

    def __init__(self):
        super().__init__()
        self.missing = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            self.missing.append(func.__name__)
        return func(*args, **kwargs)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_tensor_the_step_makes_is_put_on_the_models_device(synthetic_data, tmp_path,
                                                                  monkeypatch, precision):
    mode, real_step = DeviceLess(), TL.train_step
    with mode:
        torch.zeros(1)
    assert mode.missing == ["zeros"]  # the check sees factories
    mode.missing.clear()

    def watched(tr, step):
        with mode:
            return real_step(tr, step)

    monkeypatch.setattr(TL, "train_step", watched)
    T.main(_cfg("train.steps=3", f"train.precision={precision}", "train.grad_accum=2"),
           synthetic_data, tmp_path / "run", progress=False)
    assert mode.missing == []


def test_stop_checkpoint_says_how_long_after_the_signal(synthetic_data, tmp_path, monkeypatch):
    """SIGTERM: the stop checkpoint's event says how long after the signal it was saved,
    against torchrun's 30 s before SIGKILL, and warns when it did not fit."""
    import signal
    real_step = TL.train_step

    def signalled(tr, step):
        if step == 2:
            signal.raise_signal(signal.SIGTERM)
        return real_step(tr, step)

    monkeypatch.setattr(TL, "train_step", signalled)
    monkeypatch.setattr(TL, "TORCHRUN_GRACE_S", 0)  # every stop "too slow": the warning path
    run = tmp_path / "run"
    T.main(_cfg("train.steps=50"), synthetic_data, run, progress=False)
    stop = _events(run, "stop")
    assert [e["step"] for e in stop] == [2]
    assert "s after the signal (torchrun allows 0 s): too slow" in stop[0]["message"]


def test_the_process_group_is_left_at_exit_even_after_an_error(synthetic_data, tmp_path, monkeypatch):
    """destroy_process_group (distributed.shutdown) runs when training ends, and when it
    fails: NCCL may hang at interpreter exit with a group still open."""
    left = []
    monkeypatch.setattr(T, "shutdown", lambda dist: left.append(dist))
    T.main(_cfg("train.steps=1"), synthetic_data, tmp_path / "ok", progress=False)
    (tmp_path / "data_as_out").mkdir()
    (tmp_path / "data_as_out" / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="is a data directory"):
        T.main(_cfg("train.steps=1"), synthetic_data, tmp_path / "data_as_out", progress=False)
    assert left == [T.Dist(), T.Dist()]


def test_on_cuda_the_loader_uses_workers_pinned_memory_and_the_node_cache(synthetic_data, monkeypatch):
    """build_loader for a CUDA device (nothing touches CUDA until the first batch):
    data.num_workers -1 means workers and pinned batches there, in-process on the CPU."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    gpu = trainparts.build_loader(_cfg(), synthetic_data, T.Dist(rank=3, world=8, local_rank=3), "cuda")
    assert gpu.num_workers == 1 and gpu.pin_memory and gpu._spec[6] is not None
    cpu = trainparts.build_loader(_cfg(), synthetic_data, T.Dist(), "cpu")
    assert cpu.num_workers == 0 and not cpu.pin_memory and cpu._spec[6] is None
    explicit = trainparts.build_loader(_cfg("data.num_workers=0"), synthetic_data, T.Dist(), "cuda")
    assert explicit.num_workers == 0 and explicit.pin_memory
