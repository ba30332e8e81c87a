"""The CUDA / NCCL / torchrun plumbing, proven without a GPU: torch.cuda and the process
group calls are patched where a device would be needed; the collectives run for real on
gloo with two processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback

import pytest
import torch
import torch.distributed as tdist

from zhbert import distributed as D
from zhbert.errors import UserError


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as on a node with 8 GPUs; records set_device."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(i))
    return calls


@pytest.fixture
def fake_group(monkeypatch):
    """init_process_group recorded instead of run; the rank answers from the env."""
    calls = []
    monkeypatch.setattr(tdist, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(tdist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setattr(tdist, "get_rank", lambda: int(os.environ["RANK"]))
    monkeypatch.setattr(tdist, "get_world_size", lambda: int(os.environ["WORLD_SIZE"]))
    return calls


def _torchrun_env(monkeypatch, rank, local_rank, world):
    for k, v in {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world}.items():
        monkeypatch.setenv(k, str(v))


def test_torchrun_on_gpus_gives_cuda_local_rank_and_nccl(monkeypatch, fake_cuda, fake_group):
    _torchrun_env(monkeypatch, rank=11, local_rank=3, world=16)  # node 2 of 2, 8 GPUs each
    dist, device = D.setup("auto")
    assert device == torch.device("cuda", 3) and fake_cuda == [3]
    assert fake_group == [("nccl", {"device_id": torch.device("cuda", 3)})]
    assert dist == D.Dist(rank=11, world=16, local_rank=3) and not dist.main


def test_torchrun_on_cpus_gives_gloo(monkeypatch, fake_group):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _torchrun_env(monkeypatch, rank=0, local_rank=0, world=2)
    dist, device = D.setup("cpu")
    assert device == torch.device("cpu") and fake_group == [("gloo", {})] and dist.main


def test_cpu_device_on_a_gpu_machine_uses_gloo_and_no_gpu(monkeypatch, fake_cuda, fake_group):
    _torchrun_env(monkeypatch, rank=1, local_rank=1, world=2)
    dist, device = D.setup("cpu")
    assert device.type == "cpu" and fake_cuda == [] and fake_group[0][0] == "gloo"


def test_one_process_joins_no_group(monkeypatch, fake_cuda, fake_group):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    dist, device = D.setup("auto")
    assert dist == D.Dist() and device == torch.device("cuda", 0) and fake_group == []


def test_cuda_asked_for_and_absent_is_a_clear_error(monkeypatch, fake_group):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _torchrun_env(monkeypatch, rank=0, local_rank=0, world=2)
    with pytest.raises(UserError, match="train.device=cuda but CUDA is not available.*train.device=cpu"):
        D.setup("cuda")
    assert fake_group == []  # failed before waiting for the other ranks


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch, fake_cuda):
    with pytest.raises(UserError, match="LOCAL_RANK 8 but only 8 CUDA"):
        D.pick_device("cuda", local_rank=8)
    with pytest.raises(UserError, match="train.device must be"):
        D.pick_device("gpu")


def test_auto_without_cuda_trains_on_cpu_and_names_an_unused_gpu(monkeypatch):
    import zhbert.precision as P
    said = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(P, "warn_unused_gpu", lambda: said.append(1))
    assert D.pick_device("auto") == torch.device("cpu") and said == [1]


# ----------------------------------------------------------------------------- real gloo, 2 ranks

def _two_ranks(tmp_path, fn, *args):
    """Run fn(dist, *args) on two gloo ranks (spawned); returns each rank's result or
    the text of the exception it raised."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, str(tmp_path / "store"), queue, fn, args))
             for r in range(2)]
    for p in procs:
        p.start()
    out = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    return [out[0], out[1]]


def _rank_main(rank, store, queue, fn, args):
    try:
        tdist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        dist = D.Dist(rank, 2, rank)
        try:
            result = fn(dist, *args)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            result = f"{type(e).__name__}: {e}"
        D.shutdown(dist)
        queue.put((rank, result))
    except Exception:  # noqa: BLE001
        queue.put((rank, traceback.format_exc()))


