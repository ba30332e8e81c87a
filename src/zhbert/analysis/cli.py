"""``zhbert backtest``: would the learning curve have predicted the rest of the run?

(``zhbert predict`` lives in predict.py; each command is one module.)
"""

from __future__ import annotations

import argparse
import json

from zhbert.analysis.history import load_history
from zhbert.analysis.predict import add_input_arguments, backtest, backtest_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--fit-until", type=float, required=True,
                        help="fit on the history up to this x (e.g. 50000), predict the rest")
    parser.add_argument("--at", type=float, help="also show each model's prediction at this x")
    parser.add_argument("--models", help="comma-separated models (default: all for the metric)")


def run(args: argparse.Namespace) -> int:
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
