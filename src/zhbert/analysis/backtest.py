"""Would the curve have told us in time? Fit each schedule-free family on the history up to
a step and measure how well it predicts the rest (the seed's straight line fitted on 50K
steps predicts ~91% at 95K steps; the run reached ~58%). ``zhbert backtest``'s first mode
(analysis/cli.py); the schedule-aware backtest between runs is run_backtest.backtest_runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from zhbert.analysis.curves import CurveFit, default_models, fit_curve
from zhbert.analysis.history import History, Series
from zhbert.analysis.stats import _f, smooth
from zhbert.errors import UserError


@dataclass(frozen=True)
class BacktestRow:
    model: str
    ok: bool
    error: str
    aic: float                 # on the fitted part
    mae: float                 # mean |pred - smoothed y| over the held-back part
    max_error: float           # max |pred - smoothed y| there
    error_last: float          # pred - smoothed y at the last point (signed: + = optimistic)
    mean_error_window: float   # mean(pred - smoothed y) over the last ``window`` of x (signed)
    pred_last: float
    pred_at: float | None      # inside the metric's range (CurveFit.predict)
    raw_at: float | None = None  # the curve's own value at ``at`` where that lies outside it

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "ok": self.ok, "error": self.error, "aic": _f(self.aic),
                "mae": _f(self.mae), "max_error": _f(self.max_error), "error_last": _f(self.error_last),
                "mean_error_window": _f(self.mean_error_window), "pred_last": _f(self.pred_last),
                "pred_at": _f(self.pred_at), "pred_at_clipped": self.raw_at is not None,
                "pred_at_unclipped": _f(self.raw_at)}


@dataclass(frozen=True)
class BacktestResult:
    metric: str
    x_axis: str
    fit_until: float
    n_fit: int
    n_test: int
    last_x: float
    actual_last: float         # smoothed metric at the last point
    window: float
    at: float | None
    actual_at: float | None    # smoothed metric at ``at``
    rows: tuple[BacktestRow, ...]
    winner: str | None         # lowest MAE on the held-back part
    aic_best: str | None
    first_x: float = 0.0       # the window is a share of the span first_x..last_x
    limits: tuple[float, float] = (-math.inf, math.inf)  # the metric's range (MetricInfo.bounds)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "x_axis": self.x_axis, "fit_until": self.fit_until,
                "n_fit": self.n_fit, "n_test": self.n_test, "last_x": self.last_x,
                "actual_last_smoothed": _f(self.actual_last), "window": self.window,
                "window_from": self.last_x - self.window, "first_x": self.first_x, "at": self.at,
                "actual_at_smoothed": _f(self.actual_at), "winner": self.winner,
                "aic_best": self.aic_best, "models": [r.to_json() for r in self.rows]}


def backtest(source: History | Series, fit_until: float, *, metric: str | None = None,
             x: str = "step", models: Sequence[str] | None = None, window: float | None = None,
             at: float | None = None) -> BacktestResult:
    """Fit each model on x <= fit_until, score its prediction of the rest against the
    smoothed metric (centered moving average over ~5% of the points, stats.smooth)."""
    series = source.metric(metric) if isinstance(source, History) else source
    series, _ = series.finite()
    after = ""
    if isinstance(source, History):  # after the length switch: the families are one smooth curve
        series, after = source.curve_part(series), source.switch_text
    xs, ys = series.x(x), series.y
    fit_mask = (xs <= fit_until) & (xs > 0)
    test = xs > fit_until
    if test.sum() == 0:
        raise UserError(f"--fit-until {fit_until:g} is at or after the last {x} ({xs[-1]:g}); "
                        "nothing is left to test: choose an earlier step")
    if fit_mask.sum() < 5:
        raise UserError(f"only {int(fit_mask.sum())} points at or before --fit-until {fit_until:g}"
                        f"{after}; need at least 5: choose a later step")
    fits = fit_curve(xs[fit_mask], ys[fit_mask], models or default_models(ys, series.name), n_boot=0,
                     metric=series.name)
    sm = smooth(ys)
    # the last tenth of the history (at most the seed's 10,000 steps): a 100-step run's
    # "last 10,000 steps" would be all of it
    span = float(xs[-1] - xs[0])
    window = window or (min(10_000.0, 0.1 * span) if x == "step" else 0.1 * span)
    last = xs >= xs[-1] - window
    rows = tuple(_score(f, xs, sm, test, last, at) for f in fits)
    scored = [r for r in rows if r.ok and math.isfinite(r.mae)]
    return BacktestResult(
        metric=series.name, x_axis=x, fit_until=float(fit_until), n_fit=int(fit_mask.sum()),
        n_test=int(test.sum()), last_x=float(xs[-1]), actual_last=float(sm[-1]), window=window,
        at=at, actual_at=_actual_at(at, xs, sm), rows=rows,
        winner=min(scored, key=lambda r: r.mae).model if scored else None,
        aic_best=fits[0].name if fits and fits[0].ok else None, first_x=float(xs[0]),
        limits=fits[0].limits if fits else (-math.inf, math.inf))


def _actual_at(at: float | None, xs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The smoothed metric at ``at``, where the history covers it: outside, interpolation
    clamps to the first or last value (--at 5000 on a 2,000-step run read "at 5,000: 0.5361")."""
    if at is None or not xs[0] <= at <= xs[-1]:
        return None
    return float(np.interp(at, xs, smoothed))