def _caught(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the test inspects it
        return f"{type(e).__name__}: {e}"


def _scenarios(dist):
    """Everything in one pair of processes (spawning two costs ~10 s on a loaded CPU)."""
    cpu = torch.device("cpu")

    def write():
        raise OSError(28, "No space left on device", "/run/checkpoints/.tmp")

    def fail_then_wait():
        D.on_main(dist, cpu, write)
        D.barrier(dist)  # not reached: without on_main rank 1 would wait here for ever
        return "went on"

    return {"failure": _caught(fail_then_wait),
            "differ": _caught(D.agree_on_step, dist, [400, None][dist.rank], cpu, "runs/x"),
            "same": D.agree_on_step(dist, 400, cpu, "runs/x"),
            "none": D.agree_on_step(dist, None, cpu, "runs/x"),
            "text": D.broadcast_text(dist, "检查点 ✓" if dist.main else "", cpu),
            "ok": D.on_main(dist, cpu, lambda: "saved"),
            "max": D.agree_max(dist, float(dist.rank), cpu),
            "mean": _mean_of_grads(dist)}


def _mean_of_grads(dist):
    """fp32 gradients that bf16 cannot hold: the fp32 all-reduce keeps them."""
    g = [torch.full((3,), 1.0 + dist.rank * 2**-10), torch.full((2, 2), float(dist.rank))]
    D.all_reduce_mean_(dist, g)
    return [t.tolist() for t in g]


@pytest.mark.skipif(not tdist.is_available(), reason="torch.distributed not built")
def test_collective_helpers_on_two_gloo_ranks(tmp_path):
    r0, r1 = _two_ranks(tmp_path, _scenarios)
    # a rank-0 failure (full disk during a checkpoint) stops rank 1 too, with the message
    assert r0["failure"].startswith("OSError") and "No space left on device" in r0["failure"]
    assert r1["failure"].startswith("UserError: rank 0 failed: OSError")
    assert "No space left" in r1["failure"]
    # ranks that found different checkpoints all stop, with every rank's finding
    for r in (r0, r1):
        assert "rank 0: step 400, rank 1: none" in r["differ"] and "shared file system" in r["differ"]
        assert r["same"] == 400 and r["none"] is None
        assert r["text"] == "检查点 ✓" and r["max"] == 1.0
    assert r0["ok"] == "saved" and r1["ok"] is None
    mean = [[1.0 + 2**-11] * 3, [[0.5, 0.5], [0.5, 0.5]]]  # 1 + 2^-11 is not a bf16 number
    assert r0["mean"] == r1["mean"] == mean


def test_shutdown_destroys_an_nccl_group_and_leaves_gloo_to_exit(monkeypatch):
    """NCCL may hang at exit without destroy_process_group; a gloo group is ended by
    distributed.exit_process instead (its workers outlive a destroy while DDP holds it)."""
    destroyed = []
    monkeypatch.setattr(tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(tdist, "destroy_process_group", lambda: destroyed.append(True))
    for backend, expected in (("nccl", [True]), ("gloo", [])):
        destroyed.clear()
        monkeypatch.setattr(tdist, "get_backend", lambda group=None, b=backend: b)
        D.shutdown(D.Dist(0, 2, 0))
        assert destroyed == expected, backend
    D.shutdown(D.Dist())  # one process: nothing to leave
    assert destroyed == []


_RANK_SCRIPT = """
import sys
import torch.distributed as td
from zhbert import cli
td.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
if sys.argv[2] == "crash":
    def boom(argv):
        raise RuntimeError("boom")
    cli._main = boom
print("main returned", cli.main(["--version"]), flush=True)
"""


@pytest.mark.parametrize("how, code, printed", [("version", 0, "zhbert "),
                                                ("crash", 1, "RuntimeError: boom")])
def test_a_gloo_rank_ends_without_interpreter_finalization(tmp_path, how, code, printed):
    """With a gloo group open, the CLI ends the process itself (os._exit, output flushed)
    with the command's exit code, an uncaught exception's traceback and code 1 included:
    a gloo worker releasing a collective's Python tensors during finalization aborted
    ranks of test_ddp (distributed.exit_process). Without it, main() returns."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", _RANK_SCRIPT, str(tmp_path / "store"), how],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr[-2000:]
    assert printed in r.stdout + r.stderr
    assert "main returned" not in r.stdout


def test_without_a_group_the_cli_returns_and_raises_as_before(monkeypatch):
    from zhbert import cli
    assert cli.main(["--version"]) == 0
    monkeypatch.setattr(cli, "_main", lambda argv: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main([])
