"""Load a training history from any of the formats a run leaves behind.

``load_history(path)`` detects the format and returns a ``History``: one ``Series``
per metric (x as step, and tokens / seconds where the source records them) plus
``Meta`` (source format, run name, measured throughput) and ``notes`` that say
what was cleaned up (sorted steps, dropped duplicates, an unterminated last line,
corrupt lines skipped). zhbert's JSONL files are read by ``zhbert.history.read_history``
(its bad-line policy: a partial last line is left silently, a corrupt line is warned
about and skipped). A metric recorded with ``<metric>_ci95`` [low, high] beside it
(the held-out accuracy's Wilson interval) keeps it as ``Series.ci95``.

Formats:
  zhbert     run directory or history.jsonl ("zhbert-history" v1, written by the trainer);
             a checkpoint_eval.jsonl beside it adds held-out metrics the history lacks
  ckpt_eval  checkpoint_eval.jsonl from `zhbert eval`
  seed       the seed study's JSON (parallel lists: steps, mlm_acc, nsp_acc, loss, lr)
  hf         Hugging Face Trainer trainer_state.json (log_history)
  tensorboard  an events.out.tfevents.* file or one run's directory holding them (a folder
             of several runs is refused, not merged)
  csv        a CSV file with a header; a "step" column and one column per metric
(seed, hf, tensorboard and csv are read in ``foreign_history``)

Values are kept as recorded (NaN included, so anomaly detection can see them);
``Series.finite()`` drops non-finite points for fitting and says how many.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from zhbert.errors import UserError
from zhbert.fileio import read_json
from zhbert.history import positions_per_step, read_history, tokens_per_step, warn_stderr

X_AXES = ("step", "tokens", "seconds", "characters")
# fields of zhbert train/eval records that are bookkeeping, not metrics
_NOT_METRICS = {"type", "step", "tokens", "elapsed", "eval_masked", "tokens_per_s",
                "data_wait", "max_sequences"}  # max_sequences: zhbert eval's sequence cap
CI_SUFFIX = "_ci95"  # "eval_mlm_acc_ci95": [low, high] is eval_mlm_acc's 95% interval


@dataclass(frozen=True)
class Series:
    """One metric over training. Arrays are (N,), sorted by step, steps unique."""
    name: str
    step: np.ndarray
    y: np.ndarray
    tokens: np.ndarray | None = None
    seconds: np.ndarray | None = None
    ci95: np.ndarray | None = None   # (N, 2) recorded 95% interval per point, NaN where none
    characters: np.ndarray | None = None  # text seen: tokens x the data's characters per token

    def __len__(self) -> int:
        return len(self.step)

    def x(self, axis: str = "step") -> np.ndarray:
        if axis not in X_AXES:
            raise UserError(f"unknown x axis {axis!r}; use one of {', '.join(X_AXES)}")
        values = {"step": self.step, "tokens": self.tokens, "seconds": self.seconds,
                  "characters": self.characters}[axis]
        if axis == "characters" and values is None:
            raise UserError(f"metric {self.name!r} has no characters: they come from a run "
                            "directory's data (characters per token); give run directories, or "
                            "use --x tokens")
        if values is None or not np.all(np.isfinite(values)):
            raise UserError(f"metric {self.name!r} has no {axis} recorded for every point; "
                            "use --x step")
        return values

    def finite(self) -> tuple["Series", int]:
        """This series without NaN/inf values, and how many points were dropped."""
        keep = np.isfinite(self.y)
        if keep.all():
            return self, 0
        return self.select(keep), int((~keep).sum())

    def select(self, keep: np.ndarray) -> "Series":
        """The points where the boolean mask ``keep`` is true (every array cut alike)."""
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return replace(self, step=self.step[keep], y=self.y[keep], tokens=pick(self.tokens),
                       seconds=pick(self.seconds), ci95=pick(self.ci95),
                       characters=pick(self.characters))


def with_characters(history: "History", characters_per_token: float) -> "History":
    """``history`` with every series' characters axis: tokens x ``characters_per_token`` (a
    character-level Chinese vocabulary reads ~1 character a token, English WordPiece ~4)."""
    def add(s: Series) -> Series:
        return s if s.tokens is None else replace(s, characters=s.tokens * characters_per_token)
    return replace(history, series={k: add(s) for k, s in history.series.items()})


@dataclass(frozen=True)
class Meta:
    source: str                      # format name, see module docstring
    path: str
    run: str
    tokens_per_step: float | None = None     # real (non-padding) tokens per step
    tokens_per_s: float | None = None
    seconds_per_step: float | None = None
    events: tuple[dict, ...] = ()    # zhbert "event" records (nonfinite_loss, rollback, ...)
    positions_per_step: float | None = None  # padded positions per step (batch x max_len ...)
    regimes: tuple[int, ...] = ()    # steps after which the batches changed shape (length switch)
    # the masking rule of each start of a zhbert run, in order (data.MASKING_RULES; None
    # where a header did not record it): another rule means other masks, held-out ones too
    masking: tuple[str | None, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "path": self.path, "run": self.run,
                "tokens_per_step": self.tokens_per_step, "positions_per_step": self.positions_per_step,
                "tokens_per_s": self.tokens_per_s,
                "seconds_per_step": self.seconds_per_step, "events": list(self.events),
                "regimes": list(self.regimes), "masking": list(self.masking)}


@dataclass(frozen=True)
class History:
    series: dict[str, Series]
    meta: Meta
    default_metric: str
    default_reason: str
    notes: tuple[str, ...] = field(default=())

    def metric(self, name: str | None = None) -> Series:
        name = name or self.default_metric
        if name not in self.series:
            err = UserError(f"metric {name!r} is not in {self.meta.path}; it has: "
                            f"{', '.join(sorted(self.series)) or 'no metrics'}")
            err.option = "--metric"
            raise err
        return self.series[name]

    @property
    def switch_text(self) -> str:
        """" after the switch to full-length sequences at step N" ("" without a switch): how
        every message says where the curve families' points start."""
        if not self.meta.regimes:
            return ""
        return f" after the switch to full-length sequences at step {self.meta.regimes[-1]:,}"

    def after_switch(self, s: Series) -> Series:
        """The points of ``s`` after the last change of batch shape (``Meta.regimes``,
        zhbert's length switch); all of them without one."""
        return s.select(s.step > self.meta.regimes[-1]) if self.meta.regimes else s

    def curve_part(self, s: Series) -> Series:
        """The points of ``s`` the schedule-free curve families may fit: ``after_switch``. A
        family is one smooth curve; across the switch it fitted the short-sequence phase and
        the fall after it as one (the demo's analyze: 0.4 "at step 1,825", the law: a
        5,998-step run). Raises UserError while too few points follow the switch."""
        from zhbert.analysis.curves import MIN_POINTS
        part = self.after_switch(s)
        if self.meta.regimes and len(part) < MIN_POINTS:
            raise UserError(f"a learning curve of {s.name} is fitted{self.switch_text} (one smooth "
                            f"curve cannot span it); {len(part)} of the {MIN_POINTS} points it "
                            "needs are there so far")
        return part

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta.to_json(), "metrics": {k: len(v) for k, v in self.series.items()},
                "default_metric": self.default_metric, "default_reason": self.default_reason,
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- records