def _score(fit: CurveFit, xs, smoothed, test, last, at: float | None) -> BacktestRow:
    """Errors against the SMOOTHED metric: single noisy batches (+-5 pp on the seed's
    data) would otherwise swamp the difference between the models' shapes."""
    nan = math.nan
    if not fit.ok:
        return BacktestRow(fit.name, False, fit.error, nan, nan, nan, nan, nan, nan, None)
    pred = fit.predict(xs)
    err = pred - smoothed
    pred_at, raw_at = (None, None) if at is None else (float(fit.predict([at])[0]), float(fit.raw([at])[0]))
    return BacktestRow(fit.name, True, "", fit.aic, float(np.mean(np.abs(err[test]))),
                       float(np.max(np.abs(err[test]))), float(err[-1]),
                       float(np.mean(err[last])), float(pred[-1]), pred_at,
                       raw_at if raw_at != pred_at else None)  # clipped there


def window_text(r: BacktestResult) -> str:
    """The error window as a reader checks it against the README's "last 10K steps": its share
    of the history and its ends ("last 10% (steps 90,010-100,000)"); it read "last 9,990 steps"."""
    span = r.last_x - r.first_x
    share = f"{r.window / span:.0%}" if span > 0 else "all"
    unit = r.x_axis + ("s" if r.x_axis == "step" else "")
    return f"last {share} ({unit} {max(r.last_x - r.window, r.first_x):,.0f}-{r.last_x:,.0f})"


def _clip_notes(r: BacktestResult) -> list[str]:
    """Where a curve leaves the metric's range at --at: shown clipped, said so."""
    lo, hi = r.limits
    return [f"* {row.model}'s curve reads {row.raw_at:.4g} at {r.at:,.0f}, outside {r.metric}'s range "
            f"[{lo:g}, {hi:g}]: shown clipped to it" for row in r.rows if row.ok and row.raw_at is not None]


def backtest_table(result: BacktestResult) -> str:
    """Plain-text table of a backtest (errors in the metric's units vs the smoothed metric,
    + = the model predicted more than was reached)."""
    r = result
    at = "" if r.at is None else f"; at {r.at:,.0f}: " + (
        f"{r.actual_at:.4f}" if r.actual_at is not None else f"not measured (outside the run's {r.x_axis} range)")
    head = [f"backtest of {r.metric}: fit on {r.x_axis} <= {r.fit_until:,.0f} ({r.n_fit} points), "
            f"predict the remaining {r.n_test} points up to {r.last_x:,.0f}",
            f"smoothed actual at the last point: {r.actual_last:.4f}{at}"]
    cols = ["model", "MAE", "max err", "err@last", f"mean err, {window_text(r)}", "pred@last"]
    if r.at is not None:
        cols.append(f"pred@{r.at:,.0f}")
    lines = [cols]
    for row in r.rows:
        cells = [row.model] + [f"{v:+.4f}" if k in (2, 3) else f"{v:.4f}" for k, v in enumerate(
            (row.mae, row.max_error, row.error_last, row.mean_error_window, row.pred_last))]
        if r.at is not None:
            flag = "*" if row.raw_at is not None else ""  # clipped to the metric's range: _clip_notes
            cells.append("-" if row.pred_at is None else f"{row.pred_at:.4f}{flag}")
        lines.append(cells if row.ok else [row.model, f"failed: {row.error}"])
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(cols))]
    body = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in lines]
    tail = [f"best on the held-back part (MAE): {r.winner}; best by AIC on the fitted part: {r.aic_best}"]
    return "\n".join(head + [""] + body + [""] + _clip_notes(r) + tail)
