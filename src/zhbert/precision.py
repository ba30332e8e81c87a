"""Pick the training/inference precision that fits the machine.

"auto" never picks bf16 on a CPU that has no native bf16 matmul (no AMX, no
AVX512-BF16): there torch falls back to a scalar kernel that is many times slower
than fp32. An explicit "bf16" is still honoured (e.g. to reproduce a run), with a
one-time warning that says how much slower it measured.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from dataclasses import dataclass

import torch

from zhbert.errors import UserError
from zhbert.machine import Capabilities

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionWarning(UserWarning):
    """A requested precision runs, but much slower than another would."""


@dataclass(frozen=True)
class Resolved:
    precision: str  # "fp32" | "bf16" | "fp16"
    reason: str     # one sentence for logs and run metadata


@functools.lru_cache(maxsize=None)
def bf16_slowdown_probe(n: int = 256, reps: int = 5) -> float:
    """How many times slower an (n, n) bf16 matmul is than fp32 on this CPU
    (best of ``reps``; ~0.1 s where bf16 is emulated). Cached per process."""
    a = torch.randn(n, n)

    def best(x: torch.Tensor) -> float:
        x @ x  # warm-up: first call pays for kernel selection
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - t)
        return min(times)

    return best(a.bfloat16()) / max(best(a), 1e-9)


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, PrecisionWarning, stacklevel=4)  # at the caller of resolve_precision


def _resolve_cuda(requested: str, caps: Capabilities) -> Resolved:
    gpu = caps.cuda_name or "this GPU"
    if requested == "auto":
        if caps.cuda_bf16:
            return Resolved("bf16", f"{gpu} supports bf16: bf16 autocast")
        return Resolved("fp16", f"{gpu} has no native bf16: fp16 autocast with a GradScaler")
    if requested == "bf16" and not caps.cuda_bf16:
        raise UserError(f"--precision bf16: {gpu} has no native bf16 (it needs an Ampere or "
                        "newer GPU); use --precision auto (fp16 with loss scaling) or fp32")
    return Resolved(requested, f"requested --precision {requested} on {gpu}")


def _resolve_cpu(requested: str, caps: Capabilities, probe) -> Resolved:
    cpu = f"CPU {caps.cpu_name}"
    if requested == "fp16":
        raise UserError("--precision fp16 needs a CUDA GPU: on the CPU fp16 matmuls are "
                        "emulated (slow) and fp16 training needs loss scaling; use "
                        "--precision auto, fp32 or bf16")
    if requested == "auto":
        if caps.cpu_native_bf16:
            return Resolved("bf16", f"{cpu} has a native bf16 matmul (AMX/AVX512-BF16): bf16")
        return Resolved("fp32", f"{cpu} has no native bf16 matmul (no AMX/AVX512-BF16): fp32")
    if requested == "bf16" and not caps.cpu_native_bf16:
        factor = probe()
        _warn_once("cpu-bf16", f"--precision bf16 on {cpu}, which has no native bf16 matmul "
                   f"(no AMX/AVX512-BF16): a bf16 matmul measured {factor:.1f}x slower than "
                   "fp32 here; --precision auto would use fp32")
        return Resolved("bf16", f"requested --precision bf16 on {cpu} without native bf16 "
                        f"(matmul {factor:.1f}x slower than fp32)")
    return Resolved(requested, f"requested --precision {requested} on {cpu}")


def resolve_precision(requested: str, caps: Capabilities, probe=bf16_slowdown_probe) -> Resolved:
    """The precision to run in, and why. Depends only on its arguments (``probe`` is
    called only for an explicit bf16 on a CPU without native bf16)."""
    if requested not in PRECISIONS:
        raise UserError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if caps.device_type == "cuda":
        return _resolve_cuda(requested, caps)
    return _resolve_cpu(requested, caps, probe)


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def autocast_context(precision: str, device: str | torch.device):
    """Context manager for the forward pass: autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(_device_type(device), dtype=_DTYPES[precision])


def needs_grad_scaler(precision: str, device: str | torch.device) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
    return precision == "fp16" and _device_type(device) == "cuda"
