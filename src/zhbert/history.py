"""The run's history: `history.jsonl`, schema "zhbert-history" version 1.

One JSON object per line, appended and flushed as the run goes, fsynced at
evaluations and checkpoints: a crash loses at most the current interval, and
another process (zhbert status, the dashboard, the analysis) can read the file
while training runs. Every record has a "type":

- header: schema, version, run, started, config, precision, precision_reason,
  machine, threads (torch's threads per process at the start; absent before its commit,
  where threads.recorded_threads reads the machine line), total_steps, tokens_per_step,
  masking (the masking rule, data.MASKING_RULES; absent before its commit) (first line; a resumed run appends
  another header with resumed_from). Its tokens_per_step counts *positions*
  (batch x max_len x accumulation x processes, padding included); readers call
  it ``positions_per_step`` (``positions_per_step(header)``)
- train:  step, tokens (real, non-padding tokens seen so far: what "tokens" means
  wherever a user reads it; ``tokens_per_step(records)``), elapsed, lr, loss, mlm_loss, mlm_acc, nsp_loss,
  nsp_acc, sop_acc, grad_norm, tokens_per_s (means over the interval since the
  previous train record; accuracies are fractions)
- eval:   step, tokens, elapsed, eval_mlm_acc, eval_mlm_acc_ci95 [lo, hi]
  (Wilson), eval_mlm_loss, eval_ppl, eval_nsp_acc, eval_sop_acc, eval_masked
- event:  step, kind (nonfinite_loss | diverged | resume | checkpoint | stop),
  message

Reading (every reader goes through ``read_history`` / ``HistoryReader``; the same
rules for history.jsonl and checkpoint_eval.jsonl):

- an unterminated last line is a record being written: it is left for the next
  read, silently (``Chunk.partial`` says it was there);
- a complete line that is not a JSON object (a torn write in the middle, a disk
  error) is skipped with a warning on stderr naming the file and the line number
  (``Chunk.bad_lines``); the records around it are kept;
- so is a JSON object whose fields every reader relies on have the wrong type
  (``record_problem``: a hand edit, another tool's line): a "type" that is not a
  string; a train/eval/event record without a whole-number "step" >= 0 (any record
  that has a "step": checkpoint_eval.jsonl's have no "type"); a known metric that is not
  a number or null; a header whose total_steps, config, ... are not what the writer
  writes. Readers may then take these fields as typed: ``int(rec["step"])`` never fails;
- ``HistoryReader.read()`` returns only what was appended since its last read; a
  file that shrank or was replaced (``rewrite_for_resume`` on resume rewrites it) is
  read again from the start, with ``Chunk.reset`` set;
- the one rewrite, ``rewrite_for_resume`` on resume, keeps only the records it read up to the
  checkpoint: when it drops any, it first keeps the file as it was beside it, as
  ``history.jsonl.dropped-<UTC time>``, or ``history.jsonl.corrupt-<UTC time>`` where the
  file had lines it could not parse, and names that copy in its warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from zhbert.errors import UserError
from zhbert.failure import os_error_behind
from zhbert.fileio import atomic_write_bytes, atomic_write_text, unused_name, utc_stamp
from zhbert.write_errors import cannot_write, no_space, write_fix

SCHEMA = "zhbert-history"
VERSION = 1
STOP_EVENT = "stop"  # the checkpoint event of a run stopped by a signal (it resumes from it)
DIVERGED_EVENT = "diverged"  # train stopped the run: too many non-finite steps in a row
# what to do then (train's error, status, the dashboard): the same settings diverge again
DIVERGED_ADVICE = ("start it again (--force) with a lower train.lr, a longer train.warmup_steps "
                   "or train.precision=fp32; --resume would replay the same batches")


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
            raise cannot_write(self.path, exc, "nothing was written", self.path.parent) from None

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


MAX_WARNINGS = 10  # corrupt lines named in one warning; the rest are counted


def _first_lines(bad: Sequence[int], more: str) -> str:
    """The first MAX_WARNINGS of the line numbers ``bad``, comma-separated, then ``more``
    (formatted with how many were left out) when some were: the one rule of how many
    corrupt lines a message names, for the read's warning and the resume's."""
    left_out = len(bad) - MAX_WARNINGS
    return ", ".join(map(str, bad[:MAX_WARNINGS])) + (more.format(left_out) if left_out > 0 else "")


def bad_lines_warning(path: Path, bad: Sequence[int], why: Mapping[int, str] | None = None) -> str:
    """One warning for all the corrupt lines one read found (a file of random bytes has
    thousands, once one warning each), naming the first few; ``why``: the reason of each
    line that is JSON but not a valid record (``record_problem``), the first one said."""
    why = {n: why[n] for n in bad if n in why} if why else {}
    if len(bad) == 1:
        what = f"not a valid record ({why[bad[0]]})" if why else "not a JSON record (a corrupt line)"
        return f"{path}, line {bad[0]}: {what}; skipped it"
    shown = _first_lines(bad, ", ...")  # the count comes first, so the rest need no number
    if not why:
        return f"{path}: skipped {len(bad):,} corrupt lines that are not JSON records (lines {shown})"
    first = min(why)
    return (f"{path}: skipped {len(bad):,} corrupt lines that are not JSON records or hold fields "
            f"of the wrong type (lines {shown}; line {first}: {why[first]})")


# The fields whose types every reader relies on, as the writers write them (train.py
# _open_history: the header; trainloop._log and _eval, evaluate.evaluate: train and eval
# records; `zhbert eval` adds split and max_sequences). Only these: probe.jsonl's records,
# read by the same reader, hold strings of their own, and a field a newer writer adds must
# not make an older reader drop every record.
NUMBER_FIELDS = frozenset({
    "tokens", "elapsed", "lr", "loss", "mlm_loss", "mlm_acc", "nsp_loss", "nsp_acc", "sop_acc",
    "grad_norm", "tokens_per_s", "data_wait", "eval_mlm_acc", "eval_mlm_loss", "eval_ppl",
    "eval_nsp_acc", "eval_sop_acc", "eval_masked", "max_sequences"})
STEP_TYPES = ("train", "eval", "event")  # the record types that must have a step


def is_count(v: Any, least: int = 0) -> bool:
    """A whole number >= ``least`` (not a bool, not 3.0: a step as the writer writes it)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def _is_number(v: Any) -> bool:  # NaN and inf included: a diverging run logs them
    return v is None or isinstance(v, (int, float)) and not isinstance(v, bool)


