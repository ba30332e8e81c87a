"""The run's history: `history.jsonl`, schema "zhbert-history" version 1.

One JSON object per line, appended and flushed as the run goes, fsynced at
evaluations and checkpoints: a crash loses at most the current interval, and
another process (zhbert status, the dashboard, the analysis) can read the file
while training runs. Every record has a "type":

- header: schema, version, run, started, config, precision, precision_reason,
  machine, total_steps, tokens_per_step (first line; a resumed run appends
  another header with resumed_from)
- train:  step, tokens, elapsed, lr, loss, mlm_loss, mlm_acc, nsp_loss,
  nsp_acc, sop_acc, grad_norm, tokens_per_s (means over the interval since the
  previous train record; accuracies are fractions)
- eval:   step, tokens, elapsed, eval_mlm_acc, eval_mlm_acc_ci95 [lo, hi]
  (Wilson), eval_mlm_loss, eval_ppl, eval_nsp_acc, eval_sop_acc, eval_masked
- event:  step, kind (nonfinite_loss | diverged | resume | checkpoint | stop),
  message

Readers ignore an unterminated last line (a record being written).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text

SCHEMA = "zhbert-history"
VERSION = 1


class HistoryWriter:
    """Append-only JSONL writer; `sync()` makes everything written so far durable.

    A write that fails (a full disk) is undone to the last whole line and stops the
    run with a UserError naming the file and the bytes it needed: the history stays
    a sequence of complete records, and ``--resume`` continues it once space is freed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._failed = False
        try:
            self._f = open(self.path, "ab", buffering=0)  # unbuffered: nothing left to flush after an error
        except OSError as exc:
            raise UserError(f"cannot write the history {self.path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")
        end = self._f.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # visible to readers at once; durable at the next sync()
                view = view[self._f.write(view):]
        except OSError as exc:
            self._failed = True
            with contextlib.suppress(OSError):
                os.ftruncate(self._f.fileno(), end)  # no half record (truncating needs no space)
            raise _write_error(self.path, exc, len(data)) from None

    def sync(self) -> None:
        try:
            os.fsync(self._f.fileno())
        except OSError as exc:  # some filesystems report a full disk only here
            self._failed = True
            raise _write_error(self.path, exc, 0) from None

    def close(self) -> None:
        if not self._f.closed:
            if not self._failed:
                self.sync()
            self._f.close()


def _write_error(path: Path, exc: OSError, size: int) -> UserError:
    need = ""
    if exc.errno == errno.ENOSPC:
        free = shutil.disk_usage(path.parent).free
        need = f" ({size:,} more bytes needed, {free:,} free)" if size else ""
    return UserError(f"could not append to {path}: {exc.strerror or exc}{need}; every record "
                     "before this one is intact. Free disk space, then continue with --resume")


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Complete records of a history file (a partial last line is skipped)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"history not found: {path}") from None
    lines = data.split(b"\n")
    # The last element is b"" when the file ends with a newline, else a partial line.
    for lineno, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except json.JSONDecodeError:
            raise UserError(f"{path}, line {lineno}: not a JSON record (corrupt history)") from None


def truncate_after(path: str | Path, step: int) -> int:
    """Drop train/eval/event records after `step` (resume from a checkpoint at `step`).

    Records written after the checkpoint describe steps that will be re-run;
    keeping them would duplicate steps. Returns the number of records dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for rec in iter_records(path):
        if rec.get("type") != "header" and rec.get("step", 0) > step:
            dropped += 1
            continue
        kept.append(json.dumps(rec, ensure_ascii=False, allow_nan=True))
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return dropped