Record = dict[str, Any]  # {"step": int, optional "tokens"/"seconds", metric: value, ...}


def _num(v: Any) -> float:
    """A metric value as float; None/strings that are not numbers become NaN."""
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _build_series(records: Iterable[Record], names: Iterable[str], notes: list[str]) -> dict[str, Series]:
    """Turn step-keyed records into sorted, de-duplicated series (the last duplicate wins)."""
    out: dict[str, Series] = {}
    records, wanted = list(records), set(names)
    # in the order the records first name them: a set's order changes with PYTHONHASHSEED,
    # which reordered analysis.json and the report's tables from one run to the next
    for name in [k for k in dict.fromkeys(k for r in records for k in r) if k in wanted]:
        rows = [r for r in records if name in r and r[name] is not None and "step" in r]
        if not rows:
            continue
        steps = np.array([_num(r["step"]) for r in rows])
        if not np.all(np.isfinite(steps)):
            raise UserError(f"metric {name!r} has a missing or non-numeric step; fix the file")
        # stable sort, then keep the LAST occurrence of each step (a rollback/resume rewrites it)
        order = np.argsort(steps, kind="stable")
        rows, steps = [rows[i] for i in order], steps[order]
        last = np.r_[steps[1:] != steps[:-1], True]
        if not np.all(np.diff(order) > 0):
            notes.append(f"{name}: steps were not in order; sorted them")
        if not last.all():
            notes.append(f"{name}: {int((~last).sum())} duplicated step(s); kept the last value of each")
        rows = [r for r, keep in zip(rows, last) if keep]
        col = lambda key: np.array([_num(r.get(key)) for r in rows])  # noqa: E731
        tokens, seconds, ci = col("tokens"), col("seconds"), _ci_column(rows, name + CI_SUFFIX)
        out[name] = Series(name, steps[last], col(name),
                           tokens if np.isfinite(tokens).all() else None,
                           seconds if np.isfinite(seconds).all() else None,
                           ci if np.isfinite(ci).any() else None)
    return out


