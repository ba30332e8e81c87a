"""``zhbert predict``: steps, tokens, hours to reach a target, with intervals.

The schedule-aware law (forecast.py, planning.py) wherever the history's lr is known;
else, or with ``--law none``, the schedule-free families of one run (predict.py),
saying why.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from zhbert.analysis.history import History, load_history
from zhbert.analysis.planning import add_input_arguments
from zhbert.analysis.predict import Prediction, Throughput, _fmt, check_target, has_interval, predict_steps
from zhbert import argtypes
from zhbert.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from zhbert.analysis.planning import add_plan_arguments
    add_input_arguments(parser, nargs="+")
    # the value options' ranges are argparse's (argtypes), but --target's depends on the metric:
    # planning.check_plan_args and predict.check_target
    parser.add_argument("--target", type=float, help="target value, e.g. 0.60")
    add_plan_arguments(parser)
    parser.add_argument("--model", help="schedule-free family to use instead of the best by AIC")
    parser.add_argument("--price-per-hour", type=argtypes.price_per_hour,
                        help="USD per hour of the training machine")
    parser.add_argument("--tokens-per-step", type=argtypes.tokens_per_step,
                        help="override the recorded tokens per step")
    parser.add_argument("--seconds-per-step", type=argtypes.seconds_per_step,
                        help="override the recorded seconds per step")
    parser.add_argument("--n-boot", type=argtypes.boot_count, default=200, help="bootstrap refits of the law or "
                        "curve (default 200, at least 20; 0: the law's delta-method intervals)")
    parser.add_argument("--seed", type=argtypes.seed, default=0,
                        help="seed of the bootstrap refits (the same seed, the same intervals)")


def _families_hint(paths: list[str]) -> str:
    """"; or ask ... --law none" where the schedule-free families can answer: one run, with
    the points they need after its length switch (History.curve_part)."""
    if len(paths) != 1:
        return ""
    try:
        h = load_history(paths[0])
        h.curve_part(h.metric().finite()[0])
    except UserError:
        return ""
    return "; or ask the schedule-free curves with --law none --target VALUE"


def _too_few(paths: list[str], said: str) -> str:
    """laws' "needs at least 6 eval points (have 2)", naming the one run given (its path: a
    demo run's label is "run"). A run with under 2 held-out losses is fitted on its training
    loss (plan_runs.load_run), whose log lines were counted as "eval points": say so."""
    if len(paths) != 1:
        return said
    from zhbert.analysis.plan_runs import load_run
    try:
        run = load_run(paths[0])
    except UserError:
        return f"{paths[0]}: {said}"
    if run.loss_metric.startswith("eval"):
        return f"{paths[0]}: {said}"
    held = [n for n in ("eval_mlm_loss", "eval_loss") if n in run.history.series]
    kept = int(np.isfinite(run.history.series[held[0]].y).sum()) if held else 0
    return (f"{paths[0]}: {kept} held-out loss point(s), too few, so the law reads the training "
            f"loss ({run.loss_metric}) and " + said.replace("eval points", f"points of {run.loss_metric}"))


def _answer(p, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """planning.answer, naming the runs where they record no accuracy (Planner.accuracy's
    message names none, and a Trainer state without eval entries was not told which)."""
    from zhbert.analysis import planning
    try:
        return planning.answer(p, args)
    except UserError as exc:
        if p.accmap is not None:
            raise
        raise UserError(f"{', '.join(map(str, args.history))}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """The schedule-aware law where the lr is known (planning.py); else, or with --law none,
    the schedule-free families of one run, saying why."""
    from zhbert.analysis import planning
    from zhbert.analysis.forecast import plan
    from zhbert.analysis.plan_runs import NoLearningRate
    from zhbert.analysis.laws import TooFewPoints
    from zhbert.schedule import schedule_name
    args.schedule = schedule_name(args.schedule)  # before check_plan_args refuses "WSD"
    planning.check_plan_args(args)
    why = "--law none" if args.law == "none" else "--model / --x name a schedule-free fit"
    if args.law != "none" and not (args.model or args.x != "step"):
        try:
            p = plan(args.history, args.law, args.n_boot, seed=args.seed)
        except NoLearningRate as exc:
            why = str(exc)
        except TooFewPoints as exc:  # the families may still answer: say so where they can
            raise UserError(f"{_too_few(args.history, str(exc))}{_families_hint(args.history)}") from None
        else:
            # naming the accuracy the law forecasts anyway keeps the law (it switched methods);
            # naming its loss asks the law too (planning.target_metric: reached from above)
            if args.metric in (None, p.runs[0].acc_metric, p.runs[0].loss_metric):
                if args.metric is not None and args.target is not None:
                    check_target(args.target, args.metric)  # a loss target of 0 or less
                out, text = _answer(p, args)
                print(json.dumps(out, indent=2, default=float) if args.json else "\n".join(text))
                return 0
            why = (f"--metric {args.metric} is not the accuracy the law forecasts "
                   f"({p.runs[0].acc_metric}) nor its loss ({p.runs[0].loss_metric})")
    if len(args.history) > 1:
        raise UserError(f"the schedule-free families fit one run at a time ({why}); give one run")
    if args.target is None:
        raise UserError(f"without a schedule-aware law ({why}) only --target can be answered")
    _refuse_schedule_options(args, why)
    args.history = args.history[0]
    return _run_families(args, why)


def _refuse_schedule_options(args: argparse.Namespace, why: str) -> None:
    """The schedule-free families follow the one run's own curve: an answer that ignored
    --lr 0.01 --schedule constant read as if it were about that run (it was the same answer)."""
    given = [opt for opt, value in (("--lr", args.lr), ("--schedule", args.schedule),
                                    ("--warmup", args.warmup),
                                    ("--compare-schedules", args.compare_schedules or None))
             if value is not None]
    if given:
        raise UserError(f"{', '.join(given)}: the schedule-free curve families ({why}) follow the "
                        "run's own schedule and cannot forecast another; drop "
                        f"{'it' if len(given) == 1 else 'them'}" + (
                            ", or ask the schedule-aware law (no --law none, --model or --x)"
                            if args.law == "none" or args.model or args.x != "step" else ""))


def _run_families(args: argparse.Namespace, why: str) -> int:
    history = load_history(args.history, args.metric)
    tp = Throughput.from_meta(history.meta, args.tokens_per_step, args.seconds_per_step)
    pred = predict_steps(history, args.target, metric=args.metric, x=args.x, model=args.model,
                         price_per_hour=args.price_per_hour, throughput=tp, n_boot=args.n_boot,
                         seed=args.seed)
    fallback = f"schedule-free curve families, not the schedule-aware law: {why}"
    if args.json:
        print(json.dumps({"run": history.meta.run, "metric_reason": history.default_reason
                          if not args.metric else "chosen with --metric", "method": fallback,
                          **pred.to_json()}, indent=2))
    else:
        print(prediction_text(pred, history) + f"\nnote: {fallback}")
    return 0


def prediction_text(pred: Prediction, history: History | None = None) -> str:
    lines = []
    if history is not None:
        lines.append(f"run {history.meta.run} ({history.meta.source}); metric {pred.metric}")
    winner = f"; backtest winner {pred.backtest_winner}" if pred.backtest_winner else ""
    chosen = "chosen with --model; " if pred.chosen_by == "--model" else ""
    lines.append(f"model: {pred.model} ({chosen}best AIC {pred.aic_best}{winner})")
    if pred.asymptote is not None and pred.asymptote_ci95:
        lo, hi = pred.asymptote_ci95
        lines.append(f"fitted ceiling: {pred.asymptote:.4f} [{lo:.4f}, {hi:.4f}]")
    lines.append(pred.message)
    if pred.warning:
        lines.append(f"warning: {pred.warning}")
    for name, unit in (("steps", ""), ("tokens", ""), ("hours", ""), ("cost", " USD")):
        q = getattr(pred, name)
        if q is not None and pred.already_reached_at is None:
            digits = 1 if name in ("hours", "cost") else 0
            lines.append(f"  {name:<6} {_fmt(q.value, digits)}{unit}" + (
                f"   80%: {_fmt(q.interval80[0], digits)} to {_fmt(q.interval80[1], digits)}   95%: "
                f"{_fmt(q.interval95[0], digits)} to {_fmt(q.interval95[1], digits)}" if has_interval(q) else ""))
    lines.append("by model: " + ", ".join(f"{k} {_by_model(v)}" for k, v in pred.by_model.items()))
    lines += [f"note: {n}" for n in pred.notes]
    return "\n".join(lines)


def _by_model(v: float) -> str:
    """One family's answer: a crossing at step 0 (the family's curve is at the target from
    its start: curve_models clamps its solution there) read "linear 0", as if 0 steps would do."""
    return "already reached" if v is not None and v <= 0 else _fmt(v)
