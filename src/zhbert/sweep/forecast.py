"""The one place the sweep asks for a trial's final held-out metric.

``forecast_final(run_dir, total_steps)`` -> ``Forecast(mean, lo80, hi80, method, ...)``.
Today it fits zhbert's learning-curve families (zhbert.analysis.curves, the best by AIC,
as `zhbert predict` picks it) to the run's held-out evaluations and reads the curve's
value at ``total_steps`` with an 80% band from the residual bootstrap, observation noise
included (the final eval is one noisy measurement, not the mean curve). A
schedule-aware law (the planning work) can replace the body of this one function;
the pruner and the reports only see ``Forecast``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zhbert.errors import UserError

N_BOOT = 100  # refits per forecast: the worker fits at every eval, beside a training run


@dataclass(frozen=True)
class Forecast:
    mean: float          # forecast metric at total_steps
    lo80: float          # 80% interval of the final observation
    hi80: float
    method: str          # e.g. "curve families: exp (best AIC)"
    metric: str
    step: int            # last step the forecast saw
    total_steps: int
    n_points: int

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def forecast_final(run_dir: str | Path, total_steps: int, metric: str = "eval_mlm_acc",
                   n_boot: int = N_BOOT) -> Forecast:
    """Forecast ``metric`` at ``total_steps`` from the run's history so far.

    Raises UserError when the history cannot support a forecast (too few evaluations,
    no model converged); the pruner then keeps the trial running.
    """
    from zhbert.analysis.curves import fit_curve
    from zhbert.analysis.history import load_history

    series, _ = load_history(run_dir, metric).metric(metric).finite()
    fits = [f for f in fit_curve(series.step, series.y, n_boot=n_boot, metric=metric) if f.ok]
    if not fits:
        raise UserError(f"{run_dir}: no learning-curve model fitted {metric}")
    best = fits[0]
    lo, hi = best.band([float(total_steps)], level=0.8, noise=True)
    return Forecast(mean=float(best.predict([float(total_steps)])[0]), lo80=float(lo[0]),
                    hi80=float(hi[0]), method=f"curve families: {best.name} (best AIC)",
                    metric=metric, step=int(series.step[-1]), total_steps=int(total_steps),
                    n_points=len(series))