def _ci_column(rows: list[Record], key: str) -> np.ndarray:
    """(N, 2) intervals recorded under ``key``; NaN rows where a record has none."""
    def pair(v: Any) -> tuple[float, float]:
        ok = isinstance(v, (list, tuple)) and len(v) == 2
        return (_num(v[0]), _num(v[1])) if ok else (math.nan, math.nan)
    return np.array([pair(r.get(key)) for r in rows], dtype=float).reshape(len(rows), 2)


def _pick_default(series: dict[str, Series]) -> tuple[str, str]:
    # the accuracy and loss by plan_runs' rule, the law's: analyze took a Trainer's
    # eval_accuracy for "no MLM accuracy" while predict's law forecast it
    from zhbert.analysis.plan_runs import first_metric
    from zhbert.metrics import HELD_OUT_ACC, LOSS_METRICS
    held = first_metric(series, HELD_OUT_ACC)
    if held is not None:
        what = "MLM accuracy" if held == "eval_mlm_acc" else "accuracy"
        return held, (f"held-out {what} ({held}): measured on a fixed "
                      "held-out set, so it is comparable across steps")
    if "mlm_acc" in series:
        why = "no held-out MLM accuracy with 2+ points in this history"
        return "mlm_acc", (f"training-batch MLM accuracy (mlm_acc), because {why}: "
                           "noisy and optimistic (the seed's measure)")
    loss = first_metric(series, LOSS_METRICS) or next((n for n in LOSS_METRICS if n in series), None)
    if loss is not None:
        return loss, f"no MLM accuracy recorded; using {loss}"
    if series:
        name = sorted(series)[0]
        return name, f"no MLM accuracy or loss recorded; using the first metric, {name}"
    raise UserError("the history has no metrics with a step; nothing to analyse")


def build_history(records: list[Record], names: Iterable[str], meta: Meta, notes: list[str],
                  metric: str | None) -> History:
    series = _build_series(records, names, notes)
    if not series:
        raise UserError(f"{meta.path} holds no data points; is the run started? "
                        "(an empty history cannot be analysed)")
    default, reason = _pick_default(series)
    if metric is not None:
        default, reason = metric, "chosen with --metric"
    if meta.tokens_per_step is None:  # Trainer's num_input_tokens_seen, a CSV "tokens" column
        counted = [{"step": _num(r.get("step")), "tokens": _num(r["tokens"])} for r in records
                   if "tokens" in r and math.isfinite(_num(r["tokens"])) and math.isfinite(_num(r.get("step")))]
        meta = replace(meta, tokens_per_step=tokens_per_step(counted))
    history = History(series, meta, default, reason, tuple(notes))
    history.metric(metric)  # fail early, naming what is available
    return history


# ----------------------------------------------------------------------------- formats

def _being_written(path: Path) -> bool:
    """Whether a trainer holds the run's lock, or a writer (eval, probe) the file's own."""
    from zhbert.runlock import is_locked, lock_path
    return is_locked(lock_path(path.parent / "train")) or is_locked(lock_path(path))


