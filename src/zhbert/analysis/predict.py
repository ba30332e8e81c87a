"""How long until a target accuracy? And would the curve have told us in time?

``predict_steps`` fits the learning-curve models (curves.py), takes the best by
AIC, and turns the residual-bootstrap curves (a bias-corrected AR-sieve bootstrap,
so autocorrelated noise widens them) into a distribution of the step at which the
target is reached: the 80% / 95% intervals are its equal-tailed (B + 1)-rule
quantiles (``curves.boot_interval``). Measured on generated power-law curves fitted
up to 50K steps with the truth at 75K, they cover at close to the stated rate with
iid and with AR(1) noise (tests/test_analysis_curves.py). A bootstrap curve that
saturates below the target never reaches it; when more than (1 - level)/2 of them
do not, the interval's upper end is infinite, and we say so.
If the fitted ceiling itself is below the target the answer is "not reachable
with this setup" with the asymptote and its CI -- the seed's
``predict_training_steps(0.60)`` answered 12,857 steps for a run that never got
there.

These families are blind to the learning-rate schedule: on a warm-up + cosine run
they learn where that schedule flattens. The ``zhbert predict`` command
(predict_command.py) answers with the schedule-aware law (forecast.py, planning.py)
wherever the history's lr is known and falls back to the families here, saying
so, where it is not (or with ``--law none``). ``backtest`` lives in backtest.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from zhbert.analysis.backtest import backtest
from zhbert.analysis.curves import CurveFit, boot_interval, fit_curve
from zhbert.analysis.history import History, Meta, Series
from zhbert.analysis.stats import _f, smooth
from zhbert.errors import UserError
from zhbert.metrics import metric_info


@dataclass(frozen=True)
class Throughput:
    """Measured speed of the run, to turn steps into tokens and hours."""
    tokens_per_step: float | None = None
    seconds_per_step: float | None = None

    @classmethod
    def from_meta(cls, meta: Meta, tokens_per_step: float | None = None,
                  seconds_per_step: float | None = None) -> "Throughput":
        tps = tokens_per_step or meta.tokens_per_step
        sps = seconds_per_step or meta.seconds_per_step
        if sps is None and tps and meta.tokens_per_s:
            sps = tps / meta.tokens_per_s
        return cls(tps, sps)


@dataclass(frozen=True)
class Quantity:
    """A predicted amount with its 80% and 95% intervals (inf = unbounded)."""
    value: float
    interval80: tuple[float, float]
    interval95: tuple[float, float]

    def scaled(self, k: float) -> "Quantity":
        return Quantity(self.value * k, (self.interval80[0] * k, self.interval80[1] * k),
                        (self.interval95[0] * k, self.interval95[1] * k))

    def to_json(self) -> dict[str, Any]:
        return {"value": _f(self.value), "interval80": [_f(v) for v in self.interval80],
                "interval95": [_f(v) for v in self.interval95]}


@dataclass(frozen=True)
class Prediction:
    target: float
    metric: str
    x_axis: str
    model: str                       # the model that made the prediction (``chosen_by``)
    reachable: bool
    message: str                     # one human sentence with the answer
    x: Quantity | None               # on the x axis the curve was fitted on
    steps: Quantity | None
    tokens: Quantity | None
    hours: Quantity | None
    cost: Quantity | None
    unreachable_fraction: float      # bootstrap curves that never reach the target
    asymptote: float | None
    asymptote_ci95: tuple[float, float] | None
    already_reached_at: float | None  # x where the smoothed history first reached the target
    by_model: dict[str, float]       # each model's point prediction (inf = never)
    aic_best: str
    backtest_winner: str | None
    notes: tuple[str, ...] = field(default=())
    chosen_by: str = "AIC"           # "AIC", or "--model" where the caller named the model
    warning: str | None = None       # why the answer is no forecast (``straight_line_warning``)

    @property
    def interval80(self) -> tuple[float, float] | None:
        return self.steps.interval80 if self.steps else None

    @property
    def interval95(self) -> tuple[float, float] | None:
        return self.steps.interval95 if self.steps else None

    def to_json(self) -> dict[str, Any]:
        q = lambda v: None if v is None else v.to_json()  # noqa: E731
        return {"target": self.target, "metric": self.metric, "x_axis": self.x_axis,
                "model": self.model, "model_chosen_by": self.chosen_by,
                "reachable": self.reachable, "message": self.message,
                "steps": _f(self.steps.value) if self.steps else None,
                "interval80": [_f(v) for v in self.interval80] if self.steps else None,
                "interval95": [_f(v) for v in self.interval95] if self.steps else None,
                "x": q(self.x), "tokens": q(self.tokens), "hours": q(self.hours), "cost": q(self.cost),
                "unreachable_fraction": self.unreachable_fraction,
                "asymptote": _f(self.asymptote),
                "asymptote_ci95": None if self.asymptote_ci95 is None else [_f(v) for v in self.asymptote_ci95],
                "already_reached_at": _f(self.already_reached_at),
                "by_model": {k: _f(v) for k, v in self.by_model.items()},
                "aic_best": self.aic_best, "backtest_winner": self.backtest_winner,
                "notes": list(self.notes), "warning": self.warning}


def check_target(target: float, metric: str) -> None:
    """A target outside the metric's bounds (zhbert.metrics) is a typo, not a question."""
    info = metric_info(metric)
    if not math.isfinite(target):  # nan, inf passed the bounds below (a loss's: a report for --target nan)
        raise UserError(f"target {target:g}: give a finite number")
    if info.kind == "accuracy" and not 0.0 < target < 1.0:
        raise UserError(f"target {target:g}: {metric} is an accuracy, so the target must lie "
                        "between 0 and 1, e.g. 0.30 for 30%")
    if info.lower is not None and info.kind != "accuracy" and target <= info.lower:
        raise UserError(f"target {target:g}: {metric} is above {info.lower:g}; "
                        f"give a target above {info.lower:g}")


