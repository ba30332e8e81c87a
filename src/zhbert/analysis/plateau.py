"""The plateau in a forecast's answers: the law (laws.py) has no plateau term, so it carries
the fitted runs' way off their plateau over to the run asked about. These warnings say where
that is not to be trusted, decided here once for predict, analyze, the dashboard (outlook.py)
and compare: a forecast far above what the runs reached (``plateau_warning``, with
forecast.Planner.climb_warning), a run whose lr decays before the fitted runs left their
plateau (``decay_warning``), and fitted runs none of which left it (``stalled_warning``).
Where a schedule kind or warm-up is new to the law: extrapolation.schedule_warning."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from zhbert.schedule import Schedule


def plateau_warning(p: Any, *forecasts: float, answers: Sequence[Any] = ()) -> str | None:
    """The plateau warning (``Planner.climb_warning``) of one answer, decided here once for
    predict, analyze, the dashboard (outlook.py) and compare, on the highest accuracy the
    answer relies on: each forecast it shows, and each target it reaches (the accuracy
    forecast at the steps found; an "uncertain" answer already says it is one).
    Checking only a forecast at --steps N left predict --target 0.3 and compare's "steps to
    0.3" silent on a run still on its plateau while analyze warned."""
    targets = [(acc, r) for r in answers if r.reachable and (acc := _target_accuracy(p, r)) is not None]
    if not forecasts and not targets:
        return joined(stalled_warning(p)) if answers else None
    # worded for what sets it off: the highest is a target reached, or a forecast shown
    top_target, top = max(targets, default=(-np.inf, None), key=lambda t: t[0])
    climb = (p.climb_warning(top_target, target=True, loss=top.target if top.metric == "loss" else None)
             if top_target > max(forecasts, default=-np.inf) else p.climb_warning(max(forecasts)))
    return joined(climb, stalled_warning(p))


def _target_accuracy(p: Any, r: Any) -> float | None:
    """The accuracy a reached target stands for: itself, or the map's reading of a loss target
    (a loss of 2.0 from tiny-4000, 66% where the run measured 40%, had gone unwarned)."""
    if getattr(r, "metric", "accuracy") != "loss":
        return r.target
    return None if p.accmap is None else float(p.accmap(r.target))


def stalled_warning(p: Any) -> str | None:
    """A warning when no fitted run has left its plateau (``plateau_exit``): the law then
    extends the plateau, and a longer run may leave it, or not. From tiny-1000 (14.1% at its
    end), a 2,000-step run read 16.0% (80%: 15.0-16.7%) where tiny-2000 left it for 31.7%."""
    with_acc = [r for r in p.runs if r.acc is not None]
    # only runs whose history shows their start (before their warm-ups end): one that begins
    # later (a resumed or foreign log from step 2,500) may have left its plateau before it
    seen = [r for r in with_acc if len(r.curve.steps) and r.curve.steps[0] < r.curve.fit_from]
    if not seen or len(seen) < len(with_acc) or any(plateau_exit(r) is not None for r in seen):
        return None
    return (f"no fitted run has left its plateau (its accuracy never rose {LEFT_PLATEAU * 100:.0f} "
            "points past where its fit begins): the law extends the plateau, and whether or when "
            "a longer run leaves it is not in these runs; the forecast may be far off either way")


# a run has left its plateau once its accuracy is this far above where its fit begins: tiny-1000,
# which never left it, crept up 4 points (10.1% to 14.1%); tiny-2000 and tiny-4000 passed it
# at steps 750 and 900, on their way to 31.7% and 40.5%
LEFT_PLATEAU = 0.05


def plateau_exit(run: Any) -> int | None:
    """The step at which a fitted run had left its plateau (its accuracy LEFT_PLATEAU above
    its first point after the warm-up and the short-sequence phase, and no earlier than its
    first fitted step); None where it never did, or records no accuracy."""
    if run.acc is None:
        return None
    after = run.curve.steps >= run.curve.fit_from
    if after.sum() < 2:
        return None
    steps, acc = run.curve.steps[after], run.acc[after]
    above = np.nonzero(acc >= acc[0] + LEFT_PLATEAU)[0]
    return None if len(above) == 0 else max(int(steps[above[0]]), int(run.curve.start))


def decay_warning(p: Any, sched: Schedule) -> str | None:
    """A warning when the run asked about ends, or has its lr under half of a fitted run's,
    by the step that run had left its plateau. The law is fitted from after the plateau and
    assumes the run leaves it: from tiny-4000, a 1,000-step run read 29.5% (95%: 27.6-30.8%)
    where tiny-1000, whose lr had decayed first, stayed on the plateau at 14.1%."""
    exits = [(e, r) for r in p.runs if (e := plateau_exit(r)) is not None]
    if not exits:
        return None
    step, run = max(exits, key=lambda x: x[0])  # the slowest to leave: the least it took
    if step < sched.steps and sched.at(step) >= 0.5 * run.curve.schedule.at(step):
        return None
    why = (f"ends before step {step:,}" if step >= sched.steps else
           f"has its lr at step {step:,} ({sched.at(step):.2g}) under half of {run.curve.name}'s there "
           f"({run.curve.schedule.at(step):.2g})")
    return (f"this {sched.steps:,}-step run {why}, the step by which {run.curve.name} had left the "
            "plateau: the forecast assumes it leaves the plateau as the fitted runs did; a run whose "
            "lr is lower by then may never leave it; read it as an upper estimate")


def joined(*lines: str | None) -> str | None:
    """Several warnings of one answer as one line (None when there are none)."""
    kept = [w for w in lines if w]
    return "; and ".join(kept) if kept else None
