"""What machine are we on, and what can it do fast?

Two CI machines of the same size can differ by 60x in bf16 speed: an Intel Xeon
with AMX runs bf16 matmuls ~3x faster than fp32, an AMD EPYC with only AVX2
falls back to a scalar bf16 kernel ~20x slower than fp32. ``detect_capabilities``
asks torch (and /proc/cpuinfo as a fallback) so that ``zhbert.precision`` can pick
a precision that fits, and ``describe_machine`` puts the answer on every figure.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import torch

# /proc/cpuinfo flag name -> torch.cpu.get_capabilities() key (used when cpuinfo is missing)
_FLAGS = {"avx2": "avx2", "avx512f": "avx512_f", "avx512_bf16": "avx512_bf16",
          "amx_bf16": "amx_bf16"}


def _proc_cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo ({} off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _torch_cpu_capabilities() -> dict:
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    return get() if get is not None else {}


def _cpu_flags(cpuinfo: dict[str, str], torch_caps: dict) -> dict[str, bool]:
    if "flags" in cpuinfo:
        present = set(cpuinfo["flags"].split())
        return {flag: flag in present for flag in _FLAGS}
    return {flag: bool(torch_caps.get(key, False)) for flag, key in _FLAGS.items()}


def _cpu_name(cpuinfo: dict[str, str], torch_caps: dict) -> str:
    """The CPU's model name, and on x86 its family and model numbers: a cloud VM's "AMD
    EPYC" named two CPUs (family 25 model 17 and a faster one) whose bf16 training steps
    differed 1.8x, both with AVX512-BF16."""
    name = (cpuinfo.get("model name") or torch_caps.get("cpu_name") or platform.processor()
            or platform.machine() or "unknown CPU")
    name = re.sub(r"\((R|TM|tm)\)|\bCPU\b|@.*$", " ", name)  # "Intel(R) Xeon(R) CPU @ 2.2GHz"
    if cpuinfo.get("cpu family") and cpuinfo.get("model"):
        name += f" family {cpuinfo['cpu family']} model {cpuinfo['model']}"
    return " ".join(name.split())


def _cuda_name() -> str | None:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def cpu_info() -> dict:
    """Facts about this machine that matter for speed, as plain JSON-able values."""
    cpuinfo, torch_caps = _proc_cpuinfo(), _torch_cpu_capabilities()
    return {
        "cpu": _cpu_name(cpuinfo, torch_caps),
        "flags": _cpu_flags(cpuinfo, torch_caps),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "cuda_device": _cuda_name(),
    }


def describe_machine(info: dict | None = None) -> str:
    """One line for figures and logs, e.g.
    "AMD EPYC (AVX2; no avx512_bf16/amx) · 2 threads · torch 2.13.0"; of ``info`` (a
    ``cpu_info()``) where given, so that a header's line and its thread count are one reading."""
    info = info or cpu_info()
    flags = info["flags"]
    native = [f for f in ("amx_bf16", "avx512_bf16") if flags[f]]
    bf16 = ", ".join(native) if native else "no avx512_bf16/amx"
    parts = [f"{info['cpu']} ({info['torch_cpu_capability']}; {bf16})",
             f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}", f"torch {info['torch']}"]
    if info["cuda_device"]:
        parts.insert(1, info["cuda_device"])
    return " · ".join(parts)


@dataclass(frozen=True)
class Capabilities:
    device_type: str          # "cpu" | "cuda" | ...
    cpu_name: str
    cpu_native_bf16: bool     # AMX or AVX512-BF16: bf16 matmuls at least as fast as fp32
    cuda_bf16: bool           # the CUDA device computes bf16 natively (Ampere and later)
    cuda_name: str | None = None
    cpu_capability: str = ""  # torch's SIMD level: "AVX2", "AVX512", ...


# torch's SIMD dispatch levels below AVX-512 on x86 (torch.backends.cpu.get_cpu_capability)
BELOW_AVX512 = ("DEFAULT", "NO AVX", "AVX2")


def detect_capabilities(device: str | torch.device = "cpu") -> Capabilities:
    device = torch.device(device)
    cpuinfo, torch_caps = _proc_cpuinfo(), _torch_cpu_capabilities()
    flags = _cpu_flags(cpuinfo, torch_caps)
    native = any(getattr(torch.cpu, probe, lambda: False)()
                 for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    native = native or flags["amx_bf16"] or flags["avx512_bf16"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in BELOW_AVX512:  # ATEN_CPU_CAPABILITY=avx2: torch's bf16 kernels are
        native = False               # then the scalar ones, whatever the CPU can do
    on_cuda = device.type == "cuda" and torch.cuda.is_available()
    return Capabilities(
        device_type=device.type,
        cpu_name=_cpu_name(cpuinfo, torch_caps),
        cpu_native_bf16=native,
        # including_emulation=False: an emulated bf16 (pre-Ampere) is not a fast one
        cuda_bf16=on_cuda and torch.cuda.is_bf16_supported(including_emulation=False),
        cuda_name=torch.cuda.get_device_name(device) if on_cuda else None,
        cpu_capability=capability,
    )


def memory_bytes(device: str | torch.device = "cpu") -> int | None:
    """The memory a training on ``device`` can use at most: the GPU's own, else the host's
    RAM and swap (None where unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages + _swap_bytes()


def _swap_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident set (VmHWM) of a process in MB; for this process without /proc,
    getrusage's ru_maxrss (which a child started by exec inherits from its parent, so
    VmHWM comes first); None for another process without /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    if pid != "self":
        return None
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit


def tune_malloc() -> bool:
    """Keep freed tensors' memory in glibc's heap from one training step to the next.

    By default glibc gives big blocks back to the kernel when they are freed (mmap'd
    blocks at once, the heap's top above M_TRIM_THRESHOLD), so every step page-faults its
    activations in again: ~105K minor faults and 0.2 s of system time per `seed` bf16
    step on one thread (~5% of the step), ~256K faults in fp32. Serving blocks up to
    32 MB from the heap and never trimming it brought that to 0.5K-3.5K a step (0.01 s of
    system time); fp32 blocks above glibc's 32 MB ceiling still fault (~50K a step). The
    peak RSS stays the step's peak; memory is just not handed back between steps.
    Linux with glibc only; returns whether both settings took."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