def _direction(metric: str, fits: Sequence[CurveFit], y: Any = None) -> int:
    """+1 when higher is better (accuracy), -1 for losses: the metric registry, else the
    saturating fit's direction, else the curve's own trend."""
    info = metric_info(metric)
    if info.direction:
        return info.direction
    saturating = [f for f in fits if f.model.asymptote is not None]
    if saturating:
        return saturating[0].model.direction
    return info.direction_for(y)


def _interval(samples: np.ndarray, level: float, point: float) -> tuple[float, float]:
    """Equal-tailed interval of bootstrap reach-steps; inf samples make the upper end inf."""
    if len(samples) == 0:
        return (point, point)
    return boot_interval(samples, level)


def _convert(x: Quantity, axis: str, tp: Throughput) -> dict[str, Quantity | None]:
    """The same prediction in steps, tokens and hours, where the throughput allows."""
    steps = tokens = hours = None
    if axis == "step":
        steps = x
    elif axis == "tokens":
        tokens = x
        steps = x.scaled(1 / tp.tokens_per_step) if tp.tokens_per_step else None
    else:
        hours = x.scaled(1 / 3600)
        steps = x.scaled(1 / tp.seconds_per_step) if tp.seconds_per_step else None
    if steps is not None:
        tokens = tokens or (steps.scaled(tp.tokens_per_step) if tp.tokens_per_step else None)
        hours = hours or (steps.scaled(tp.seconds_per_step / 3600) if tp.seconds_per_step else None)
    return {"steps": steps, "tokens": tokens, "hours": hours}


def _already_reached(series_x: np.ndarray, series_y: np.ndarray, target: float, d: int) -> float | None:
    if len(series_y) < 3:
        return None
    hit = np.nonzero(d * (smooth(series_y) - target) >= 0)[0]
    return float(series_x[hit[0]]) if len(hit) else None


def _unreachable_message(fit: CurveFit, target: float, d: int) -> str:
    if fit.asymptote is not None:
        # no interval without refits (--n-boot 0): say nothing of one, not "[nan, nan]"
        ci = fit.asymptote_ci95
        ci_text = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        return (f"not reachable with this setup: asymptote {fit.asymptote:.4g}{ci_text} "
                f"({fit.name} fit) is "
                f"{'below' if d > 0 else 'above'} the target {target:g}")
    return f"not reachable with this setup: the fitted {fit.name} curve moves away from {target:g}"


