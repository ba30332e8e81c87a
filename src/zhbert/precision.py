"""Pick the training/inference precision that fits the machine.

"auto" never picks bf16 on a CPU that has no native bf16 matmul (no AMX, no
AVX512-BF16): there torch falls back to a scalar kernel that is many times slower
than fp32. An explicit "bf16" is still honoured (e.g. to reproduce a run), with a
one-time warning that says how much slower it measured.

What each precision does in training (the reason string says it in the log):
- fp32: fp32 throughout; on an Ampere or newer GPU with TF32 tensor-core matmuls
  (inputs rounded to a 10-bit mantissa, fp32 accumulation: ~8x the fp32 matmul rate),
  unless ZHBERT_TF32=0;
- bf16: a bf16 copy of the model trains, fp32 master weights in the optimizer
  (``Bf16Weights``), on the CPU and on CUDA alike; evaluation runs under bf16 autocast;
- fp16 (CUDA only): fp16 autocast with dynamic loss scaling (GradScaler).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from dataclasses import dataclass

import torch

from zhbert.errors import UserError
from zhbert.machine import BELOW_AVX512, Capabilities

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionWarning(UserWarning):
    """A requested precision runs, but much slower than another would."""


@dataclass(frozen=True)
class Resolved:
    precision: str  # "fp32" | "bf16" | "fp16"
    reason: str     # one sentence for logs and run metadata: why, and what the step does
    tf32: bool = False  # fp32 matmuls on TF32 tensor cores (see apply_matmul_precision)


def trains_bf16_copy(precision: str) -> bool:
    """bf16 trains a bf16 copy of the model (``Bf16Weights``), not fp32 under autocast."""
    return precision == "bf16"


def what_happens(precision: str, tf32: bool = False) -> str:
    """What the training step does in ``precision``, for the log."""
    if trains_bf16_copy(precision):
        return "a bf16 copy of the model trains, fp32 master weights in the optimizer"
    if precision == "fp16":
        return "fp16 autocast with dynamic loss scaling (GradScaler)"
    if tf32:
        return "fp32 with TF32 tensor-core matmuls (set ZHBERT_TF32=0 for full fp32)"
    return "fp32 throughout"


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
            precision, why = "bf16", f"{gpu} supports bf16"
        else:
            precision, why = "fp16", f"{gpu} has no native bf16"
    elif requested == "bf16" and not caps.cuda_bf16:
        raise UserError(f"--precision bf16: {gpu} has no native bf16 (it needs an Ampere or "
                        "newer GPU); use --precision auto (fp16 with loss scaling) or fp32")
    else:
        precision, why = requested, f"requested --precision {requested} on {gpu}"
    # native bf16 and TF32 arrive together (compute capability 8.0, Ampere)
    tf32 = precision == "fp32" and caps.cuda_bf16 and os.environ.get("ZHBERT_TF32", "1") != "0"
    return Resolved(precision, f"{why}: {what_happens(precision, tf32)}", tf32)


def apply_matmul_precision(resolved: Resolved) -> None:
    """Turn TF32 matmuls on for an fp32 run on Ampere+ (torch's default is full fp32).
    Uses the per-backend setting (torch >= 2.9), never mixed with the legacy
    set_float32_matmul_precision / allow_tf32 flags (torch refuses to read a mix)."""
    if resolved.tf32:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"


def _resolve_cpu(requested: str, caps: Capabilities, probe) -> Resolved:
    cpu = f"CPU {caps.cpu_name}"
    if requested == "fp16":
        raise UserError("--precision fp16 needs a CUDA GPU: on the CPU fp16 matmuls are "
                        "emulated (slow) and fp16 training needs loss scaling; use "
                        "--precision auto, fp32 or bf16")
    if requested == "auto":
        if caps.cpu_native_bf16:
            return Resolved("bf16", f"{cpu} has a native bf16 matmul (AMX/AVX512-BF16): "
                            f"{what_happens('bf16')}")
        held = (f", or torch's kernels are held to {caps.cpu_capability}"
                if caps.cpu_capability in BELOW_AVX512 else "")
        return Resolved("fp32", f"{cpu} has no native bf16 matmul (no AMX/AVX512-BF16{held}): fp32")
    if requested == "bf16" and not caps.cpu_native_bf16:
        factor = probe()
        _warn_once("cpu-bf16", f"--precision bf16 on {cpu}, which has no native bf16 matmul "
                   f"(no AMX/AVX512-BF16): a bf16 matmul measured {factor:.1f}x slower than "
                   "fp32 here; --precision auto would use fp32")
        return Resolved("bf16", f"requested --precision bf16 on {cpu} without native bf16 "
                        f"(matmul {factor:.1f}x slower than fp32): {what_happens('bf16')}")
    return Resolved(requested, f"requested --precision {requested} on {cpu}: {what_happens(requested)}")


# the Makefile's index for a CUDA build of the pinned torch (torch alone comes from it)
CUDA_SETUP = ("make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128 "
              "(pick the CUDA version your driver supports: nvidia-smi shows it)")


def unused_gpu_message(nvidia_smi: str | None = None, dev_nodes: list[str] | None = None) -> str | None:
    """One line when this machine has an NVIDIA GPU that this torch cannot use (a CPU-only
    build, or a CUDA build that finds no device), else None. The arguments are for tests."""
    import glob
    import shutil

    smi = shutil.which("nvidia-smi") if nvidia_smi is None else nvidia_smi
    nodes = glob.glob("/dev/nvidia[0-9]*") if dev_nodes is None else dev_nodes
    if not (smi or nodes) or torch.cuda.is_available():
        return None
    seen = f"an NVIDIA GPU is present ({smi or nodes[0]})"
    if torch.version.cuda is None:
        return (f"{seen} but torch {torch.__version__} is a CPU-only build, so training runs on "
                f"the CPU; install a CUDA build: {CUDA_SETUP}")
    return (f"{seen} but torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable "
            "device (driver too old, or CUDA_VISIBLE_DEVICES empty?), so training runs on the CPU")


def warn_unused_gpu() -> None:
    """Say ``unused_gpu_message`` once per process (nothing on a machine without a GPU)."""
    message = unused_gpu_message()
    if message:
        _warn_once("unused-gpu", message)


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
    return torch.autocast(_device_type(device), dtype=DTYPES[precision])


def needs_grad_scaler(precision: str, device: str | torch.device) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
    return precision == "fp16" and _device_type(device) == "cuda"


class Bf16Weights:
    """bf16 training with fp32 master weights (Micikevicius et al. 2018, "mixed precision
    training"; what Megatron calls bf16 with fp32 main params).

    Autocast keeps the weights and the residual stream in fp32 and casts to bf16 at every
    matmul, and casts every weight gradient back: on a CPU with native bf16 those copies
    were ~5% of a `seed` step. Here the module that trains is a bf16 copy of ``master``:
    activations and elementwise work stay bf16 end to end, while the optimizer, gradient
    clipping, checkpoints and evaluation see only the fp32 ``master``. After backward
    the bf16 gradients move to the master (``grads_to_master``); after the optimizer step
    the master values are copied back (``sync_from_master``). With gradient accumulation
    the micro-batch gradients add up in the fp32 masters (``grads_to_master`` after each
    one), and under DDP they are averaged there, in fp32.
    """

    def __init__(self, master: torch.nn.Module):
        import copy

        self.module = copy.deepcopy(master).to(torch.bfloat16)  # ties survive the deepcopy
        self.master_params = list(master.parameters())
        self.params = list(self.module.parameters())

    def grads_to_master(self) -> None:
        """Add the bf16 copy's gradients into the fp32 masters' and clear them. Called after
        every micro-batch, so that gradient accumulation (and, under DDP, the all-reduce:
        distributed.all_reduce_mean_ on the masters) happens in fp32, not bf16."""
        for m, p in zip(self.master_params, self.params):
            if p.grad is not None:
                m.grad = p.grad.float() if m.grad is None else m.grad.add_(p.grad)
            p.grad = None

    @torch.no_grad()
    def sync_from_master(self) -> None:
        torch._foreach_copy_(self.params, self.master_params)  # casts fp32 -> bf16


# what a step whose loss or gradient was not finite was
NONFINITE, SCALER_SKIP = "nonfinite", "scaler_skip"


def classify_bad_step(loss_finite: bool, scaler) -> str:
    """A step whose gradient norm was not finite: divergence, or fp16 loss scaling at work.

    With a GradScaler, inf/nan gradients from a finite loss are its normal overflow
    skips: it starts at 2^16 and halves the scale after each one until the gradients
    fit (a few skips at the start of every fp16 run, one now and then later). They are
    recorded, but do not count toward train.max_nonfinite, unless the scale has fallen
    below 1: then even unscaled gradients overflow, which is divergence. A non-finite
    loss is always divergence."""
    if loss_finite and scaler is not None and scaler.get_scale() >= 1.0:
        return SCALER_SKIP
    return NONFINITE
