"""A run's outlook under the schedule-aware law, computed once for every place that shows it.

    from zhbert.analysis.outlook import outlook
    o = outlook("runs/tiny", target=0.40)
    o.final.mean, o.final_longer.mean, o.reach.steps, o.to_json()

``analyze`` (report and prediction.png), the dashboard's "steps to target" and
``compare`` all ask this: the held-out accuracy where the run's own schedule ends,
where the same schedule stretched to a longer run would end, and how many steps
(the schedule stretched to them) a target costs, with intervals (forecast.py,
planning.reach). Where the history records no learning rate it raises
forecast.NoLearningRate and the caller falls back to the schedule-free families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from zhbert.analysis.forecast import Forecast, Planner, plan
from zhbert.analysis.plan_runs import fit_from
from zhbert.analysis.plateau import plateau_warning
from zhbert.analysis.planning import Reach, reach
from zhbert.errors import UserError
from zhbert.metrics import ACC_METRICS

LONGER = 2            # the longer run drawn beside the current one: this many times its length
MAX_LONGER = 16       # ... or as long as the target needs, up to this many times
POINTS = 60


@dataclass(frozen=True)
class Outlook:
    run: str
    method: str
    acc_metric: str
    observed: dict[str, list[float]]    # step, acc: what the run measured
    planned: int                        # the run's own schedule length
    longer: int                         # the stretched run drawn beside it
    current: dict[str, list[float]]     # Planner.curve along the run's own schedule
    stretched: dict[str, list[float]]   # ... along the schedule stretched to ``longer``
    final: Forecast                     # accuracy at the end of the run's own schedule
    final_longer: Forecast
    reach: Reach | None
    notes: tuple[str, ...] = ()
    warning: str | None = None          # the plateau's (plateau.plateau_warning), also in notes

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "method": self.method, "metric": self.acc_metric,
                "planned_steps": self.planned, "longer_steps": self.longer,
                "final": self.final.to_json(), "final_longer": self.final_longer.to_json(),
                "reach": self.reach and self.reach.to_json(), "current": self.current,
                "stretched": self.stretched, "notes": list(self.notes), "warning": self.warning}

    def summary(self) -> str:
        line = (f"{self.method}: {self.acc_metric} {self.final.mean:.4f} at the end of this schedule "
                f"({self.planned:,} steps; 80% {self.final.lo80:.4f}-{self.final.hi80:.4f}), "
                f"{self.final_longer.mean:.4f} for the same schedule over {self.longer:,} steps")
        line += f"; {self.reach.message}" if self.reach else ""
        return line + (f"; warning: {self.warning}" if self.warning else "")


def _plan_with_accuracy(source: Any, n_boot: int, seed: int = 0) -> Planner:
    p = plan([source], n_boot=n_boot, seed=seed)
    if p.accmap is None or p.runs[0].acc is None:
        raise UserError(f"{p.runs[0].curve.name} records no held-out accuracy beside its loss: "
                        "only the loss can be forecast (zhbert predict)")
    return p


def _target_kind(run: Any, metric: str | None) -> str:
    """"loss" for the law's own loss metric, "accuracy" for its accuracy; another (the
    training batches' loss or accuracy where the law fits the held-out ones) is no target the
    law can answer: `analyze --metric mlm_acc --target` had answered with eval_mlm_acc's law,
    where predict refused."""
    if metric is None or metric == run.acc_metric:
        return "accuracy"
    if metric in ACC_METRICS:
        raise UserError(f"the law forecasts {run.acc_metric}, not {metric}: pass --metric "
                        f"{run.acc_metric} for an accuracy target it can answer")
    if metric != run.loss_metric:
        raise UserError(f"the law is fitted to {run.loss_metric}, not {metric}: pass --metric "
                        f"{run.loss_metric} for a loss target it can answer")
    return "loss"


def _curve(p, schedule, n: int) -> dict[str, list[float]]:
    """The law's curve where it holds: after the lr warm-up and the short-sequence phase
    (plan_runs.load_run fits from there); Planner.curve keeps its bands inside [0, 1]."""
    steps = np.unique(np.linspace(fit_from(schedule), n, POINTS).astype(int))
    c = p.curve(schedule, steps)
    return {k: [float(v) for v in vals] for k, vals in c.items()}


def outlook(source: Any, target: float | None = None, n_boot: int = 0, seed: int = 0,
            metric: str | None = None) -> Outlook:
    """The outlook of one run (a run directory or history file) under the annealing law;
    ``target``: also the steps a run (this schedule, stretched) needs to reach it, an accuracy
    unless ``metric`` names the loss the law fits (then a loss, reached from above)."""
    p = _plan_with_accuracy(source, n_boot, seed)  # seed: analyze --seed's refits
    run = p.runs[0]
    base = p.base
    got = reach(p, target, base.stretched, _target_kind(run, metric)) if target is not None else None
    longer = LONGER * base.steps
    if got is not None and got.reachable and got.steps and math.isfinite(got.steps):
        longer = int(min(max(longer, math.ceil(got.steps * 1.1)), MAX_LONGER * base.steps))
    far = base.stretched(longer)
    final_longer = p.accuracy(far, [longer])
    warning = plateau_warning(p, final_longer.mean, answers=[got] if got else [])
    return Outlook(run.curve.name, p.method, run.acc_metric or "accuracy",
                   {"step": [float(s) for s in run.curve.steps], "acc": [float(a) for a in run.acc]},
                   base.steps, longer, _curve(p, base, base.steps), _curve(p, far, longer),
                   p.accuracy(base, [base.steps]), final_longer, got,
                   tuple(p.notes) + ((warning,) if warning else ()), warning)


def steps_to_targets(source: Any, targets: tuple[float, ...]) -> dict[str, Any]:
    """One law fitted to one run, asked for several targets (``compare``): the accuracy at
    the end of its schedule and, per target, the steps a run of that schedule needs; the
    plateau warning of them all, as analyze and predict decide it (``plateau_warning``)."""
    p = _plan_with_accuracy(source, 0)
    final = p.accuracy(p.base, [p.base.steps])
    got = {f"{t:g}": reach(p, t, p.base.stretched) for t in targets}
    return {"method": p.method, "final": final.to_json(), "planned_steps": p.base.steps,
            "reach": {k: r.to_json() for k, r in got.items()},
            "warning": plateau_warning(p, final.mean, answers=list(got.values()))}