def _fits_for(source: Any, metric: str | None, x: str, n_boot: int,
              seed: int) -> tuple[list[CurveFit], Series | None, Meta | None, list[str]]:
    """Fits (best AIC first), the series they came from, and notes, for any input."""
    if isinstance(source, CurveFit):
        return [source], None, None, []
    if isinstance(source, (list, tuple)) and source and all(isinstance(f, CurveFit) for f in source):
        return sorted(source, key=lambda f: (not f.ok, f.aic)), None, None, []
    if not isinstance(source, History):
        raise TypeError("predict_steps takes a History, a CurveFit or a list of CurveFits")
    series, dropped = source.metric(metric).finite()
    notes = list(source.notes)
    if dropped:
        notes.append(f"{series.name}: ignored {dropped} non-finite value(s)")
    if source.meta.regimes:
        series = source.curve_part(series)
        notes.append(f"{series.name}: fitted{source.switch_text}")
    try:
        fits = fit_curve(series.x(x), series.y, n_boot=n_boot, seed=seed, metric=series.name)
    except UserError as exc:  # fit_curve sees numbers only: name the file they came from
        raise UserError(f"{source.meta.path}: {series.name}: {exc}") from None
    return fits, series, source.meta, notes


def _pick(fits: list[CurveFit], model: str | None) -> CurveFit:
    ok = [f for f in fits if f.ok]
    if not ok:
        raise UserError("no learning-curve model could be fitted: "
                        + "; ".join(f"{f.name}: {f.error}" for f in fits))
    if model is None:
        return ok[0]
    for f in ok:
        if f.name == model:
            return f
    raise UserError(f"model {model!r} was not fitted successfully; fitted: {', '.join(f.name for f in ok)}")


def _reach_all(fits: list[CurveFit], target: float, d: int) -> dict[str, float]:
    out = {}
    for f in fits:
        if f.ok:
            try:
                out[f.name] = f.reach(target, d)
            except UserError:
                continue  # a loss model asked about an accuracy target
    return out


def predict_steps(history_or_fit: Any, target: float, level: tuple[float, float] = (0.8, 0.95), *,
                  metric: str | None = None, x: str = "step", model: str | None = None,
                  price_per_hour: float | None = None, throughput: Throughput | None = None,
                  n_boot: int = 200, seed: int = 0) -> Prediction:
    """When does the metric reach ``target``? ``level`` are the two interval levels
    (reported as interval80 / interval95)."""
    if not math.isfinite(target):
        raise UserError(f"--target must be a number, got {target}")
    fits, series, meta, notes = _fits_for(history_or_fit, metric, x, n_boot, seed)
    check_target(target, series.name if series else "")
    fit = _pick(fits, model)
    d = _direction(series.name if series else "", fits, series.y if series is not None else None)
    tp = throughput or (Throughput.from_meta(meta) if meta else Throughput())
    already = _already_reached(series.x(x), series.y, target, d) if series is not None else None
    boot = fit.reach_boot(target, d)
    point = already if already is not None else fit.reach(target, d)
    unreach = float(np.mean(np.isinf(boot))) if len(boot) else 0.0
    reachable = math.isfinite(point)
    xq = None
    if reachable:
        xq = (Quantity(point, (point, point), (point, point)) if already is not None else
              Quantity(point, _interval(boot, level[0], point), _interval(boot, level[1], point)))
        if unreach > (1 - level[0]) / 2:
            notes.append(f"{unreach:.0%} of the bootstrap curves never reach {target:g}: "
                         "the upper end of the interval is infinite")
    units = _convert(xq, x, tp) if xq else {"steps": None, "tokens": None, "hours": None}
    cost = units["hours"].scaled(price_per_hour) if units["hours"] and price_per_hour else None
    if price_per_hour and reachable and cost is None:
        notes.append("no cost: the history does not record seconds per step (pass --seconds-per-step)")
    winner = _backtest_winner(series, x, [f.name for f in fits]) if series is not None else None
    if winner and winner != fit.name:
        notes.append(_winner_note(winner, fit.name, fits[0].name, model is not None))
    return Prediction(
        target=target, metric=series.name if series else "", x_axis=x, model=fit.name,
        reachable=reachable, message=_message(fit, target, d, xq, x, already),
        x=xq, cost=cost, **units, unreachable_fraction=unreach, asymptote=fit.asymptote,
        asymptote_ci95=fit.asymptote_ci95, already_reached_at=already,
        by_model=_reach_all(fits, target, d), aic_best=fits[0].name, backtest_winner=winner,
        notes=tuple(notes), chosen_by="--model" if model is not None else "AIC",
        warning=straight_line_warning(fit, series.x(x) if series is not None else None,
                                      xq.value if xq and already is None else None, x))


