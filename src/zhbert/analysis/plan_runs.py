"""The runs the planner (forecast.py) fits: each one's loss, accuracy, schedule and setup.

``load_run(path)`` reads a run (any format analysis/history.py reads) into a ``RunData``:
its held-out loss at its eval steps with the accuracy measured at the same steps (a point
whose loss or accuracy is NaN/inf is left out, as one never recorded), the lr schedule
(from a zhbert config, or inferred from the logged lr), what the run's setup was (config,
vocabulary) and which training run it is (``RunData.identity``: two paths of one run are
refused, ``refuse_copies``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zhbert.analysis.history import History, load_history, run_labels
from zhbert.analysis.runcurve import RunCurve
from zhbert.errors import UserError
from zhbert.metrics import ACC_METRICS, HELD_OUT_ACC, LOSS_METRICS
from zhbert.schedule import Schedule, infer_schedule

# which series are a history's loss and accuracy: one rule (``first_metric``,
# ``loss_and_accuracy``) for the law's pair here and analyze's default metric (history.py)
LR_SERIES = ("lr", "learning_rate")


class NoLearningRate(UserError):
    """The history records no learning rate and no config: no schedule-aware law."""


@dataclass(frozen=True)
class RunData:
    curve: RunCurve
    acc: np.ndarray | None           # accuracy at curve.steps (same metric family as the loss)
    loss_metric: str
    acc_metric: str | None
    schedule_source: str             # "config" | "logged lr"
    setup: dict[str, Any]            # model / data / batch, to warn when runs differ
    tokens_per_step: float | None    # REAL tokens (not padded positions)
    seconds_per_step: float | None
    history: History | None = field(repr=False, default=None)
    identity: tuple[str, ...] | None = None  # which training run this is (``_identity``)


def _header(path: Path) -> dict[str, Any]:
    """The zhbert history header (config, total_steps), or the Trainer state's max_steps."""
    from zhbert.fileio import read_json
    from zhbert.history import iter_records
    if path.is_dir():
        for name in ("history.jsonl", "trainer_state.json"):
            if (path / name).exists():
                return _header(path / name)
        return _run_config(path)
    if path.suffix == ".jsonl":
        for rec in iter_records(path):
            if rec.get("type") == "header":
                return rec
        return {}
    if path.name.startswith("events.out.tfevents"):
        return _run_config(path.parent)
    if path.name == "trainer_state.json":
        obj = read_json(path, "trainer state")
        return {"total_steps": obj.get("max_steps")} if isinstance(obj, dict) else {}
    return {}


def _identity(header: dict[str, Any]) -> tuple[str, ...] | None:
    """What names one training run in a zhbert history header: its name, start time and
    config. A copy of the run's folder, or a copy cut short, keeps them; another run of the
    same config does not (tiny-2000 and tiny-4000 started in the same second, under other
    names). None where the header does not say (a Trainer's state, an old header)."""
    import json
    if not (header.get("run") and header.get("started") and header.get("config")):
        return None
    return (str(header["run"]), str(header["started"]),
            json.dumps(header["config"], sort_keys=True, default=str))


def fit_from(schedule: Schedule) -> int:
    """First step the law may be fitted at: after the lr warm-up and zhbert's short-sequence
    phase (a run's own points may move it later: ``RunCurve.start``)."""
    return max(schedule.warmup, schedule.short_steps) + 1


def _schedule(history: History, header: dict[str, Any]) -> tuple[Schedule, Any, str]:
    if header.get("config"):
        from zhbert.config import config_from_dict
        cfg = config_from_dict(header["config"])
        return Schedule.from_config(cfg), cfg, "config"
    for name in LR_SERIES:
        if name in history.series:
            s, _ = history.series[name].finite()
            return infer_schedule(s.step, s.y, header.get("total_steps")), None, "logged lr"
    raise NoLearningRate(f"{history.meta.path} records no learning rate (no lr / learning_rate "
                         "column, no zhbert config): the schedule-aware law cannot be fitted")


