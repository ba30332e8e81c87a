"""Shared by the benchmarks: what machine this is, how busy it is, how fast its
matmul is, and where results go.

The machine is shared and noisy, so every result carries the load average and the
matmul peak measured in the same process: a ratio to the peak (or to a reference
timed alternately in the same run) means more than an absolute number.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

OUT = Path(__file__).parent / "out"

# Exit codes, as zhbert's: 2 is "cannot do what you asked here" (a bad option, a bad path,
# no GPU for a GPU benchmark), printed as one line "benchmarks.NAME: error: ..."
EXIT_USAGE = 2
DATA_HELP = "prepared from the built-in corpus if missing"


class BenchError(Exception):
    """A benchmark cannot do what was asked here; the message says why (exit 2, one line)."""


class Parser(argparse.ArgumentParser):
    """argparse with the benchmark's name as prog (``benchmarks.NAME``), so its one-line
    errors (exit 2) read like the wrapper's."""

    def __init__(self, name: str, doc: str | None, **kwargs):
        first = (doc or "").strip().split("\n\n")[0]
        super().__init__(prog=f"benchmarks.{name}", description=first, **kwargs)

    def error(self, message: str):
        """One line, as zhbert's own options (argparse printed its usage block first)."""
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _message(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(str(c) for c in exc.cmd)
        tail = (exc.stderr or "").strip().splitlines()[-1:] if isinstance(exc.stderr, str) else []
        return f"{cmd!r} exited {exc.returncode}" + (f": {tail[0]}" if tail else "")
    return str(exc) or type(exc).__name__  # as zhbert prints a UserError


def entry(name: str) -> Callable:
    """Decorator for a benchmark's ``main``: zhbert's UserError/ConfigError, a BenchError and
    a failed subprocess become one line ``benchmarks.NAME: error: ...`` on stderr and
    SystemExit(2), as ``zhbert`` prints its user errors (no traceback)."""
    from zhbert.errors import UserError

    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except (UserError, BenchError, subprocess.CalledProcessError) as exc:
                print(f"benchmarks.{name}: error: {_message(exc)}", file=sys.stderr)
                raise SystemExit(EXIT_USAGE) from None
        return run
    return wrap


def check_data_dir(path: Path | None) -> None:
    """Refuse a --data that exists, is not empty and is not a zhbert data directory (no
    manifest.json): preparing the built-in corpus into it would mix it with what is there."""
    import zhbert.datadir  # noqa: F401  (registers how a data directory's manifest is known)
    from zhbert.outputs import out_state  # the one decision on a folder to be written
    from zhbert.run import DATA_MANIFEST
    state = "missing" if path is None else out_state(Path(path), DATA_MANIFEST)
    if state == "file":
        raise BenchError(f"--data {path} is a file, not a data directory")
    if state in ("missing", "empty", "ours"):
        return
    raise BenchError(f"--data {path} is not a zhbert data directory (no {DATA_MANIFEST} of "
                     "zhbert prepare's) and not empty; give a prepared data directory, or a new "
                     "or empty folder")


def csv_of(parse: Callable[[str], object]) -> Callable[[str], list]:
    """argparse type: comma-separated values, each read by ``parse`` (an argtypes type)."""
    def read(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} names no value")
        return [parse(t) for t in items]
    read.__name__ = "list"
    return read


def library(name: str) -> None:
    """For a module that is a library of the benchmarks, not one: running it says so."""
    print(f"benchmarks.{name}: error: a library of the benchmarks, not a benchmark; "
          "nothing to run", file=sys.stderr)
    sys.exit(EXIT_USAGE)


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


SPREAD = 1.25  # median- and mean-based ratios further apart than this: the load moved the steps


def ratio_lines(ratios: dict[str, tuple[float, float]], spread: str,
                unit: str = "steps") -> tuple[dict[str, bool], list[str]]:
    """The printed ratios, name -> (median-based, mean-based): "ratio NAME: X.XX" each ("ratio:"
    for the name ""). The median is the headline (other jobs on the shared machine make some
    steps much slower); where the two differ by more than SPREAD the load moved the ``unit``
    (steps, batches), and both are printed after one warning naming ``spread`` (each side's
    best..worst). Returns ({name: load moved it}, lines)."""
    moved = {k: max(m, a) / min(m, a) > SPREAD for k, (m, a) in ratios.items()}
    lines = []
    if any(moved.values()):
        lines.append(f"warning: the machine's load moved the {unit} (best..worst: {spread}): the "
                     f"median- and mean-based ratios differ by more than {SPREAD - 1:.0%}")
    for k, (median, mean) in ratios.items():
        lines.append(f"ratio{' ' + k if k else ''}: {median:.2f}"
                     + (f" (median {unit}); mean-based ratio: {mean:.2f}" if moved[k] else ""))
    return moved, lines


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
