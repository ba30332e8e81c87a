"""Devices and process groups: one GPU, many GPUs, many nodes (torchrun), or the CPU.

Under torchrun every process has RANK, WORLD_SIZE and LOCAL_RANK; it trains on
``cuda:LOCAL_RANK`` with NCCL, or on the CPU with gloo. What can go wrong at scale
is mostly one rank doing something the others do not, and the others waiting for it
in a collective until torchrun's timeout. So every decision that one rank makes alone
(rank 0 writes the run directory and the checkpoints; each rank finds its own latest
checkpoint) goes through a helper here that ends with every rank knowing the outcome:
``on_main`` (rank 0 runs it; a failure stops every rank with rank 0's message) and
``agree_on_step`` (all ranks resume from the same step, or all stop).
Lower module: imports nothing from the command modules.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, NoReturn, TypeVar

import torch

from zhbert.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``train.device`` (auto | cpu | cuda) -> this process's device: ``cuda:LOCAL_RANK``
    when CUDA is asked for or there (auto), else the CPU. On a machine whose GPU this
    torch cannot use, auto says so once (precision.warn_unused_gpu)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise UserError(f"train.device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from zhbert.precision import unused_gpu_message
            why = unused_gpu_message() or "no CUDA device is visible to torch"
            raise UserError(f"train.device=cuda but CUDA is not available ({why}); "
                            "use train.device=cpu or auto")
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA "
                            "device(s) visible: start at most one process per GPU "
                            "(torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if requested == "auto":
        from zhbert.precision import warn_unused_gpu
        warn_unused_gpu()
    return torch.device("cpu")


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on CUDA, gloo on
    the CPU. NCCL is given the device up front, so its barriers and communicators use
    the right GPU from the first collective."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup(requested_device: str) -> tuple[Dist, torch.device]:
    """The device first (a clear error before any process waits on another), then the
    process group on it."""
    device = pick_device(requested_device, int(os.environ.get("LOCAL_RANK", "0")))
    return setup_distributed(device), device


def shutdown(dist: Dist) -> None:
    """Leave an NCCL process group (torch warns, and NCCL may hang at exit, without it).
    A gloo group is left for ``exit_process`` to end: destroying it does not stop its
    worker threads while DDP's reducer still holds it."""
    if dist.world > 1:
        import torch.distributed
        if torch.distributed.is_initialized() and torch.distributed.get_backend() == "nccl":
            torch.distributed.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End this process with ``os._exit(code)``, its output flushed: how a rank of a gloo
    process group ends (the CLI asks whether it is one).

    Why: a gloo worker thread can drop the last reference to a finished collective after
    the main thread has returned from it. The barrier that ends a run holds the
    broadcast before it, whose tensors belong to Python, so the worker needs the GIL to
    let go. If the interpreter is finalizing by then, Python ends that thread inside a
    C++ destructor and the rank dies with SIGABRT ("terminate called without an active
    exception"). A core dump of a rank of tests/test_ddp.py showed exactly that stack
    (~AsyncBarrierWork -> ~AsyncBroadcastWork -> decref_pyobject -> take_gil ->
    pthread_exit), in 1 of 15-70 runs under load, after its run was complete and saved.
    Skipping finalization, as multiprocessing ends its children, leaves nothing to race.
    NCCL groups are destroyed by ``shutdown`` and exit normally."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed
        torch.distributed.barrier()


def agree_max(dist: Dist, value: float, device: torch.device) -> float:
    """The largest ``value`` over the ranks (e.g. a stop flag one rank has seen)."""
    if dist.world == 1:
        return value
    import torch.distributed
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())


def agree_sum(dist: Dist, value: int, device: torch.device) -> int:
    """The sum of an integer ``value`` over the ranks (each rank's tokens), exact in int64."""
    if dist.world == 1:
        return value
    import torch.distributed
    t = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t)
    return int(t.item())


def all_reduce_mean_(dist: Dist, tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` over the ranks in place, as one flat all-reduce in their own
    dtype (the trainer passes the fp32 master gradients of a bf16 run, which DDP would
    have reduced in bf16)."""
    if dist.world == 1 or not tensors:
        return
    import torch.distributed
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= dist.world
    torch._foreach_copy_(tensors, [f.view_as(t) for f, t in zip(flat.split([t.numel() for t in tensors]), tensors)])


def gather_ints(dist: Dist, value: int, device: torch.device) -> list[int]:
    """Every rank's ``value``, in rank order, on every rank."""
    if dist.world == 1:
        return [value]
    import torch.distributed
    mine = torch.tensor([value], dtype=torch.int64, device=device)
    parts = [torch.zeros_like(mine) for _ in range(dist.world)]
    torch.distributed.all_gather(parts, mine)
    return [int(p.item()) for p in parts]


def agree_on_step(dist: Dist, step: int | None, device: torch.device, where: str) -> int | None:
    """The checkpoint step every rank resumes from; each rank passes the one it found
    (None: none). Different answers stop every rank with one message: ranks that resume
    from different states drift apart silently and hang later at a collective."""
    steps = gather_ints(dist, -1 if step is None else step, device)
    if len(set(steps)) > 1:
        found = ", ".join(f"rank {r}: {'none' if s < 0 else f'step {s}'}" for r, s in enumerate(steps))
        raise UserError(f"the ranks found different checkpoints to resume from in {where} ({found}); "
                        "--out must be one directory that every rank sees (a shared file system), "
                        "or copy the run directory to every node before --resume")
    return step


def broadcast_text(dist: Dist, text: str, device: torch.device) -> str:
    """Rank 0's ``text`` on every rank (UTF-8 bytes in a tensor: nothing pickled)."""
    if dist.world == 1:
        return text
    import torch.distributed
    data = text.encode("utf-8") if dist.main else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    torch.distributed.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.main and len(data):
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if len(buf):
        torch.distributed.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode("utf-8")


def on_main(dist: Dist, device: torch.device, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only, then tell every rank how it went: when it fails (a bad
    --out, a full disk during a checkpoint) every rank stops with rank 0's message
    instead of waiting in the next collective until torchrun's timeout. Rank 0 re-raises
    its own exception (a user error stays one, a bug keeps its traceback)."""
    result, error, exc = None, "", None
    if dist.main:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - every rank must hear of any failure
            exc = e
            error = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            error = error or type(e).__name__
    error = broadcast_text(dist, error, device)
    if exc is not None:
        raise exc
    if error:
        raise UserError(f"rank 0 failed: {error}")
    return result
