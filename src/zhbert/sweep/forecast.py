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
says which answered. For the loss objective only the curve families are used.
"""

from __future__ import annotations

from pathlib import Path

from zhbert.analysis.forecast import Forecast
from zhbert.errors import UserError

N_BOOT = 100  # refits per forecast: the worker forecasts at every eval, beside a training run


def forecast_final(run_dir: str | Path, total_steps: int, metric: str = "eval_mlm_acc",
                   n_boot: int = N_BOOT) -> Forecast:
    """Forecast ``metric`` at ``total_steps`` from the run's history so far.

    Raises UserError when the history supports no forecast at all (too few evaluations,
    no model converged); the pruner then keeps the trial running.
    """
    law_failed = ""
    if metric == "eval_mlm_acc":
        from zhbert.analysis.forecast import forecast_final as law_forecast
        try:
            return law_forecast(run_dir, total_steps, n_boot=n_boot)
        except UserError as exc:
            law_failed = f" (schedule-aware law: {exc})"
    return curve_forecast(run_dir, total_steps, metric, n_boot, law_failed)


def curve_forecast(run_dir: str | Path, total_steps: int, metric: str, n_boot: int,
                   why: str = "") -> Forecast:
    from zhbert.analysis.curves import fit_curve
    from zhbert.analysis.history import load_history

    series, _ = load_history(run_dir, metric).metric(metric).finite()
    fits = [f for f in fit_curve(series.step, series.y, n_boot=n_boot, metric=metric) if f.ok]
    if not fits:
        raise UserError(f"{run_dir}: no learning-curve model fitted {metric}")
    best, x = fits[0], [float(total_steps)]
    lo80, hi80 = best.band(x, level=0.8, noise=True)
    lo95, hi95 = best.band(x, level=0.95, noise=True)
    return Forecast(float(best.predict(x)[0]), float(lo80[0]), float(hi80[0]), float(lo95[0]),
                    float(hi95[0]), f"curve families: {best.name} (best AIC) on {len(series)} "
                                    f"evals up to step {int(series.step[-1]):,}{why}")
