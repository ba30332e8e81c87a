"""Progress display: a tqdm bar on a terminal, plain lines in a log.

`make demo > demo.log` used to hold hundreds of carriage-return redraws of one
bar on a single line. Off a terminal a bar is useless, so the training loop
gets a `LineProgress` instead: one ordinary line every `every_percent` of the
run (and at the end), with the same postfix fields the bar shows; the interval is a
multiple of the metrics' own (`every`), so no line repeats the last one's figures.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


class LineProgress:
    """The subset of tqdm's interface the training loop uses, printing plain lines."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it",
                 file: IO[str] | None = None, every_percent: float = 5.0, every: int = 1):
        self.total, self.n, self.desc, self.unit = max(1, int(total)), int(initial), desc, unit
        self.file = file if file is not None else sys.stderr
        # a 50-step run logging every 10 steps printed a line every 2-3 steps, four of five stale
        self._step = max(1, round(self.total * every_percent / 100 / every)) * every
        self._next = (self.n // self._step + 1) * self._step
        self._postfix: dict[str, Any] = {}
        self._start, self._start_n = time.perf_counter(), self.n
        self._printed = self.n

    def set_postfix(self, refresh: bool = False, **fields: Any) -> None:
        self._postfix = dict(fields)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next or self.n >= self.total:
            self._print()
            self._next = (self.n // self._step + 1) * self._step

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        fields = "".join(f" {k}={v}" for k, v in self._postfix.items())
        return (f"{self.desc} {self.n}/{self.total} {self.unit}s "
                f"({100 * self.n / self.total:.0f}%, {elapsed:.0f} s, {rate:.2f} {self.unit}/s){fields}")

    def _print(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self._printed = self.n

    def close(self) -> None:
        if self.n != self._printed:
            self._print()  # the last partial stretch (a stop by signal) still gets its line


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "it",
                 file: IO[str] | None = None, every: int = 1):
    """tqdm on a terminal; `LineProgress` when `file` (stderr by default) is not one, a line
    at multiples of ``every`` steps (where the postfix fields are new)."""
    file = file if file is not None else sys.stderr
    if hasattr(file, "isatty") and file.isatty():
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=file)
    return LineProgress(total, initial=initial, desc=desc, unit=unit, file=file, every=every)
