"""The one place the sweep asks for a trial's final held-out metric.

``forecast_final(run_dir, total_steps)`` -> ``zhbert.analysis.forecast.Forecast``
(mean, lo80, hi80, lo95, hi95, method). First the schedule-aware law
(``zhbert.analysis.forecast.forecast_final``: the trial's own lr schedule, loss law +
loss->accuracy map, observation noise included). The law needs several evaluations
after the lr and sequence-length warm-ups; until it has them (or when it cannot be
fitted) the forecast comes from zhbert's schedule-free learning-curve families
(zhbert.analysis.curves, best by AIC, as `zhbert predict` picks it): the curve's value
at ``total_steps`` with an 80% band from the residual bootstrap, observation noise
included (the final eval is one noisy measurement, not the mean curve). ``method``
says which answered. For the loss objective only the curve families are used. The mean and
the intervals are clipped to the metric's bounds (``within_bounds``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from zhbert.analysis.forecast import Z80, Z95, Forecast
from zhbert.errors import UserError
from zhbert.metrics import metric_info

N_BOOT = 100  # refits per forecast: the worker forecasts at every eval, beside a training run
# the last evals whose scatter is a loss's noise (eval_noise_sd): on 2,000 seeds of a true sd
# of 0.02, 11 evals read 0.006-0.046 (1st-99th percentile), 21 read 0.009-0.037
NOISE_EVALS = 21


def forecast_final(run_dir: str | Path, total_steps: int, metric: str = "eval_mlm_acc",
                   n_boot: int = N_BOOT) -> Forecast:
    """Forecast ``metric`` at ``total_steps`` from the run's history so far.

    Raises UserError when the history supports no forecast at all (too few evaluations,
    no model converged); the pruner then keeps the trial running.
    """
    law_failed, fc = "", None
    if metric == "eval_mlm_acc":
        from zhbert.analysis.forecast import forecast_final as law_forecast
        try:
            fc = law_forecast(run_dir, total_steps, n_boot=n_boot)
        except UserError as exc:
            law_failed = f" (schedule-aware law: {exc})"
    fc = noise_floor(fc or curve_forecast(run_dir, total_steps, metric, n_boot, law_failed),
                     eval_noise_sd(run_dir, metric))
    return within_bounds(fc, metric)


def within_bounds(fc: Forecast, metric: str) -> Forecast:
    """``fc`` with its mean and interval ends clipped to ``metric``'s bounds (an accuracy
    to [0, 1], a loss to >= 0: zhbert.metrics), and a note saying so. Neither the curve
    families nor the noise floor know the bounds: a linear fit through a plateau with one
    eval at 0.0 forecast an accuracy of -0.004 (80%: -0.037 to 0.045), printed as is."""
    info = metric_info(metric)
    lo = -math.inf if info.lower is None else info.lower
    hi = math.inf if info.upper is None else info.upper
    ends = ("mean", "lo80", "hi80", "lo95", "hi95")
    if not any(getattr(fc, k) < lo or getattr(fc, k) > hi for k in ends):  # NaN stays NaN
        return fc
    clipped = {k: min(max(getattr(fc, k), lo), hi) for k in ends}
    note = f"clipped to {metric}'s bounds [{lo:g}, {hi:g}]"
    return replace(fc, **clipped, notes=(*fc.notes, note))


def noise_floor(fc: Forecast, sd: float) -> Forecast:
    """The forecast's intervals, never narrower than one held-out measurement's own
    sampling noise ``sd``: a curve flat on a plateau has ~0 residuals, and a 0-wide
    interval pruned the benchmark sweep's best trial."""
    m = fc.mean
    return replace(fc, lo80=min(fc.lo80, m - Z80 * sd), hi80=max(fc.hi80, m + Z80 * sd),
                   lo95=min(fc.lo95, m - Z95 * sd), hi95=max(fc.hi95, m + Z95 * sd),
                   sd=sd if math.isnan(fc.sd) else max(fc.sd, sd))


def curve_forecast(run_dir: str | Path, total_steps: int, metric: str, n_boot: int,
                   why: str = "") -> Forecast:
    from zhbert.analysis.curves import fit_curve
    from zhbert.analysis.history import load_history

    history = load_history(run_dir, metric)
    series = history.curve_part(history.metric(metric).finite()[0])  # after the length switch
    fits = [f for f in fit_curve(series.step, series.y, n_boot=n_boot, metric=metric) if f.ok]
    if not fits:
        raise UserError(f"{run_dir}: no learning-curve model fitted {metric}")
    best, x = fits[0], [float(total_steps)]
    (lo80,), (hi80,) = best.band(x, level=0.8, noise=True)
    (lo95,), (hi95,) = best.band(x, level=0.95, noise=True)
    return Forecast(float(best.predict(x)[0]), float(lo80), float(hi80), float(lo95), float(hi95),
                    f"curve families: {best.name} (best AIC) on {len(series)} evals up to step "
                    f"{int(series.step[-1]):,}{why}")


def eval_noise_sd(run_dir: str | Path, metric: str) -> float:
    """sd of one held-out measurement: from the last eval's recorded 95% interval (the
    trainer's Wilson interval, ``<metric>_ci95``: the accuracy has one). A metric without
    one (the loss) takes the scatter of its last NOISE_EVALS evals about a smooth curve
    (``ar.scatter_sd``); it was 0, and a loss objective then pruned on forecast intervals
    with no floor. 0 with fewer than 4 evals."""
    from zhbert.analysis.ar import scatter_sd
    from zhbert.history import eval_points, iter_records
    path = Path(run_dir) / "history.jsonl"
    records = list(iter_records(path)) if path.exists() else []
    ci = None
    for r in records:
        if r.get("type") == "eval" and isinstance(r.get(f"{metric}_ci95"), list):
            ci = r[f"{metric}_ci95"]
    if ci:
        return (float(ci[1]) - float(ci[0])) / (2 * Z95)
    values = [v for _, v in eval_points(records, metric)][-NOISE_EVALS:]
    return scatter_sd(values) if len(values) >= 4 else 0.0