def first_metric(series: dict[str, Any], names: Sequence[str]) -> str | None:
    """The first of ``names`` with 2+ finite points in ``series`` (fewer fit nothing)."""
    return next((n for n in names if n in series and np.isfinite(series[n].y).sum() >= 2), None)


def loss_and_accuracy(series: dict[str, Any]) -> tuple[str | None, str | None]:
    """A history's loss and the accuracy measured beside it: held-out beside a held-out
    loss, training-batch beside a training loss (the law maps one to the other per step)."""
    loss = first_metric(series, LOSS_METRICS)
    held = loss is None or loss.startswith("eval")
    return loss, first_metric(series, HELD_OUT_ACC if held else ACC_METRICS[len(HELD_OUT_ACC):])


def _run_config(tb_dir: Path) -> dict[str, Any]:
    """A zhbert run's TensorBoard folder (RUN/tb) keeps no header: its run's config
    (run.open_run) holds what the header would (without it the length warm-up went unseen)."""
    from zhbert.run import is_run_dir, open_run
    if not is_run_dir(tb_dir.parent) or not any(tb_dir.glob("events.out.tfevents*")):
        return {}
    cfg = open_run(tb_dir.parent).cfg
    return {"config": cfg.to_dict(), "total_steps": cfg.train.steps}


def _vocabulary(path: Path, history: History) -> dict[str, Any] | None:
    """A zhbert run's vocabulary (size, sha256 where recorded), from its run directory's
    config.json (run.open_run): the history's header does not hold it, and runs of two
    vocabularies were fitted under one law without a word. None where it is not known."""
    from zhbert.run import is_run_dir, open_run
    if history.meta.source != "zhbert":
        return None
    run_dir = path if path.is_dir() else path.parent
    if not is_run_dir(run_dir):
        return None
    try:
        run = open_run(run_dir)
    except (UserError, KeyError, TypeError, ValueError):  # a damaged config.json: not known
        return None
    return {"size": run.vocab_size, "sha256": run.vocab_sha256 or None}


def load_run(path: str | Path) -> RunData:
    """A run's loss curve, accuracy and schedule for the planner."""
    path = Path(path)
    history = load_history(path)
    header = _header(path)
    schedule, cfg, source = _schedule(history, header)
    loss_name, acc_name = loss_and_accuracy(history.series)
    if loss_name is None:
        raise UserError(f"{path} records no loss ({', '.join(LOSS_METRICS)}): the law forecasts "
                        "the loss; evaluate with a held-out loss")
    # one rule for every point the planner reads: a NaN/inf loss or accuracy is left out, as
    # a null one is (never recorded). A NaN accuracy kept here turned every band, the plateau
    # warning and analysis.json's numbers into NaN
    loss = history.series[loss_name].finite()[0]
    steps, y, acc = loss.step, loss.y, None
    if acc_name:
        a = history.series[acc_name].finite()[0]
        common, ia, ib = np.intersect1d(steps, a.step, return_indices=True)
        steps, y, acc = common, y[ia], a.y[ib]
    curve = RunCurve(history.meta.run, steps.astype(int), y, schedule, fit_from(schedule))
    setup = {} if cfg is None else {"config": cfg}
    vocab = _vocabulary(path, history)
    if vocab is not None:
        setup["vocab"] = vocab
    return RunData(curve, acc, loss_name, acc_name, source, setup, history.meta.tokens_per_step,
                   history.meta.seconds_per_step, history, _identity(header))


def labelled(runs: Sequence[RunData]) -> list[RunData]:
    """The runs named apart as compare names them (history.run_labels): two demo runs whose
    headers both say "run" read "runs: run, run" in predict and "fit on run; predict run's"
    in backtest --predict."""
    names = run_labels([r.curve.name for r in runs])
    return [r if r.curve.name == n else replace(r, curve=replace(r.curve, name=n))
            for r, n in zip(runs, names)]


def run_paths(runs: Sequence[RunData]) -> dict[str, str]:
    """Each run's label -> the path it was loaded from (as the user gave it)."""
    return {r.curve.name: r.history.meta.path for r in runs if r.history is not None}


