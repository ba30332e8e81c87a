"""Pruners: the forecast pruner and the `--pruner` choices.

The forecast pruner stops a trial when even the optimistic end of its forecast cannot
beat the best finished trial: for accuracy, the upper end of the 80% interval of the
forecast final held-out accuracy below the best final accuracy (for loss, the lower
end above the best loss). It keeps the trial until it has run ``min_fraction`` of its
steps, while no trial has finished, and when its history supports no forecast.

A forecast fitted to a plateau cannot see it end (a 6-trial sweep of 300-step trials
pruned its would-be best trial at step 75, forecast 5.2%, unpruned 11.7%). So a trial on
a plateau (``on_plateau``) or bending up off one (``accelerating``) is never pruned by its
forecast. "Barely moved" is judged robustly (``steady_evals``): one eval out of line with
the ones around it is a glitch, not movement (a trial flat at 0.0486 whose eval at step 63
read 0.0, and 0.0486 again at step 70, was pruned at 63 by a linear fit through the glitch,
forecast -0.004). From half its steps on (``CLIMB_FROM``) a plateau trial meets a bound
that needs no forecast instead (``climb_bound``): the most any trial of this sweep gained in
as many steps as it has left, from a value no worse than its own (the rise of an untrained
model to the plateau does not count), plus one held-out eval's 80% noise. When even that
climb ends below the best finished trial, it is pruned. Not earlier: early in a sweep nothing has
climbed far yet (that 300-step trial, flat at 0.0517 at step 75, would have been pruned by
the 0.021 the sweep had gained by then); late in a schedule the learning rate is low and a
climb slower than the ones seen earlier.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from zhbert.errors import UserError
from zhbert.analysis.forecast import Z80, Forecast
from zhbert.sweep.forecast import eval_noise_sd, forecast_final, within_bounds

PRUNERS = ("forecast", "median", "hyperband", "none")
FLAT_EVALS = 3
FLAT_SHARE = 0.05
CLIMB_FROM = 0.5  # the share of its steps after which a plateau trial may meet the climb bound


def steady_evals(values: list[float], sign: int = 1) -> list[float]:
    """The last FLAT_EVALS evals, one glitch aside: of the last FLAT_EVALS + 1 the one
    farthest from their median is left out, so one eval out of line (an eval that read 0.0
    on a plateau at 0.0486) is not taken for movement; a move that persists for two evals
    still shows. Not when that eval is the newest and better than the median: it may be the
    trial leaving its plateau (``accelerating`` judges it), so the last FLAT_EVALS then."""
    window = list(values[-FLAT_EVALS - 1:])
    if len(window) <= FLAT_EVALS:
        return window
    mid = statistics.median(window)
    far = max(range(len(window)), key=lambda i: abs(window[i] - mid))
    if far == len(window) - 1 and sign * (window[far] - mid) > 0:
        return window[1:]
    return window[:far] + window[far + 1:]


def on_plateau(values: list[float], sign: int = 1) -> bool:
    """The steady last FLAT_EVALS values (``steady_evals``, in step order) span less than
    FLAT_SHARE of the span of all of them: the curve has stopped moving, for now. The whole
    span keeps a glitch: a curve flat but for one glitch moved once and has stopped since.
    A curve that never moved is the flattest plateau (every early eval of the demo data
    reads 0.0607, the most frequent character: such a trial was pruned at step 50 by a
    forecast of 0.0607, where the best trial, just as flat to step 70, ended at 0.1083)."""
    if len(values) < FLAT_EVALS + 1:
        return False
    whole = max(values) - min(values)
    steady = steady_evals(values, sign)
    return whole == 0 or max(steady) - min(steady) < FLAT_SHARE * whole


def accelerating(values: list[float], sign: int = 1) -> bool:
    """The last step between evals is more than twice the mean size of the FLAT_EVALS
    before it, in the improving direction: the curve is bending up, leaving a plateau,
    which a forecast fitted mostly to the flat part cannot see (a saturating curve's
    steps shrink). A noisy flat curve passes this by chance ~5% of the time."""
    if len(values) < FLAT_EVALS + 2:
        return False
    d = [sign * (b - a) for a, b in zip(values[:-1], values[1:])]
    before = sum(abs(x) for x in d[-FLAT_EVALS - 1:-1]) / FLAT_EVALS
    return d[-1] > 0 and d[-1] > 2 * before


def climb_bound(curves: list[dict[int, float]], span: int, sign: int = 1,
                start_at: float | None = None) -> float | None:
    """The most any curve gained within ``span`` steps: max over the curves and over their
    eval pairs (t, t') with 0 < t' - t <= span of sign * (v(t') - v(t)), counting only
    pairs that start at least as well as ``start_at`` (sign * v(t) >= sign * start_at):
    the climb from where a trial is, not the rise of an untrained model to the plateau.
    None when no pair qualifies."""
    best = None
    for curve in curves:
        pts = sorted(curve.items())
        for i, (t0, v0) in enumerate(pts):
            if start_at is not None and sign * v0 < sign * start_at:
                continue
            for t1, v1 in pts[i + 1:]:
                if t1 - t0 > span:
                    break
                gain = sign * (v1 - v0)
                best = gain if best is None else max(best, gain)
    return best


@dataclass(frozen=True)
class Decision:
    prune: bool
    reason: str
    best: float | None = None
    forecast: Forecast | None = None

    def to_json(self) -> dict[str, Any]:
        return {"prune": self.prune, "reason": self.reason, "best_finished": self.best,
                "forecast": self.forecast.to_json() if self.forecast else None}


def decimals(a: float, b: float, least: int = 4) -> int:
    """The decimals that tell ``a`` from ``b`` when they differ (``least`` at least): a
    reason that printed its deciding bound and the best alike (0.11986 and 0.11994, both
    0.1199) read as a pruning against its own rule. Rounding keeps their order."""
    digits = least
    while digits < 17 and a != b and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return digits


def decide(forecast: Forecast, best: float, maximize: bool, metric: str = "eval_mlm_acc",
           total_steps: int | None = None) -> Decision:
    """Prune when the forecast's 80% interval lies wholly on the losing side of ``best``."""
    bound = forecast.hi80 if maximize else forecast.lo80
    prune = bound < best if maximize else bound > best
    at = f" at step {total_steps:,}" if total_steps else ""
    d = decimals(bound, best)  # the whole line in one precision, to be read side by side
    why = (f"forecast {metric}{at}: {forecast.mean:.{d}f} (80%: {forecast.lo80:.{d}f} to "
           f"{forecast.hi80:.{d}f}); best finished {best:.{d}f}")
    return Decision(prune, why, best, forecast)


class ForecastPruner(BasePruner):
    """An Optuna pruner over zhbert run directories (trial user attrs ``trial_dir``,
    relative to ``sweep_dir``, and ``total_steps``)."""

    def __init__(self, sweep_dir: str | Path, metric: str = "eval_mlm_acc",
                 min_fraction: float = 0.25,
                 forecaster: Callable[[Path, int, str], Forecast] | None = None) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.metric = metric
        self.min_fraction = min_fraction
        self.forecaster = forecaster or (lambda d, n, m: forecast_final(d, n, m))
        self.decisions: dict[int, Decision] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        decision = self.decide_trial(study, trial)
        self.decisions[trial.number] = decision
        return decision.prune

    def decide_trial(self, study: optuna.Study, trial: FrozenTrial) -> Decision:
        step, total = trial.last_step, trial.user_attrs.get("total_steps")
        if step is None or not total:
            return Decision(False, "no intermediate value yet")
        if step < self.min_fraction * total:
            return Decision(False, f"step {step} < {self.min_fraction:.0%} of {total} steps")
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]
        if not done:
            return Decision(False, "no finished trial to compare with")
        best = max(done) if maximize else min(done)
        values = [v for _, v in sorted(trial.intermediate_values.items())]
        sign = 1 if maximize else -1
        if on_plateau(values, sign):
            return self.plateau_decision(study, trial, values, best, maximize)
        if accelerating(values, sign):
            return Decision(False, f"bending up at step {step} (its last gain is more than twice the "
                                   "ones before): leaving a plateau, which a forecast cannot see", best)
        try:
            fc = self.forecaster(self.sweep_dir / trial.user_attrs["trial_dir"], int(total), self.metric)
        except (UserError, KeyError, ValueError) as exc:
            return Decision(False, f"no forecast: {exc}", best)
        # before it is compared or printed: an injected forecaster need not know the bounds
        fc = within_bounds(fc, self.metric)
        return decide(fc, best, maximize, self.metric, int(total))

    def plateau_decision(self, study: optuna.Study, trial: FrozenTrial, values: list[float],
                         best: float, maximize: bool) -> Decision:
        """A trial on a plateau: pruned only when the steepest climb this sweep has seen,
        over the steps it has left, cannot take it past the best (see the module's doc)."""
        step, total = trial.last_step, int(trial.user_attrs["total_steps"])
        sign = 1 if maximize else -1
        steady = steady_evals(values, sign)
        glitch = ("" if steady == values[-FLAT_EVALS:]
                  else f", one outlying eval of the last {FLAT_EVALS + 1} aside")
        kept = (f"on a plateau at step {step} (its last {FLAT_EVALS} evals barely moved{glitch}): "
                "a forecast cannot see it end")
        if step < CLIMB_FROM * total:
            return Decision(False, kept, best)
        recent = sorted(sign * v for v in steady)  # a glitch is not where the trial is
        now, low = recent[-1] * sign, recent[0] * sign  # its best and worst recent evals
        sd = eval_noise_sd(self.sweep_dir / trial.user_attrs.get("trial_dir", ""), self.metric)
        curves = [t.intermediate_values for t in study.get_trials(deepcopy=False)]
        # climbs that started no worse than its worst recent eval, less one eval's noise
        gain = climb_bound(curves, total - step, sign, start_at=low - sign * Z80 * sd)
        if gain is None or gain <= 0:
            return Decision(False, kept, best)
        reach = now + sign * (gain + Z80 * sd)
        left = f"{total - step:,} steps"
        d = decimals(reach, best)
        why = (f"on a plateau at step {step} at {now:.4f}; the most any trial of this sweep gained "
               f"in {left} is {gain:.4f}: at most {reach:.{d}f} at step {total:,} (one eval's 80% "
               f"noise included); best finished {best:.{d}f}")
        if (reach < best) if maximize else (reach > best):
            return Decision(True, why, best)
        return Decision(False, f"{kept}; {why}", best)


def make_pruner(name: str, sweep_dir: Path, metric: str, steps: int, eval_every: int) -> BasePruner:
    if name == "forecast":
        return ForecastPruner(sweep_dir, metric)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=steps // 4)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, eval_every), max_resource=steps)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"--pruner {name!r}: choose one of {', '.join(PRUNERS)}")