# the answer lies this many times further out than the fitted points span (and more): the
# families then extrapolate a shape the points never showed. Measured on tests/data (and
# tiny-4000 cut at 1,500/2,000 steps, the seed's cut at 20K/50K), the good answers lie at most
# 1.8 spans out; run-noeval's 15 training-batch points (steps 40-150) put 0.6 at 64 spans
HORIZON_SPANS = 4.0


def straight_line_warning(fit: CurveFit, xs: np.ndarray | None, point: float | None,
                          x: str = "step") -> str | None:
    """Why a schedule-free answer is no forecast: the family used is the straight line (AIC
    picks it where the points show no bend, so nothing in them says where the curve turns), or
    the answer lies over HORIZON_SPANS times as far out as the points span. The seed's line
    read 91% at 95K steps where its run reached 58%; run-noeval's 15 points from its first 150
    steps read 0.6 at step 6,998 without a word."""
    if point is None or xs is None or not len(xs):
        return None
    span = float(xs[-1] - xs[0])
    far = span <= 0 or point - xs[0] > HORIZON_SPANS * span
    # a line is fine for a step just past its points (hf-tiny-bert cut at 1,000: 0.118 at
    # 1,095, measured 0.1205 at 1,100); past one more span it says nothing of the bend
    beyond = span <= 0 or point - xs[-1] > span
    if not far and not (fit.name == "linear" and beyond):
        return None
    line = ("the fit is a straight line (linear): a straight line through a learning curve's "
            "start is no forecast of where it goes (learning curves bend and level off)")
    why = line if fit.name == "linear" else f"the {fit.name} curve is extrapolated far past its points"
    return (f"{why}; the points span {x} {xs[0]:,.0f} to {xs[-1]:,.0f} and the answer lies at "
            f"{point:,.0f}: train more steps, with held-out evals (train.eval_every), or ask "
            "the schedule-aware law, before trusting it")


def _winner_note(winner: str, used: str, aic_best: str, chosen: bool) -> str:
    """Why the backtest's favourite is not the model used: it read "over the AIC choice
    linear" for a --model linear whose AIC choice was exp."""
    if not chosen:
        return f"the backtest favours {winner} over the AIC choice {used}; compare by_model"
    return (f"the backtest favours {winner} over {used} (chosen with --model; the AIC choice "
            f"is {aic_best}); compare by_model")


def _message(fit: CurveFit, target: float, d: int, xq: Quantity | None, x: str,
             already: float | None) -> str:
    if already is not None:
        return f"already reached: the smoothed history first reaches {target:g} at {x} {already:,.0f}"
    if xq is None:
        return _unreachable_message(fit, target, d)
    if not has_interval(xq):  # --n-boot 0: no refits, no interval ("80%: 2,902 to 2,902")
        return f"reaches {target:g} at {x} {_fmt(xq.value)} (no interval without refits), {fit.name} fit"
    return (f"reaches {target:g} at {x} {_fmt(xq.value)} (80%: {_fmt(xq.interval80[0])} to "
            f"{_fmt(xq.interval80[1])}; 95%: {_fmt(xq.interval95[0])} to {_fmt(xq.interval95[1])}), "
            f"{fit.name} fit")


def has_interval(q: Quantity) -> bool:
    """Whether ``q`` has an interval: without bootstrap refits (``_interval``) both are the
    point itself."""
    return tuple(q.interval95) != (q.value, q.value)


def _fmt(v: float | None, digits: int = 0) -> str:
    if v is None or math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf (never)"
    # a curve that barely rises reaches a target after 1e17 steps: say so readably
    return f"{v:.2e}" if abs(v) >= 1e12 else f"{v:,.{digits}f}"


def _backtest_winner(series: Series, x: str, models: list[str]) -> str | None:
    """The model with the lowest error predicting the second half from the first."""
    xs = series.x(x)
    if len(xs) < 20:
        return None
    try:
        result = backtest(series, float(np.median(xs)), x=x, models=models)
    except UserError:
        return None
    return result.winner