def run_name(label: str, path: str | None) -> str:
    """A run as the text names it: its label (``labelled``), with the path the user gave
    where the label is not that path's own name ("run (2) (tests/data/demo-2000)"): the
    headers of two demo runs both say "run", and "runs: run, run" told nothing."""
    return label if path is None or Path(path).name == label else f"{label} ({path})"


# why a run given twice is refused, as predict (one law over the runs) says it; backtest and
# compare say their own (the answer leaked from its source; a run compared with itself)
TWICE = "a repeated run would count its points twice and narrow the intervals"


def refuse_repeats(paths: Sequence[Any], why: str = TWICE) -> None:
    """The same run twice would count its points twice and narrow every interval."""
    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        key = key / "history.jsonl" if key.is_dir() else key  # a run directory or its history
        if key in seen:
            raise UserError(f"{p} is the same run as {seen[key]}: give each run once ({why})")
        seen[key] = str(p)


def refuse_copies(runs: Sequence[RunData], why: str = TWICE) -> None:
    """One run under two paths (a copied folder, a copy cut short) counted its points twice
    and narrowed the intervals as a repeated path would have (``refuse_repeats``)."""
    _refuse_same([(r.history.meta.path if r.history else r.curve.name, r.identity, r.curve.steps,
                   r.curve.loss) for r in runs], why)


def refuse_copied_histories(paths: Sequence[Any], histories: Sequence[History], why: str) -> None:
    """``refuse_copies`` for compare, which reads any history (no lr needed) and sets a run
    against its own first half on purpose (tests/test_compare.py): whole copies only."""
    items = []
    for p, h in zip(paths, histories):
        name = first_metric(h.series, LOSS_METRICS)
        loss = h.series[name].finite()[0] if name else None
        items.append((str(p), _identity(_header(Path(p))), np.array([]) if loss is None else loss.step,
                      np.array([]) if loss is None else loss.y))
    _refuse_same(items, why, whole=True)


# a Trainer run given as two files (an earlier snapshot, a later one) carries no header to
# name it: the same loss at this many shared eval steps, and no other, is one run. Two runs
# of one seed part at the first step the data or schedule differs, so they never agree on all
SAME_POINTS = 5


def _refuse_same(items: Sequence[tuple[str, Any, np.ndarray, np.ndarray]], why: str,
                 whole: bool = False) -> None:
    """items: (path, header identity or None, loss steps, loss values) of each run; ``whole``:
    refuse only copies at the same steps (a snapshot beside its later state passes)."""
    for i, (pa, ida, sa, ya) in enumerate(items):
        for pb, idb, sb, yb in items[i + 1:]:
            if whole and not np.array_equal(sa, sb):
                continue
            if ida is not None and ida == idb:
                raise UserError(f"{pb} and {pa} are one run (copies: their histories' headers name "
                                f"the same run, {ida[0]}, started {ida[1]}, with the same config): "
                                f"give it once ({why})")
            common, ia, ib = np.intersect1d(sa, sb, return_indices=True)
            # one of them without a header (a Trainer's file, a CSV export of a zhbert run):
            # the same losses at every shared step, and one's steps all among the other's (a
            # snapshot; a run branched from another's checkpoint evaluates at its own steps)
            if (ida is None or idb is None) and len(common) >= SAME_POINTS \
                    and len(common) == min(len(sa), len(sb)) and np.array_equal(ya[ia], yb[ib]):
                raise UserError(f"{pb} and {pa} are one run (the same loss at all {len(common)} "
                                "eval steps they share: one is a snapshot or copy of the other): "
                                f"give it once{'' if whole else ', the longer one'} ({why})")


def truncated(run: RunData, until: float) -> RunData:
    """The run as it stood at step ``until`` (its schedule unchanged: the plan it was on)."""
    keep = run.curve.steps <= until
    if keep.sum() < 2:
        raise UserError(f"{run.curve.name} has fewer than 2 eval points up to step {until:g}")
    curve = replace(run.curve, steps=run.curve.steps[keep], loss=run.curve.loss[keep])
    return replace(run, curve=curve, acc=None if run.acc is None else run.acc[keep])
