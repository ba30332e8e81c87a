"""The planner's questions for ``zhbert predict`` and ``zhbert backtest --predict``.

predict.py parses the command line and falls back to the schedule-free families
where no learning rate is known; this module answers, with forecast.py's law:

  --steps N [--schedule K] [--warmup W] [--lr PEAK]  the curve of that run, final values
  --target T        the smallest N (the schedule stretched to N) whose final accuracy reaches T
  --compare-schedules  the final accuracy of an N-step run under each schedule

and ``backtest_runs`` fits on shorter runs and scores the prediction of a longer
one point by point, the law beside the schedule-free families.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from zhbert import argtypes
from zhbert.config import MAX_STEPS  # --steps / --warmup: what a run may have (10^20 overflowed the law)
from zhbert.analysis.extrapolation import (check_loss, kinds_warning, lr_note, schedule_warning,
                                           uniform_warning)
from zhbert.analysis.plateau import decay_warning, plateau_warning, stalled_warning
from zhbert.analysis.plateau import joined as _warnings
from zhbert.analysis.forecast import Forecast, Planner
from zhbert.analysis.plan_runs import fit_from, run_name, run_paths
from zhbert.errors import UserError
from zhbert.fileio import json_safe
from zhbert.metrics import metric_info
from zhbert.schedule import SCHEDULES, Schedule

MAX_STRETCH = 100       # --target searches up to this many times the longest run


def add_input_arguments(parser: argparse.ArgumentParser, nargs: str | None = None) -> None:
    parser.add_argument("history", nargs=nargs, help="run directory, history.jsonl, checkpoint_eval.jsonl, "
                        "trainer_state.json, TensorBoard events, CSV or the seed's JSON"
                        + (" (several: one law for all)" if nargs == "+" else ""))
    parser.add_argument("--metric", help="metric to use (default: eval_mlm_acc, else a Trainer's "
                        "eval_accuracy, else mlm_acc)")
    parser.add_argument("--x", choices=("step", "tokens", "seconds"), default="step",
                        help="what the curve is a function of (default: step)")
    parser.add_argument("--json", action="store_true", help="print JSON for tools")


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=argtypes.count(1, MAX_STEPS), help="forecast a run of N "
                        f"steps, at most {MAX_STEPS:,} (default schedule: the run's own, stretched to N)")
    parser.add_argument("--schedule", help=f"schedule of the forecast run: {', '.join(SCHEDULES)}")
    parser.add_argument("--warmup", type=argtypes.count(0, MAX_STEPS),
                        help="warm-up steps of the forecast run (default: the run's)")
    parser.add_argument("--lr", type=argtypes.positive, help="peak learning rate of the forecast run "
                        "(default: the run's; outside the fitted runs' peaks the answer is flagged)")
    parser.add_argument("--compare-schedules", action="store_true",
                        help="final accuracy of an N-step run under each schedule")
    parser.add_argument("--law", default="lr_annealing", choices=("lr_annealing", "multi_power", "none"),
                        help="schedule-aware law (default lr_annealing); none: the schedule-free "
                             "curve families of one run")


def check_plan_args(args: argparse.Namespace) -> None:
    """Bad questions exit 2 with the fix, before anything is fitted."""
    if args.target is not None and not (0.0 < args.target < 1.0) and (
            args.metric is None or metric_info(args.metric).kind == "accuracy"):
        raise UserError(f"--target {args.target:g}: accuracy targets lie between 0 and 1, "
                        "e.g. --target 0.30 for 30%")
    if args.schedule is not None and args.schedule not in SCHEDULES:
        raise UserError(f"--schedule {args.schedule}: unknown; use one of {', '.join(SCHEDULES)}")
    if args.steps is not None:
        check_warmup(args, args.steps, f"--steps {args.steps:,}")
    if args.target is None and args.steps is None and not args.compare_schedules:
        raise UserError("ask a question: --target 0.40, --steps N, or --compare-schedules")


def check_warmup(args: argparse.Namespace, steps: int, what: str) -> None:
    """--warmup shorter than the run asked about, ``what`` (its range is argparse's: argtypes)."""
    if args.warmup is not None and args.warmup >= steps:
        raise UserError(f"--warmup {args.warmup:,} is not shorter than {what}: "
                        "the run would end inside its warm-up")


def schedule_for(p: Planner, args: argparse.Namespace, steps: int) -> Schedule:
    return p.base.stretched(steps, kind=args.schedule, warmup=args.warmup, peak=args.lr)


@dataclass(frozen=True)
class Reach:
    target: float
    reachable: bool
    steps: float | None
    steps80: tuple[float, float] | None
    steps95: tuple[float, float] | None
    limit: float | None
    message: str
    shortest: int | None = None  # the shortest run searched: a bound equal to it means "<= it"
    metric: str = "accuracy"     # "loss": a loss target, reached from above; limit is a loss

    def to_json(self) -> dict[str, Any]:
        j = lambda v: json_safe(None if v is None else float(v))  # noqa: E731
        out = {"target": self.target, "reachable": self.reachable, "steps": j(self.steps),
               "steps_interval80": None if self.steps80 is None else [j(v) for v in self.steps80],
               "steps_interval95": None if self.steps95 is None else [j(v) for v in self.steps95],
               "limit_accuracy": self.limit, "message": self.message,
               "shortest_searched": self.shortest}
        if self.metric == "loss":  # the floor is a loss, not an accuracy
            out["limit_loss"] = out.pop("limit_accuracy")
            out["metric"] = "loss"
        return out


def _crossing(grid: np.ndarray, values: np.ndarray, target: float) -> float:
    """First N of the grid where values reach the target (log-interpolated; inf if never)."""
    hit = np.nonzero(values >= target)[0]
    if len(hit) == 0:
        return math.inf
    i = hit[0]
    if i == 0:
        return float(grid[0])
    x0, x1, y0, y1 = math.log(grid[i - 1]), math.log(grid[i]), values[i - 1], values[i]
    return float(math.exp(x0 + (target - y0) / (y1 - y0) * (x1 - x0)))


def target_metric(p: Planner, args: argparse.Namespace) -> str:
    """"loss" where --metric names the law's loss (reached from above), else "accuracy": a loss
    target went to the curve families ("asymptote 3.812"; tiny-4000 measured 3.358)."""
    m = getattr(args, "metric", None)
    return "loss" if m is not None and m == p.runs[0].loss_metric else "accuracy"


def _readings(p: Planner, make: Any, grid: np.ndarray, loss: bool) -> tuple[dict, np.ndarray]:
    """Per length of ``grid``: the forecast with its bands, and the law's reading alone. A loss
    is negated (its bounds swapped) to be reached from below by one crossing rule. Both bands
    are of the expected value, without the observation noise: a target is a run's expected end."""
    keys = ("mean", "lo80", "hi80", "lo95", "hi95")
    if loss:
        fc = [p.loss(make(int(n)), [int(n)], noise=False) for n in grid]
        swap = dict(zip(keys, ("mean", "hi80", "lo80", "hi95", "lo95")))
        band = {k: -np.array([getattr(f, swap[k]) for f in fc]) for k in keys}
        alone = [-float(p.law.predict(make(int(n)), [int(n)])[0]) for n in grid]
        return band, np.array(alone)
    fc = [p.accuracy(make(int(n)), [int(n)], noise=False) for n in grid]
    band = {k: np.array([getattr(f, k) for f in fc]) for k in keys}
    alone = [float(p.accmap(p.law.predict(make(int(n)), [int(n)])[0])) for n in grid]
    return band, np.array(alone)


def reach(p: Planner, target: float, make: Any, metric: str = "accuracy") -> Reach:
    """Smallest N whose final expected accuracy reaches ``target`` (``metric`` "loss": whose
    final loss falls to it); ``make(N)`` is the schedule of an N-step run. Interval: where the
    80% / 95% band of the forecast crosses the target. A floor past the target is "not
    reachable" only when the 80% band does not reach it either: one run just off a plateau pins
    the floor loosely (the demo's 1,200-step run put it at 39.7% while a 3,300-step run
    measured 42.6%)."""
    sign = -1.0 if metric == "loss" else 1.0  # a loss is reached from above
    limit = p.mixed_floor() if metric == "loss" else p.limit()
    grid = _search_grid(p, make)
    band, alone = _readings(p, make, grid, metric == "loss")
    point = _crossing(grid, band["mean"], sign * target)
    k = _holds_until(p, make, grid)  # the lengths before the law forecasts a loss below 0
    # the law as fitted alone too: where the forecast weighs in the reading without annealing
    # gain (laws.LawFit.readings), its mean may stay below a target the law reaches only past
    # a loss below 0, and "not reachable" would rest on lengths where the law no longer holds
    relied = min(point, _crossing(grid, alone, sign * target))
    if math.isfinite(relied) and k <= np.searchsorted(grid, relied):  # the answer relies on one
        check_loss(p, make(int(grid[k])), [int(grid[k])], f"--target {target:g}")  # raises
    if k == 0:
        return Reach(target, False, None, None, None, limit, "the law forecasts a loss below 0 "
                     "at every length searched: it does not hold this far from its runs", metric=metric)
    # not reached: searched only as far as the law holds, not refused for what lies past
    grid, band = grid[:k], {key: v[:k] for key, v in band.items()}
    # the forecasts' own bounds (the refits' quantiles), not mean +- z sd: the refits' spread
    # has long tails, and their sd put "never" beside a 2,000-step band that reached the target
    cross = lambda lo, hi: (_crossing(grid, band[hi], sign * target),  # noqa: E731
                            _crossing(grid, band[lo], sign * target))
    return _reach_answer(p, target, grid, sign * band["mean"][-1], point, cross("lo80", "hi80"),
                         cross("lo95", "hi95"), limit, metric)


def _reach_answer(p: Planner, target: float, grid: np.ndarray, last: float, point: float,
                  i80: tuple[float, float], i95: tuple[float, float], limit: float | None,
                  metric: str) -> Reach:
    """``reach``'s answer in words; ``last``: the forecast at the longest length searched."""
    first, loss = int(grid[0]), metric == "loss"
    n = lambda v: steps_text(v, first)  # noqa: E731
    below = limit is not None and (limit > target if loss else limit < target)
    floor = f"the law's floor {'is a loss of' if loss else 'maps to accuracy'} {limit:.4f}"
    if math.isinf(point) and math.isfinite(i80[0]):
        # why the central forecast misses: its floor, or (a floor past the target) the
        # search's longest run, which it reaches only after
        why = floor if below else (f"not within {grid[-1]:,} steps, {MAX_STRETCH}x the longest run: "
                                   f"{last:.4f} there")
        return Reach(target, False, math.inf, i80, i95, limit,
                     f"uncertain: the central forecast does not reach {target:g} ({why}), but its "
                     f"80% band does with a run of {n(i80[0])} steps; more runs, or a longer one, "
                     f"would pin the {'floor' if below else 'forecast'} down", first, metric)
    if below:
        said = (f"{_floor_text(p)}, a least loss of {limit:.4f}, above" if loss else
                f"{_floor_text(p)} maps to accuracy {limit:.4f}, below")
        return Reach(target, False, None, None, None, limit,
                     f"not reachable with this setup: {said} {target:g}", metric=metric)
    if math.isinf(point):
        return Reach(target, False, math.inf, i80, i95, limit,
                     f"not reached within {grid[-1]:,} steps ({MAX_STRETCH}x the longest run): "
                     f"forecast at that length {last:.4f}; the law's limit is {limit:.4f}", metric=metric)
    return Reach(target, True, point, i80, i95, limit,
                 f"reaches {'a loss of ' if loss else ''}{target:g} with a run of {n(point)} steps "
                 f"(80%: {n(i80[0])} to {n(i80[1])}; 95%: {n(i95[0])} to {n(i95[1])})", first, metric)


def _floor_text(p: Planner) -> str:
    """The law's floor as a limit: a loss of 0 where L0 less a full anneal falls below it
    (the law stops holding there; no negative cross-entropy is printed as a floor)."""
    floor = ("the law's floor (L0 less a full anneal falls below 0, so the least loss, 0)"
             if p.raw_floor() < 0 else f"the law's floor (L0 less a full anneal) {p.floor():.3f}")
    w = p.floor_share()
    return floor if not w else (f"{floor}, mixed {w:.0%} with the floor without annealing gain "
                                f"{p.no_gain_floor():.3f} (a full anneal is past what the runs showed)")


def _holds_until(p: Planner, make: Any, grid: np.ndarray) -> int:
    """How many of ``grid``'s lengths come before the first whose run the law forecasts a
    loss below 0 at its end (a cross-entropy never is: the law stops holding there)."""
    for i, n in enumerate(grid):
        if np.any(np.atleast_1d(p.law.predict(make(int(n)), [int(n)])) < 0):
            return i
    return len(grid)


def _search_grid(p: Planner, make: Any) -> np.ndarray:
    """The run lengths ``reach`` tries: from the first step any run's law was fitted at (after
    the lr warm-up and the short-sequence phase: before it the law was never checked, and its
    bands are wide there; the demo's 80% band read "reaches 40% with <= 101 steps") and past
    the searched runs' own warm-up (--warmup), up to MAX_STRETCH times the longest run."""
    longest = max(r.curve.schedule.steps for r in p.runs)
    first, last = max(10, make(longest).warmup + 1, p.fitted_from), longest * MAX_STRETCH
    if first >= last:  # a --warmup past every run searched read "forecast 0.0000" there
        raise UserError(f"--warmup {first - 1:,} is not shorter than the longest run --target "
                        f"searches ({last:,} steps, {MAX_STRETCH}x the longest run)")
    return np.unique(np.geomspace(first, last, 60).astype(int))


def steps_text(v: float | None, first: int | None = None) -> str:
    """Steps as text. ``first``: the search grid's shortest run (the warm-up + 1); a
    crossing there only says the target is met by then, so it reads "<= first"."""
    if v is None or math.isinf(v):
        return "inf (never)"
    return f"<= {first:,}" if first is not None and v <= first else f"{v:,.0f}"


def units(p: Planner, steps: float, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Tokens (real, not padded), hours and cost of ``steps``: from the speeds the runs
    recorded, or those given with --tokens-per-step / --seconds-per-step (their
    ``"speed"`` says which) at --price-per-hour."""
    tps_given, sps_given, price = (getattr(args, k, None) for k in
                                   ("tokens_per_step", "seconds_per_step", "price_per_hour"))
    tps = [tps_given] if tps_given else [r.tokens_per_step for r in p.runs if r.tokens_per_step]
    sps = [sps_given] if sps_given else [r.seconds_per_step for r in p.runs if r.seconds_per_step]
    tokens = steps * float(np.mean(tps)) if tps and math.isfinite(steps) else None
    hours = steps * float(np.median(sps)) / 3600 if sps and math.isfinite(steps) else None
    return {"steps": steps, "tokens": tokens, "hours": hours,
            "cost": hours * price if hours is not None and price else None,
            "speed": "given" if sps_given else "measured"}


def _fmt_units(u: dict[str, Any]) -> str:
    parts = [f"{u['tokens']:,.0f} real tokens" if u["tokens"]
             else "tokens unknown (pass --tokens-per-step)",
             f"{u['hours']:,.2f} h at the {u['speed']} speed" if u["hours"] is not None
             else "hours unknown (pass --seconds-per-step)"]
    if u["cost"] is not None:
        parts.append(f"{u['cost']:,.2f} USD")
    return ", ".join(parts)


def _fc(f: Forecast, pct: bool = True) -> str:
    k, d = (100, 1) if pct else (1, 3)
    unit = "%" if pct else ""
    return (f"{f.mean * k:.{d}f}{unit} (80%: {f.lo80 * k:.{d}f}-{f.hi80 * k:.{d}f}{unit}; "
            f"95%: {f.lo95 * k:.{d}f}-{f.hi95 * k:.{d}f}{unit})")


def answer(p: Planner, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every question asked on the command line: (JSON, text lines)."""
    out: dict[str, Any] = {"runs": [r.curve.name for r in p.runs], "paths": run_paths(p.runs),
                           "method": p.method,
                           "law": None, "accuracy_map": p.accmap and p.accmap.to_json(),
                           "base_schedule": p.base.to_json(), "notes": list(p.notes)}
    text = [f"runs: {', '.join(run_name(n, out['paths'].get(n)) for n in out['runs'])}; {p.method}",
            f"law: {_law_line(p)}"]
    out["floor_pinned"] = p.floor_pinned()
    if p.accmap is not None:
        text.append(f"loss -> accuracy: acc = expit({p.accmap.a:.3f} {p.accmap.b:+.3f} * loss); "
                    f"the law's floor maps to {p.limit():.4f}"
                    + (f" ({p.floor_share():.0%} of it the floor without annealing gain)" if p.floor_share() else "") + (
                        "" if out["floor_pinned"] else " (but the floor L0 came out at its bound, 0: "
                        "these points do not pin it, so that is the law's extrapolation)"))
    if args.steps is not None:
        out["forecast"], lines = _steps(p, args, args.steps)
        text += lines
    if args.compare_schedules:
        n = args.steps or p.base.steps
        check_warmup(args, n, f"the {n:,} steps --compare-schedules compares without --steps")
        cmp = p.compare_schedules(n, warmup=args.warmup, peak=args.lr)
        for k in cmp:
            check_loss(p, p.base.stretched(n, kind=k, warmup=args.warmup, peak=args.lr), [n],
                       f"--compare-schedules over {n:,} steps")
        out["compare_schedules"] = {"steps": n, **{k: f.to_json() for k, f in cmp.items()}}
        text.append(f"final accuracy ({p.runs[0].acc_metric}) of a {n:,}-step run by schedule:")
        text += [f"  {k:<9} {_fc(f)}" for k, f in cmp.items()]
        note = _warnings(_ranking_note(cmp), kinds_warning(p, list(cmp)))
        if note:
            out["compare_schedules_note"] = note
            text.append(f"  {note}")
    if args.target is not None:
        r = reach(p, args.target, lambda n: schedule_for(p, args, n), target_metric(p, args))
        out["target"] = {**r.to_json(), **({"units": units(p, r.steps, args)} if r.reachable else {}),
                         "warning": _target_warning(p, r, args)}
        text.append(r.message)
        if r.reachable:
            text.append(f"  = {_fmt_units(units(p, r.steps, args))} (point estimate)")
        text += [f"  warning: {out['target']['warning']}"] if out["target"]["warning"] else []
    extrapolated = lr_note(p, args.lr)
    if extrapolated:  # the answers above rest on the law's assumption about the lr
        out["notes"].append(extrapolated)
    text += [f"note: {n}" for n in out["notes"]]
    out["law"] = p.law.to_json()  # after the answers: the second reading, where one was fitted
    return out, text


def _target_warning(p: Planner, r: Reach, args) -> str | None:
    """The warnings of a --target answer: the plateau's, and for the run found (where one
    is), its decay's and its schedule's (``schedule_warning``)."""
    sched = schedule_for(p, args, int(math.ceil(r.steps))) if r.reachable else None
    plateau = plateau_warning(p, answers=[r])  # a loss target by the accuracy it maps to
    return _warnings(plateau, sched and decay_warning(p, sched),
                     sched and schedule_warning(p, sched))


def _ranking_note(cmp: dict[str, Forecast]) -> str | None:
    """Whether the forecasts can rank the schedules at all: one short run ranked constant
    above cosine by 0.8 points inside 80% bands 5-17 points wide, without a word."""
    best = max(cmp, key=lambda k: cmp[k].mean)
    if any(cmp[k].hi80 < cmp[best].lo80 for k in cmp if k != best):
        return None
    return (f"every schedule's 80% band overlaps the best one's ({best}): these runs cannot rank "
            "the schedules (runs of more than one schedule, or longer ones, may)")


def _law_line(p: Planner) -> str:
    prm = ", ".join(f"{k} {v:.4g}" for k, v in p.law.params.items())
    return f"{p.law.law}: {prm}; residual sd {p.law.sigma:.4f}, AR(1) {p.law.phi:.2f}, {p.law.n} points"


def _steps(p: Planner, args, n: int) -> tuple[dict[str, Any], list[str]]:
    first = p.fitted_from
    if n < first:  # the law's power of the lr area runs away below its fitted range
        raise UserError(f"--steps {n:,}: the law was fitted from step {first:,} on (after the lr "
                        f"warm-up, the short-sequence phase and the fall after it) and does not "
                        f"hold before it; ask about a run of at least {first:,} steps")
    sched = schedule_for(p, args, n)
    # where the law holds: after this run's lr warm-up and short-sequence phase, and not
    # before the first step it was fitted at (cut1500's law asked about 900 steps printed
    # a loss of 80.7 at step 181, far before its fitted points)
    marks = np.unique(np.linspace(min(max(fit_from(sched), first), n), n, 9).astype(int))
    check_loss(p, sched, marks, f"--steps {n:,}")
    loss = p.loss(sched, [n])
    acc = p.accuracy(sched, [n]) if p.accmap else None
    curve = p.curve(sched, marks)
    out = {"schedule": sched.to_json(), "final_loss": loss.to_json(),
           "final_accuracy": acc and acc.to_json(), "units": units(p, n, args),
           "curve": {k: [float(v) for v in vals] for k, vals in curve.items()},
           # two bands at the last step, told apart (a newcomer read them as one forecast)
           "bands": "final_loss and final_accuracy: of the run's last evaluation, its sampling "
                    "noise included; curve: of the expected (mean) curve, without that noise, so "
                    "narrower at the last step, each by its final value's method (accuracy: "
                    "bootstrap refits where --n-boot > 0, else the delta method; loss: the delta "
                    "method)"}
    r0 = p.runs[0]
    lines = [f"a {n:,}-step {sched.kind} run (warm-up {sched.warmup}, peak lr {sched.peak:g}):",
             f"  final loss ({r0.loss_metric}) {_fc(loss, pct=False)}"]
    if acc:
        lines.append(f"  final accuracy ({r0.acc_metric}) {_fc(acc)}")
        out["warning"] = _warnings(plateau_warning(p, acc.mean), decay_warning(p, sched),
                                   schedule_warning(p, sched), uniform_warning(p, curve["loss"]))
        lines += [f"  warning: {out['warning']}"] if out["warning"] else []
    lines.append(f"  {_fmt_units(out['units'])}")
    lines.append("  step      " + " ".join(f"{s:>8,}" for s in marks))
    lines.append("  loss      " + " ".join(f"{v:8.3f}" for v in curve["loss"]))
    if "acc" in curve:
        lines.append("  accuracy  " + " ".join(f"{v * 100:7.1f}%" for v in curve["acc"]))
    return out, lines