_HEADER_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "total_steps": ("a whole number >= 0", is_count),
    "resumed_from": ("a whole number >= 0", is_count),
    "world_size": ("a whole number >= 1", lambda v: is_count(v, 1)),
    "tokens_per_step": ("a number", _is_number),
    "config": ("a JSON object", lambda v: isinstance(v, dict)),
    **{k: ("a string", lambda v: isinstance(v, str)) for k in ("run", "machine", "precision", "masking")},
}


def _show(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, allow_nan=True)
    return text if len(text) <= 40 else text[:37] + "..."


def record_problem(rec: dict[str, Any]) -> str | None:
    """Why a JSON object is not a record every reader can take as typed, or None (see the
    module docstring). A header's fields may be null or absent (older headers lack some)."""
    kind = rec.get("type")
    if "type" in rec and not isinstance(kind, str):
        return f"its type is {_show(kind)}, not a string"
    if kind == "header":
        for name, (what, ok) in _HEADER_FIELDS.items():
            if rec.get(name) is not None and not ok(rec[name]):
                return f"the header's {name} is {_show(rec[name])}, not {what}"
        return None
    if ("step" in rec or kind in STEP_TYPES) and not is_count(rec.get("step")):
        return (f"its step is {_show(rec['step'])}, not a whole number >= 0" if "step" in rec
                else f"a {kind} record without a step")
    # one pass over the fields, in the file's order (a set and a sort a record had made
    # reading a 200,000-record history take 1.36 s against 0.94 s unchecked)
    for name, v in rec.items():
        if name in NUMBER_FIELDS:
            if not _is_number(v):
                return f"its {name} is {_show(v)}, not a number or null"
        elif name.endswith("_ci95") and v is not None and not (  # "eval_mlm_acc_ci95": [lo, hi]
                isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))):
            return f"its {name} is {_show(v)}, not [low, high] or null"
    if kind == "event" and not isinstance(rec.get("kind"), str):
        return f"its event kind is {_show(rec.get('kind'))}, not a string"
    return None