def _read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    """Records of a zhbert JSONL file (zhbert.history's policy); notes say what was left out."""
    chunk = read_history(path)
    if chunk.partial and _being_written(path):
        notes.append(f"{path.name}: ignored an unterminated last line (the run is writing it)")
    elif chunk.partial:  # nobody is writing it: a record cut by a kill or a full disk, lost
        cut = (f"{path}: its last line is cut off and no zhbert process is writing it: that "
               "record was lost (a kill or a full disk mid-write); the records before it are read. "
               "`zhbert train --resume` on the run repairs the file")
        warn_stderr(cut)
        notes.append(cut)
    if chunk.bad_lines:
        lines = ", ".join(map(str, chunk.bad_lines[:10])) + (" ..." if len(chunk.bad_lines) > 10 else "")
        notes.append(f"{path.name}: skipped {len(chunk.bad_lines)} corrupt line(s) (line {lines})")
    return chunk.records


def _zhbert_records(lines: list[dict]) -> tuple[list[Record], set[str], dict]:
    """Records and metric names from zhbert history lines; also the last header."""
    records, names, header = [], set(), {}
    for obj in lines:
        kind = obj.get("type")
        if kind == "header":
            header = obj
        elif kind in ("train", "eval") or (kind is None and "step" in obj):
            rec = {k: v for k, v in obj.items() if k not in ("elapsed",)}
            rec["seconds"] = obj.get("elapsed")
            names |= {k for k, v in obj.items() if k not in _NOT_METRICS and
                      (v is None or isinstance(v, (int, float)) and not isinstance(v, bool))}
            records.append(rec)
    return records, names, header


def _zhbert_throughput(lines: list[dict], header: dict) -> dict[str, float | None]:
    train = [o for o in lines if o.get("type") == "train"]
    tps = [float(o["tokens_per_s"]) for o in train if isinstance(o.get("tokens_per_s"), (int, float))]
    sec = [(o["step"], o["elapsed"]) for o in train if isinstance(o.get("elapsed"), (int, float))]
    sps = None
    if len(sec) >= 2 and sec[-1][0] > sec[0][0]:
        # slope over the whole run: includes evals and checkpoints, which a budget must too
        sps = (sec[-1][1] - sec[0][1]) / (sec[-1][0] - sec[0][0])
    return {"tokens_per_step": tokens_per_step(train), "positions_per_step": positions_per_step(header),
            "tokens_per_s": float(np.median(tps)) if tps else None, "seconds_per_step": sps}


def _regimes(header: dict) -> tuple[int, ...]:
    """The step after which a zhbert run's batches go from short to full length (its
    config's sequence-length warm-up: runstate.length_phase_end); none if it has none."""
    from zhbert.runstate import length_phase_end
    short = length_phase_end(header)
    return (short,) if short else ()


def load_zhbert(path: Path, metric: str | None) -> History:
    run_dir = path if path.is_dir() else path.parent
    hist = run_dir / "history.jsonl" if path.is_dir() else path
    notes: list[str] = []
    lines = _read_jsonl(hist, notes)
    ckpt = run_dir / "checkpoint_eval.jsonl"
    extra = _read_jsonl(ckpt, notes) if ckpt.exists() and ckpt != hist else []
    return zhbert_history(lines, extra, path, metric, notes)


def zhbert_history(lines: list[dict], ckpt_lines: list[dict], path: Path, metric: str | None = None,
                   notes: list[str] | None = None) -> History:
    """A History from zhbert records already read: ``lines`` of history.jsonl and
    ``ckpt_lines`` of the checkpoint_eval.jsonl beside it (the dashboard keeps both in memory)."""
    notes = [] if notes is None else notes
    run_dir = path if path.is_dir() else path.parent
    records, names, header = _zhbert_records(lines)
    if ckpt_lines:
        extra, extra_names, _ = _zhbert_records(ckpt_lines)
        # the history's own eval records win; checkpoint evals only fill in what is missing
        new = extra_names - names
        keep = new | {n + CI_SUFFIX for n in new} | {"step", "tokens", "seconds"}
        records += [{k: v for k, v in r.items() if k in keep} for r in extra]
        names |= new
        if new:
            notes.append(f"added {', '.join(sorted(new))} from checkpoint_eval.jsonl")
    run = header.get("run") or run_dir.name
    masking = _masking(lines, notes)
    meta = Meta("zhbert", str(path), run, **_zhbert_throughput(lines, header),
                events=tuple(o for o in lines if o.get("type") == "event"), regimes=_regimes(header),
                masking=masking)
    return build_history(records, names, meta, notes, metric)


