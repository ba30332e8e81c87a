"""Where a run stands, computed from its directory: state (running / finished /
pruned / stopped), step, speed, ETA, the latest train and eval records, the last checkpoint,
and whether a running run is starved of CPU by other work.

The `status` command renders it; `train`'s closing line, the dashboard and the sweep
worker ask it too, so it lives here, below every command module.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zhbert.checkpoint import list_checkpoints
from zhbert.config import config_from_dict, run_config_sections
from zhbert.errors import UserError
from zhbert.history import DIVERGED_ADVICE, DIVERGED_EVENT, is_count, read_history
from zhbert.runlock import is_locked, lock_path
from zhbert.schedule import Schedule

# a run is starved when its recent speed is below this share of its own best, at the
# same sequence length, while something else competes for the cores. Not higher: a tiny
# run alone on a shared 2-core machine dipped to ~0.6 of its best for 5-8 logs at a time
STARVED_BELOW = 0.5
RECENT_LOGS = 5  # the train records "recent" is the median of


STOPPED = "stopped (continue with --resume)"
NOT_RESUMABLE = "stopped, and `zhbert train --resume` refuses it: "  # + train's reason


def run_state(run_dir: Path, total: int, last_step: int) -> str:
    """running / finished / pruned / stopped, from the run's pid marker and lock, the step
    of its newest checkpoint (``last_step``: finished only with the final one saved) and a
    sweep's pruned.json (a pruned trial is stopped for good: --resume is not the fix)."""
    marker = run_dir / "running.json"
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            if info.get("host") != socket.gethostname():
                return "running (on " + str(info.get("host")) + ")"
            os.kill(int(info["pid"]), 0)
            # a live pid may be another process that took a killed trainer's pid: the
            # trainer's lock says whether the run is held
            if is_locked(lock_path(run_dir / "train")):
                return "running"
        except (ProcessLookupError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError):
            pass  # the process died without cleaning up (it was killed), or the marker is garbled
        except PermissionError:
            return "running"
    if total and last_step >= total:
        return "finished"
    info = pruned(run_dir)
    return STOPPED if info is None else pruned_state(info)


def stopped_state(run_dir: Path, last_event: dict | None = None) -> str:
    """STOPPED where `zhbert train --resume` would continue the run; else NOT_RESUMABLE and
    train's own reason and advice (a history without its config.json: advising --resume
    there sent users into an exit 2). rundir.check_resumable is the one home of what
    --resume needs, so ask it, not a copy. A run whose history ends in train's divergence
    stop (``last_event``) is "diverged": --resume would diverge again."""
    from zhbert.rundir import check_resumable
    if last_event and last_event.get("kind") == DIVERGED_EVENT:
        step = last_event.get("step")
        return f"diverged{f' at step {step:,}' if isinstance(step, int) else ''}: {DIVERGED_ADVICE}"
    try:
        check_resumable(run_dir)
    except UserError as exc:
        return NOT_RESUMABLE + str(exc).removeprefix("--resume: ")
    return STOPPED


