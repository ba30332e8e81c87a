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
- event:  step, kind (nonfinite_loss | rollback | resume | checkpoint | stop),
  message

Readers ignore an unterminated last line (a record being written).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text

SCHEMA = "zhbert-history"
VERSION = 1


class HistoryWriter:
    """Append-only JSONL writer; `sync()` makes everything written so far durable."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write the history {self.path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n")
        self._f.flush()  # visible to readers now; durable at the next sync()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()


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
