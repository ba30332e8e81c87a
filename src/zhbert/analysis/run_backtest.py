"""The schedule-aware backtest between runs (`zhbert backtest --predict RUN_B --from RUN_A`):
fit the law on some runs (and on the target run up to --fit-until), score its forecast of the
target's later held-out accuracy beside the schedule-free families'. The schedule-free
backtest of one history is analysis/backtest.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from zhbert.analysis.consistency import setup_warnings
from zhbert.analysis.forecast import Forecast, Planner, plan
from zhbert.analysis.laws import TooFewPoints
from zhbert.analysis.plan_runs import RunData, labelled, run_name, run_paths, truncated
from zhbert.errors import UserError


@dataclass(frozen=True)
class RunBacktest:
    target_run: str
    from_runs: tuple[str, ...]
    metric: str
    n_points: int
    actual_final: float
    rows: tuple[dict[str, Any], ...]   # one per method: mae, errors at the end, interval, covered
    actual_last_tenth: float = math.nan  # mean of the metric over the last tenth of the run
    last_tenth: tuple[int, int] = (0, 0)
    notes: tuple[str, ...] = ()
    paths: dict[str, str] = field(default_factory=dict)  # label -> the path it was loaded from

    def to_json(self) -> dict[str, Any]:
        return {"predict": self.target_run, "from": list(self.from_runs), "paths": self.paths,
                "metric": self.metric,
                "n_points": self.n_points, "actual_final": self.actual_final,
                "actual_last_tenth": self.actual_last_tenth, "last_tenth_steps": list(self.last_tenth),
                "methods": list(self.rows), "notes": list(self.notes)}


def backtest_runs(target: RunData, sources: Sequence[RunData], laws: Sequence[str] = ("lr_annealing",),
                  until: float | None = None, n_boot: int = 200) -> RunBacktest:
    """Fit on ``sources`` (and on ``target`` up to ``until`` when given), predict the
    target run's accuracy at each later eval step past its lr warm-up and short-sequence
    phase: each law beside the schedule-free families (fitted on the longest source,
    against steps, after its length switch: ``_family_rows``)."""
    *sources, target = labelled([*sources, target])  # told apart as compare tells them
    if target.acc is None:
        raise UserError(f"{target.curve.name} records no accuracy beside its loss: nothing to score")
    fit_runs = list(sources) + ([truncated(target, until)] if until is not None else [])
    # scored where both the law and the families claim to hold: after the target's lr warm-up
    # and short-sequence phase (before it a power fit read demo-2000's plateau off by 1e8 points)
    start = max(int(until or 0), target.curve.fit_from - 1)
    after = target.curve.steps > start
    steps, actual = target.curve.steps[after], target.acc[after]
    if len(steps) == 0 and start == int(until or 0):
        raise UserError(f"--fit-until {until:g} is at or after the last step of {target.curve.name} "
                        f"({target.curve.steps[-1]:,}): nothing is left to predict; choose an earlier step")
    if len(steps) == 0:
        raise UserError(f"nothing of {target.curve.name} is left to predict after step {start:,}")
    rows = []
    last = steps >= 0.9 * steps[-1]          # the last tenth of the run: a mean, not one noisy point
    for law in laws:
        p = _plan_until(fit_runs, law, n_boot, until if not sources else None)
        pred = p.curve(target.curve.schedule, steps)["acc"]
        final = p.accuracy(target.curve.schedule, steps[last], window=int(last.sum()))
        rows.append(_row(law, pred, actual, last, final))
    families, notes = _family_rows(max(fit_runs, key=lambda r: r.curve.steps[-1]), steps, actual, last)
    # the target against the runs that forecast it: another model, masking or vocabulary is
    # another curve (demo-1000's law for tiny-2000 had said nothing of it)
    notes = (setup_warnings([*sources, target]) if sources else []) + notes
    return RunBacktest(target.curve.name, tuple(r.curve.name for r in fit_runs),
                       target.acc_metric or "", len(steps), float(actual[-1]), tuple(rows + families),
                       float(np.mean(actual[last])), (int(steps[last][0]), int(steps[-1])), tuple(notes),
                       run_paths([*sources, target]))


def _family_rows(run: RunData, steps: np.ndarray, actual: np.ndarray,
                 last: np.ndarray) -> tuple[list[dict[str, Any]], list[str]]:
    """The schedule-free families' rows, fitted on the points analyze, predict --law none and
    backtest fit them on: the run's accuracy after its length switch (History.curve_part).
    Fitted across the switch they read the short-sequence plateau and the fall after it as
    one curve: from demo-1000, exp put demo-2000 at 56.2% where the same fit after the switch
    (predict --law none) tops out at 31.5%."""
    from zhbert.analysis.curves import fit_curve
    from zhbert.analysis.history import Series
    s, h = Series(run.acc_metric or "accuracy", run.curve.steps, run.acc).finite()[0], run.history
    notes = []
    if h is not None and h.meta.regimes:
        try:
            s = h.curve_part(s)
        except UserError as why:  # too few points after the switch: the law's rows still stand
            return [], [f"no schedule-free rows: {why}"]
        notes.append(f"schedule-free rows: {s.name} of {run.curve.name} fitted{h.switch_text}")
    return [_row(f"{fit.name} (schedule-free, {run.curve.name})", fit.predict(steps), actual, last, None)
            for fit in fit_curve(s.step, s.y, n_boot=0, metric=s.name) if fit.ok], notes


def _row(name: str, pred: np.ndarray, actual: np.ndarray, last: np.ndarray,
         final: Forecast | None) -> dict[str, Any]:
    """Errors (+ = predicted more): at the last point, and of the mean over the last tenth
    (the interval is for that mean)."""
    err = pred - actual
    tail = float(np.mean(actual[last]))
    return {"method": name, "mae": float(np.mean(np.abs(err))), "error_final": float(err[-1]),
            "pred_final": float(pred[-1]), "error_last_tenth": float(np.mean(pred[last]) - tail),
            "interval80": None if final is None else [final.lo80, final.hi80],
            "interval95": None if final is None else [final.lo95, final.hi95],
            "covered80": None if final is None else final.covers(tail, 80),
            "covered95": None if final is None else final.covers(tail, 95)}


def _plan_until(runs: Sequence[RunData], law: str, n_boot: int, until: float | None) -> Planner:
    """``plan``, where a run cut at --fit-until alone is fitted: too few points there is
    the cut's doing ("evaluate more often or train further" was no fix for demo-2000 cut
    at its switch to full length)."""
    try:
        return plan(runs, law, n_boot)
    except TooFewPoints as exc:
        if until is None:
            raise
        raise UserError(f"--fit-until {until:g}: {exc}; or give a later --fit-until (the law's "
                        f"points start at step {runs[0].curve.fit_from:,})") from None


def backtest_runs_table(b: RunBacktest) -> str:
    lo, hi = b.last_tenth
    name = lambda r: run_name(r, b.paths.get(r))  # noqa: E731
    head = [f"backtest: fit on {', '.join(map(name, b.from_runs))}; predict {b.metric} of "
            f"{name(b.target_run)} at {b.n_points} eval steps; actual at the end "
            f"{b.actual_final * 100:.2f}%, mean over "
            f"steps {lo:,}-{hi:,} {b.actual_last_tenth * 100:.2f}%", ""]
    w = max(len(r["method"]) for r in b.rows)
    lines = [f"{'method':<{w}}  {'MAE':>6}  {'err@end':>8}  {'err last tenth':>14}  "
             "80% interval of the last tenth's mean"]
    for r in b.rows:
        iv = "-" if r["interval80"] is None else (
            f"{r['interval80'][0] * 100:.1f}-{r['interval80'][1] * 100:.1f}% "
            f"({'covers' if r['covered80'] else 'misses'})")
        lines.append(f"{r['method']:<{w}}  {r['mae'] * 100:5.2f}p  {r['error_final'] * 100:+7.2f}p  "
                     f"{r['error_last_tenth'] * 100:+13.2f}p  {iv}")
    return "\n".join(head + lines + ["", "(p = percentage points; + = predicted more than reached)"]
                     + [f"note: {n}" for n in b.notes])