def pruned(run_dir: Path) -> dict[str, Any] | None:
    """The sweep's pruned.json of a trial it pruned (zhbert.sweep.worker writes it: pruner,
    step, value, and a ForecastPruner's reason), {} when unreadable; None when not pruned."""
    try:
        info = json.loads((Path(run_dir) / "pruned.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # being written, or corrupt: pruned all the same
        return {}
    return info if isinstance(info, dict) else {}


def pruned_state(info: dict[str, Any]) -> str:
    """'pruned by the sweep at step 75: <why>', from a pruned.json (``pruned``)."""
    step, why = info.get("step"), info.get("reason")
    at = f" at step {step:,}" if is_count(step) else ""
    if not why and info.get("pruner"):
        why = f"{info['pruner']}" + (f", value {info['value']:.4g}"
                                     if isinstance(info.get("value"), (int, float)) else "")
    return f"pruned by the sweep{at}" + (f": {why}" if why else "")


def latest(records: list[dict[str, Any]], into: dict[str, dict] | None = None) -> dict[str, dict]:
    """The last record of each type ("header", "train", "eval", "event"); ``into`` is
    updated in place, so a reader that follows a file keeps it current from new records."""
    last = {} if into is None else into
    for rec in records:
        last[rec.get("type")] = rec
    return last


def average_tokens_per_s(tokens: float | None, seconds: float | None) -> float | None:
    """A run's average speed: its real tokens over its training seconds (summed across
    resumes), from its latest record. The one definition `status`, `compare` and the
    dashboard show; a log interval's tokens_per_s swings with evals and other load."""
    return tokens / seconds if tokens and seconds and seconds > 0 else None


def not_a_run(run_dir: Path) -> UserError:
    """Why ``run_dir`` (without history.jsonl) is no run, and what to run instead."""
    from zhbert.run import is_run_dir, not_a_run_dir

    if not run_dir.exists():
        return UserError(f"{run_dir} does not exist; give a run directory made by "
                         "`zhbert train --data DATA --out RUN`")
    if run_dir.is_file():  # its history.jsonl read "not a zhbert run (no history.jsonl)"
        parent = run_dir.parent
        return UserError(f"{run_dir} is a file, not a run directory: give "
                         + (f"the run it is in, {parent}" if (parent / "history.jsonl").is_file()
                            else "the folder `zhbert train --out RUN` made"))
    if is_run_dir(run_dir):  # a run's config (not an export's), no history: killed as it started
        return UserError(f"{run_dir} holds a run's config.json but no history.jsonl: its training "
                         "stopped before its first step; start it again with `zhbert train --data "
                         f"DATA --out {run_dir} --resume` (or --force for a new run there)")
    return not_a_run_dir(run_dir) or UserError(
        f"{run_dir} is not a zhbert run (no history.jsonl); start one with "
        "`zhbert train --data DATA --out RUN`")


def collect(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    path = run_dir / "history.jsonl"
    if not path.exists():
        raise not_a_run(run_dir)
    chunk = read_history(path)
    records = chunk.records
    return summarize(run_dir, latest(records), [r for r in records if r.get("type") == "train"],
                     bad_lines=len(chunk.bad_lines))


def history_note(run_dir: Path, bad_lines: int, ckpt_step: int | None) -> str:
    """Why a history without a single record tells nothing, and where the run stands
    from its checkpoints."""
    path = run_dir / "history.jsonl"
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if size == 0:
        what = f"{path} is empty (0 bytes)"
    elif bad_lines:
        what = f"{path} has no readable record (only {bad_lines:,} corrupt line{'s' * (bad_lines > 1)})"
    else:
        what = f"{path} has no complete record yet ({size:,} bytes without a line end)"
    where = (f"its last checkpoint is step {ckpt_step:,}" if ckpt_step is not None
             else "no checkpoint either")
    return f"{what}: no header, train or eval record to report; {where}"


def configured_steps(run_dir: Path, key: str = "steps") -> int:
    """train.steps (or another train ``key``) from the run's config.json, for a run whose
    history lost its header; 0 when that is unreadable too (status reports what it can, it
    does not fail). Read by run_config_sections (`--config RUN`'s reader), not open_run,
    which also demands the data section and defaults a missing train.steps."""
    try:
        steps = run_config_sections(run_dir / "config.json")[0]["train"][key]
    except (OSError, UserError, KeyError, TypeError):  # read_json: missing/corrupt -> UserError
        return 0
    return steps if is_count(steps, 1) else 0


def logged_gap(run_dir: Path, ckpt_step: int) -> str | None:
    """``history_gap`` from the history on disk: a resume from ``ckpt_step`` tells of it (it
    had said "0 history records after it dropped" and left the gap without a word)."""
    records = read_history(run_dir / "history.jsonl").records
    return history_gap(run_dir, last_step(records), ckpt_step, [r for r in records if r.get("type") == "header"])


def last_step(records: list[dict]) -> int:
    """The last step any record names: train, eval and events (a checkpoint's, a skipped
    step's: a step skipped as non-finite at a log step writes no train record)."""
    steps = [r.get("step") for r in records]
    return max((int(v) for v in steps if isinstance(v, (int, float)) and not isinstance(v, bool)), default=0)


def _log_interval(run_dir: Path, headers: list[dict]) -> int:
    """The largest log interval the run had: config.json's and its headers' (a resume may
    change train.log_every, which the config hash leaves out)."""
    found = [configured_steps(run_dir, "log_every")] + [
        h["config"].get("train", {}).get("log_every") for h in headers if isinstance(h.get("config"), dict)]
    return max((v for v in found if is_count(v, 1)), default=1)


def history_gap(run_dir: Path, last: int, ckpt_step: int | None, headers: list[dict]) -> str | None:
    """A history whose records end more than a log interval before the newest checkpoint was
    cut (or restored from an older copy): a checkpoint is saved only after the records
    before it, and its event follows (a stop between logs checkpoints less than an interval
    past the last). Status had read such a run "[finished]", held-out "-", without a word."""
    # the config is read only past the last record (the dashboard polls this)
    if ckpt_step is None or ckpt_step <= last or ckpt_step - last < _log_interval(run_dir, headers):
        return None
    return (f"warning: {run_dir / 'history.jsonl'} ends at step {last:,}, yet the run was "
            f"checkpointed at step {ckpt_step:,}: its records after step {last:,} were lost "
            "(the file was cut, or restored from an older copy); --resume goes on from the "
            "checkpoint and leaves that gap")


def _checkpointed(run_dir: Path, ckpts: list, logged: int) -> int:
    """The step a --resume goes on from, for run_state: the newest checkpoint's; a history
    kept or copied without its checkpoints goes by its last log. A checkpoints/ folder with
    none in it is a run whose saves failed (a full disk at the final one read "finished",
    while --resume started it over at step 0) or were deleted: step 0."""
    if ckpts:
        return ckpts[-1].step
    return 0 if (run_dir / "checkpoints").is_dir() else logged


def summarize(run_dir: Path, last: dict[str, dict],
              train: list[dict] | None = None, bad_lines: int = 0) -> dict[str, Any]:
    """Where the run stands, from the last header, train and eval records (``latest``);
    with all its ``train`` records, whether a running run is starved (``starvation``).
    ``history_note`` says why there is nothing to report when the history holds no record
    (empty, or ``bad_lines`` corrupt lines only)."""
    header, last_train, last_eval = (last.get(k, {}) for k in ("header", "train", "eval"))
    total = int(header.get("total_steps") or 0) or (0 if header else configured_steps(run_dir))
    logged = int(last_train.get("step", 0))
    ckpts = list_checkpoints(run_dir)
    # a stop (Ctrl-C, SIGTERM) checkpoints the step it finished, which is often no log
    # step: the run got to that checkpoint (--resume goes on after it), not to its last log
    step = max(logged, ckpts[-1].step if ckpts else 0)
    tps = last_train.get("tokens_per_s") or 0
    elapsed = last_train.get("elapsed") or 0.0  # training seconds, summed across resumes
    eta = (total - step) * elapsed / logged if logged > 0 and total > step else 0.0
    average = average_tokens_per_s(last_train.get("tokens"), elapsed)
    # finished when the final checkpoint is saved: a run killed after its last log and
    # before that save read "finished", and --resume retrains from the checkpoint before
    state = run_state(run_dir, total, _checkpointed(run_dir, ckpts, logged))
    if state == STOPPED:
        state = stopped_state(run_dir, last.get("event"))
    starved = (starvation(train, header, machine_competition(run_dir))
               if train and state == "running" else None)
    return {"run": str(run_dir), "state": state, "step": step,
            "total_steps": total, "percent": 100.0 * step / total if total else None,
            "train": last_train, "eval": last_eval, "tokens_per_s": tps,
            "average_tokens_per_s": average,
            "eta_seconds": eta, "last_checkpoint": ckpts[-1].step if ckpts else None,
            "precision": header.get("precision"), "machine": header.get("machine"),
            "starved": starved.to_dict() if starved else None,
            "starved_advice": starved.advice() if starved else None,
            "history_note": None if last else history_note(run_dir, bad_lines, ckpts[-1].step if ckpts else None),
            "history_gap": history_gap(run_dir, last_step(list(last.values())),
                                       ckpts[-1].step if ckpts else None, [header]) if last else None}


@dataclass(frozen=True)
class Competition:
    """What else wants this machine's cores now: the 1-minute load average (this run's
    own threads included), the cores this process may use, other zhbert trainings."""
    load: float
    cores: int
    other_trainings: int

    @property
    def competes(self) -> bool:
        return self.other_trainings > 0 or self.load > self.cores


def machine_competition(run_dir: Path) -> Competition:
    from zhbert.threads import available_cores, live_trainers

    me = str(Path(run_dir).resolve())
    others = sum(1 for t in live_trainers() if t.run != me)
    return Competition(os.getloadavg()[0], available_cores(), others)


@dataclass(frozen=True)
class Starved:
    """A running run training well below its own best speed while other work competes."""
    recent_tokens_per_s: float   # median of the last RECENT_LOGS train records
    best_tokens_per_s: float     # 90th percentile of the earlier ones at the same length
    competition: Competition
    threads: int | None = None   # per process, as its header records it (None: not recorded)
    processes: int = 1           # the run's processes (torchrun), each of them registered

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def advice(self) -> str:
        """Why, and what to do: zhbert trainings sharing the cores is by design (each
        started without --threads takes cores / trainings); other work is not."""
        c = self.competition
        why = []
        if c.other_trainings:
            n = c.other_trainings
            why.append(f"{n} other zhbert training{'s run' if n > 1 else ' runs'} on the "
                       f"{c.cores} cores (those started without --threads split the cores with "
                       "this one, which speeds up again when they end)")
        if c.load > c.cores:
            # each process's share of the cores; fewer threads only where that is below what
            # it runs with (a 1-thread run was told to go on with --threads 2)
            share = max(1, c.cores // (c.other_trainings + self.processes))
            then = (f"continue it with fewer threads: zhbert train ... --resume --threads {share}"
                    if self.threads is not None and share < self.threads
                    else "continue it with --resume once the load is gone")
            why.append(f"other work keeps the load at {c.load:.1f} on {c.cores} cores: stop it, "
                       f"or stop this run (Ctrl-C saves a checkpoint) and {then}")
        return (f"starved: {self.recent_tokens_per_s:,.0f} tokens/s, "
                f"{self.recent_tokens_per_s / self.best_tokens_per_s:.0%} of its best "
                f"{self.best_tokens_per_s:,.0f}; " + "; ".join(why))


def length_phase_end(header: dict) -> int:
    """The last step of the length warm-up (data.warmup_len: short sequences, another
    speed); 0 without one. Schedule.short_steps is the one home of that rule (the
    loader's switch, trainparts.length_warmup, asks it too), so ask it, not a copy."""
    try:
        return Schedule.from_config(config_from_dict(header.get("config") or {})).short_steps
    except (TypeError, AttributeError, UserError):
        # a config this version cannot read: no phase to tell apart; `status` and the
        # analysis (analysis.history._regimes) must not fail on it
        return 0


def starvation(train: list[dict], header: dict, competition: Competition) -> Starved | None:
    """Starved when the recent speed is under STARVED_BELOW of the 90th percentile of the
    run's earlier speeds at the same sequence length, and something competes; None when
    it is not, or when there are too few records to say."""
    if not competition.competes:
        return None
    end = length_phase_end(header)
    last_step = train[-1].get("step", 0)
    same = [r["tokens_per_s"] for r in train if r.get("tokens_per_s")
            and (r.get("step", 0) > end) == (last_step > end)]
    if len(same) < 2 * RECENT_LOGS:
        return None
    recent = statistics.median(same[-RECENT_LOGS:])
    best = statistics.quantiles(same[:-RECENT_LOGS], n=10)[-1]
    if recent >= STARVED_BELOW * best:
        return None
    from zhbert.threads import recorded_threads
    world = header.get("world_size")  # the reader checked it: a whole number >= 1, or absent
    return Starved(recent, best, competition, recorded_threads(header), world or 1)