_SAID: set[str] = set()


def warn_stderr(message: str) -> None:
    """Print a warning once per process: a command reads one history several times (analyze:
    the study, the planner, the run's state), and said each corrupt line three times."""
    if message in _SAID:
        return
    _SAID.add(message)
    print(f"zhbert: warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Chunk:
    """What one read of a JSONL file found."""
    records: list[dict[str, Any]]   # complete records, in file order
    starts: list[int]               # byte offset at which each record's line starts
    offset: int                     # just past the last complete line: where the next read starts
    size: int                       # the file's size when read
    reset: bool = False             # the file shrank or was replaced: records start at byte 0
    partial: bool = False           # an unterminated last line was left for the next read
    more: bool = False              # stopped at max_bytes: read again for the rest
    bad_lines: tuple[int, ...] = () # 1-based numbers of the corrupt lines skipped
    why: tuple[tuple[int, str], ...] = ()  # (line, record_problem) of those that were JSON


class HistoryReader:
    """Reads a JSONL file incrementally under the module's bad-line policy: each
    ``read()`` parses only the bytes appended since the previous one."""

    def __init__(self, path: str | Path, warn: Callable[[str], None] = warn_stderr):
        self.path = Path(path)
        self.warn = warn
        self.offset = 0       # bytes consumed (complete lines only)
        self.line = 0         # lines consumed
        self._ident: tuple[int, int] | None = None

    def read(self, max_bytes: int | None = None) -> Chunk:
        """New complete records; FileNotFoundError when the file is gone."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            reset = self._ident not in (None, (st.st_dev, st.st_ino)) or st.st_size < self.offset
            if reset:
                self.offset = self.line = 0
            self._ident = (st.st_dev, st.st_ino)
            f.seek(self.offset)
            want = st.st_size - self.offset
            data = f.read(want if max_bytes is None else min(want, max_bytes))
        end = data.rfind(b"\n") + 1  # 0: no complete line yet
        records, starts, bad, why = self._parse(data[:end])
        start = self.offset
        self.offset += end
        left = st.st_size - self.offset
        return Chunk(records, [start + s for s in starts], self.offset, st.st_size, reset,
                     partial=left > 0 and len(data) == want, more=left > 0 and len(data) < want and end > 0,
                     bad_lines=bad, why=why)

    def _parse(self, data: bytes):
        """(records, their line starts, bad line numbers, (line, why) of the bad JSON ones)."""
        records, starts, bad, why, pos = [], [], [], {}, 0
        for raw in data.split(b"\n")[:-1]:
            self.line += 1
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
                    rec = None
                problem = record_problem(rec) if isinstance(rec, dict) else None
                if isinstance(rec, dict) and problem is None:
                    records.append(rec)
                    starts.append(pos)
                else:
                    bad.append(self.line)
                    if problem:
                        why[self.line] = problem
            pos += len(raw) + 1
        if bad:
            self.warn(bad_lines_warning(self.path, bad, why))
        return records, starts, tuple(bad), tuple(why.items())


def _write_error(path: Path, exc: OSError, size: int) -> UserError:
    need = no_space(path.parent, size) if exc.errno == errno.ENOSPC else ""
    return UserError(f"could not append to {path}: {exc.strerror or exc}{need}; every record "
                     f"before this one is intact; {write_fix(exc, path.parent)}")


def read_history(path: str | Path, warn: Callable[[str], None] = warn_stderr) -> Chunk:
    """Every complete record of a JSONL history (see the module docstring for bad lines)."""
    try:
        return HistoryReader(path, warn).read()
    except FileNotFoundError:
        raise UserError(f"history not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a history file") from None


def positions_per_step(header: dict[str, Any]) -> float | None:
    """Padded positions per optimizer step, from a history header (``positions_per_step``,
    or ``tokens_per_step`` as headers name it; both mean positions)."""
    v = header.get("positions_per_step", header.get("tokens_per_step"))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def tokens_per_step(records: list[dict[str, Any]]) -> float | None:
    """Real (non-padding) tokens per optimizer step of a run, from its records' cumulative
    ``tokens``: the slope between the train records with the lowest and the highest step
    (the mean rate since the first log), or tokens / step with a single one. None without
    any. Records without a "type" (imported logs) count as train records."""
    pts = [(float(r["step"]), float(r["tokens"])) for r in records if r.get("type", "train") == "train"
           and isinstance(r.get("tokens"), (int, float)) and isinstance(r.get("step"), (int, float))
           and r["step"] > 0]
    if not pts:
        return None
    (s0, t0), (s1, t1) = min(pts), max(pts)  # by step: an imported log may be out of order
    rate = (t1 - t0) / (s1 - s0) if s1 > s0 else t1 / s1
    return rate if rate > 0 else None


def eval_points(records: Iterable[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """(step, value) of ``metric`` in the eval records, in step order, finite values only;
    a step evaluated twice (a run resumed before its last eval) keeps the later value."""
    out: dict[int, float] = {}
    for r in records:
        v = r.get(metric)
        if (r.get("type") == "eval" and isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v) and isinstance(r.get("step"), int)):
            out[r["step"]] = float(v)
    return sorted(out.items())


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Complete records of a history file: ``read_history(path).records``."""
    yield from read_history(path).records


def rewrite_for_resume(path: str | Path, step: int, warn: Callable[[str], None] = warn_stderr
                       ) -> tuple[int, Path | None]:
    """Drop train/eval/event records after `step` (resume from a checkpoint at `step`):
    (how many, the copy that keeps them or None).

    Records written after the checkpoint describe steps that will be re-run;
    keeping them would duplicate steps. The file is rewritten from the records read, so
    what it drops (those records; lines the reader could not parse: corrupt lines, a torn
    last line) would vanish with it: the file as it was is first kept beside it
    (``_keep_original``), as ``history.jsonl.dropped-<UTC time>``, or ``.corrupt-`` with
    lines it could not parse, which the warning names, so a user can still repair them.
    """
    path = Path(path)
    if not path.exists():
        return 0, None
    chunk = read_history(path, lambda message: None)  # the one warning below names the copy
    kept, dropped = [], 0
    for rec in chunk.records:
        if rec.get("type") != "header" and rec.get("step", 0) > step:
            dropped += 1
            continue
        kept.append(json.dumps(rec, ensure_ascii=False, allow_nan=True))
    copy = None
    if chunk.bad_lines or chunk.partial:
        copy = _keep_original(path, "corrupt")
        warn(f"resuming rewrites {path} without {_unparsed(chunk)}; the file as it was is "
             f"kept in {copy}: repair those lines there and copy them back by hand if you "
             "need them")
    elif dropped:
        copy = _keep_original(path, "dropped")
    atomic_write_text(path, "".join(line + "\n" for line in kept), path.parent)
    return dropped, copy


def _unparsed(chunk: Chunk) -> str:
    """What of a file its reader could not parse, in words: "lines 1, 7 (not JSON
    records) and an unfinished last line"."""
    bad = chunk.bad_lines
    shown = _first_lines(bad, " and {} more")
    what = "lines {} (not valid records)" if len(bad) > 1 else "line {} (not a valid record)"
    parts = [what.format(shown)] if bad else []
    return " and ".join(parts + (["an unfinished last line"] if chunk.partial else []))


KEPT_COPIES = ("corrupt", "dropped")  # history.jsonl.<why>-<UTC time>: --force deletes them too


def kept_copies(run_dir: Path) -> list[Path]:
    """The copies of a run's history that resumes kept (``_keep_original``)."""
    return sorted(p for why in KEPT_COPIES for p in run_dir.glob(f"history.jsonl.{why}-*"))


def _keep_original(path: Path, why: str) -> Path:
    """Copy `path` byte for byte to a new ``<name>.<why>-<UTC time>`` beside it (a name
    that no reader of ``history.jsonl`` picks up); returns the copy. Fails with a
    UserError, before anything else is written, when the copy cannot be made."""
    copy = unused_name(path.with_name(f"{path.name}.{why}-{utc_stamp()}"))
    try:
        atomic_write_bytes(copy, path.read_bytes())
    except (UserError, OSError) as exc:
        cause = os_error_behind(exc)
        if cause is None:
            raise
        raise UserError(f"could not keep a copy of {path} before rewriting it for the resume: "
                        f"{cause.strerror or cause}; nothing was changed; "
                        f"{write_fix(cause, path.parent)}") from None
    return copy
