"""Shared by the benchmarks: what machine this is, how busy it is, how fast its
matmul is, and where results go.

The machine is shared and noisy, so every result carries the load average and the
matmul peak measured in the same process: a ratio to the peak (or to a reference
timed alternately in the same run) means more than an absolute number.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "out"


def versions() -> dict[str, str]:
    import transformers

    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}


def machine() -> dict:
    """zhbert.machine's facts plus the load average and versions, JSON-able."""
    from zhbert.machine import cpu_info, describe_machine

    return {"line": describe_machine(), **cpu_info(), **versions(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def machine_line(info: dict) -> str:
    flags = ", ".join(f"{k}={'y' if v else 'n'}" for k, v in info["flags"].items())
    return (f"{info['line']} · flags {flags} · transformers {info['transformers']} · "
            f"load {' '.join(str(x) for x in info['loadavg'])}")


def child_peak_rss_mb(module: str, args: list[str], what: str) -> float | None:
    """Run ``python -m module *args`` (a benchmark's child mode, which builds one side and
    prints {"peak_rss_mb": ...} last) and return that figure; None, with a warning, if the
    child failed."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    if out.returncode:
        print(f"warning: RSS child for {what} failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (zhbert.machine.peak_rss_mb: VmHWM)."""
    from zhbert.machine import peak_rss_mb as peak

    return peak()


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an (n, n) @ (n, n) matmul, the faster of torch's
    matmul (MKL for fp32) and oneDNN's inner product (what zhbert.kernels.linear uses;
    on an AMD EPYC with AVX512 it ran fp32 ~1.7x faster than MKL): the practical peak
    that a model's FLOP/s is compared with."""
    from zhbert import kernels

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    kinds = [lambda: a @ b]
    if kernels.onednn_available():
        try:  # oneDNN has no kernel for some dtypes on some ISAs (bf16 held to AVX2)
            kernels.inner_product(a, b, None)
            kinds.append(lambda: kernels.inner_product(a, b, None))
        except RuntimeError:
            pass
    best = float("inf")
    for fn in kinds:
        fn()  # warm-up: kernel selection, page faults
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def peaks(native_bf16: bool) -> dict[str, float]:
    """fp32 peak always; bf16 only where the CPU has it natively (elsewhere it is a
    ~20x slower scalar fallback, and timing it would just waste a minute)."""
    out = {"fp32": matmul_gflops(torch.float32)}
    if native_bf16:
        out["bf16"] = matmul_gflops(torch.bfloat16)
    return out


def write_json(name: str, payload: dict) -> Path:
    from zhbert.fileio import atomic_write_text

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = OUT / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def finish(name: str, info: dict, lines: list[str], payload: dict) -> Path:
    """A benchmark's end: the machine line and ``lines`` printed, ``payload`` (with the
    machine) written to benchmarks/out/NAME-<time>.json, its path printed and returned."""
    print(machine_line(info))
    for line in lines:
        print(line)
    path = write_json(name, {**payload, "machine": info})
    print(f"wrote {path}")
    return path


def table(rows: list[list[str]]) -> str:
    """Plain fixed-width table, first row the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
