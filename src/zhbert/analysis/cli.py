"""``zhbert backtest``: would the learning curve have predicted the rest of the run?

Two modes:
  zhbert backtest RUN --fit-until X          fit the schedule-free families on x <= X,
                                             score them on the rest of RUN
  zhbert backtest --predict RUN_B --from RUN_A [RUN_A2 ...] [--fit-until X]
                                             fit the schedule-aware law on the shorter runs
                                             (and on RUN_B up to X when given), predict
                                             RUN_B's held-out accuracy point by point;
                                             the schedule-free families beside it

(``zhbert predict`` lives in predict_command.py; each command is one module.)
"""

from __future__ import annotations

import argparse
import json

from zhbert.analysis.backtest import backtest, backtest_table
from zhbert.analysis.history import load_history
from zhbert import argtypes
from zhbert.analysis.planning import add_input_arguments
from zhbert.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, nargs="?")
    # an x of the history (a step, a token count, seconds): > 0; past its last point, backtest says so
    parser.add_argument("--fit-until", type=argtypes.positive,
                        help="fit on the history up to this x (e.g. 50000), predict the rest")
    parser.add_argument("--at", type=argtypes.positive, help="also show each model's prediction at this x")
    parser.add_argument("--models", help="comma-separated models (default: all for the metric)")
    parser.add_argument("--predict", metavar="RUN_B", help="the run to predict from other runs")
    parser.add_argument("--from", dest="from_runs", nargs="+", metavar="RUN_A", default=[],
                        help="the runs to fit on (same model and data, shorter or other schedules)")
    parser.add_argument("--law", default="lr_annealing",
                        help="schedule-aware laws to score, comma-separated: lr_annealing (default), "
                             "multi_power (slower, delta-method interval)")
    parser.add_argument("--n-boot", type=argtypes.boot_count, default=200, help="bootstrap refits of "
                        "each law for its interval (default 200, at least 20; 0: the delta method's)")


def run(args: argparse.Namespace) -> int:
    if args.predict or args.from_runs:
        return _run_between(args)
    if args.history is None or args.fit_until is None:
        raise UserError("give RUN --fit-until X, or --predict RUN_B --from RUN_A [RUN_A2 ...]")
    history = load_history(args.history, args.metric)
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    result = backtest(history, args.fit_until, metric=args.metric, x=args.x, models=models, at=args.at)
    if args.json:
        print(json.dumps({"run": history.meta.run, **result.to_json()}, indent=2))
    else:
        print(f"run {history.meta.run} ({history.meta.source}); metric {result.metric}: "
              f"{history.default_reason if not args.metric else 'chosen with --metric'}")
        print(backtest_table(result))
    return 0


def _run_between(args: argparse.Namespace) -> int:
    from zhbert.analysis.plan_runs import load_run, refuse_copies, refuse_repeats
    from zhbert.analysis.laws import LAWS, TooFewPoints
    from zhbert.analysis.run_backtest import backtest_runs, backtest_runs_table
    if not args.predict or not (args.from_runs or args.fit_until):
        raise UserError("--predict RUN_B needs --from RUN_A [RUN_A2 ...] (or --fit-until X)")
    laws = [w.strip() for w in args.law.split(",") if w.strip()]
    bad = [w for w in laws if w not in LAWS]
    if not laws:  # --law '' was max() of an empty list
        raise UserError(f"--law names no law; use one or more of {', '.join(LAWS)}")
    if bad:
        raise UserError(f"--law {','.join(bad)}: unknown; use {', '.join(LAWS)}")
    # the run predicted among its sources is fitted on its own answer: scored 0.1 points off
    why = "the run --predict names is among --from: fitted on its own answer, it is scored on what it was given"
    refuse_repeats(args.from_runs)  # a source twice first, in its own words (it read as a leak)
    refuse_repeats([*args.from_runs, args.predict], why)
    target, sources = load_run(args.predict), [load_run(r) for r in args.from_runs]
    refuse_copies(sources)
    refuse_copies([*sources, target], why)
    try:
        result = backtest_runs(target, sources, laws, until=args.fit_until, n_boot=args.n_boot)
    except TooFewPoints as exc:  # the law's words name no file: the runs it was fitted on
        fitted = [*args.from_runs, *([args.predict] if args.fit_until else [])]
        raise UserError(f"{', '.join(map(str, fitted))}: {exc}") from None
    print(json.dumps(result.to_json(), indent=2) if args.json else backtest_runs_table(result))
    return 0