def _masking(lines: list[dict], notes: list[str]) -> tuple[str | None, ...]:
    """The masking rule of each start (header) of a run, consecutive repeats merged; a note
    when a resume changed it (train._warn_masking said so at the time). A header without
    a rule (before the rule was recorded) is not guessed at."""
    rules = [o.get("masking") for o in lines if o.get("type") == "header"]
    out = tuple(r for i, r in enumerate(rules) if i == 0 or r != rules[i - 1])
    known = [r for r in out if r is not None]
    if len(set(known)) > 1:
        notes.append("a resume changed the masking rule (" + " -> ".join(known) + "): the "
                     "held-out accuracy after it is measured on other masked slots")
    return out


def run_labels(names: Sequence[str]) -> list[str]:
    """Names that tell runs apart, for compare, predict and backtest alike: each run's own
    name, a repeat numbered ("run", "run (2)"): two demo runs both named "run" in their
    headers read "runs: run, run" in predict."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def load_ckpt_eval(path: Path, metric: str | None) -> History:
    notes: list[str] = []
    records, names, _ = _zhbert_records(_read_jsonl(path, notes))
    return build_history(records, names, Meta("ckpt_eval", str(path), path.parent.name), notes, metric)


# ----------------------------------------------------------------------------- detection

def _sniff_jsonl(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return "zhbert"  # let the reader produce the precise error
                return "zhbert" if isinstance(obj, dict) and "type" in obj else "ckpt_eval"
    return "zhbert"


def load_history(path: str | Path, metric: str | None = None) -> History:
    """Load any supported history (see module docstring); ``metric`` picks the default series."""
    # other tools' formats live in foreign_history, which builds on this module's types
    from zhbert.analysis.foreign_history import load_csv, load_hf, load_seed, load_tensorboard
    from zhbert.run import not_a_run_dir
    path = Path(path)
    if not path.exists():
        raise UserError(f"history not found: {path} (give a run directory, history.jsonl, "
                        "trainer_state.json, TensorBoard events, CSV or the seed's JSON)")
    if path.is_dir():
        if (path / "history.jsonl").exists():
            return load_zhbert(path, metric)
        if (path / "trainer_state.json").exists():
            return load_history(path / "trainer_state.json", metric)
        if (path / "checkpoint_eval.jsonl").exists():
            return load_ckpt_eval(path / "checkpoint_eval.jsonl", metric)
        other = not_a_run_dir(path)  # "no TensorBoard event files" told nothing there
        if other:
            raise other
        return load_tensorboard(path, metric)
    if "tfevents" in path.name:
        return load_tensorboard(path, metric)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        kind = _sniff_jsonl(path)
        return load_zhbert(path, metric) if kind == "zhbert" else load_ckpt_eval(path, metric)
    if suffix == ".csv":
        return load_csv(path, metric)
    if suffix == ".json":
        obj = read_json(path, "history")
        if isinstance(obj, dict) and "log_history" in obj:
            return load_hf(obj, path, metric)
        if isinstance(obj, dict) and isinstance(obj.get("steps"), list):
            return load_seed(obj, path, metric)
        raise UserError(f"{path}: unknown JSON history (expected a Trainer trainer_state.json "
                        "with log_history, or parallel lists with 'steps')")
    raise UserError(f"{path}: unknown history format; give a run directory, history.jsonl, "
                    "checkpoint_eval.jsonl, trainer_state.json, events.out.tfevents.*, .csv or .json")
