"""``zhbert analyze``: the study of one run as analysis.json, plots and a report.

    zhbert analyze runs/base                   # -> runs/base/analysis/
    zhbert analyze seed_history.json --target 0.6 --out study/

Compute, then render: zhbert.report_analysis runs the study (``analyze`` -> an
``Analysis`` with ``.to_json()``), zhbert.report_render draws and writes it
(charts, report.md, report.html, staged so a reader never sees half an analysis).
This module is the command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zhbert.analysis import load_history
from zhbert.analysis.planning import add_input_arguments
from zhbert import argtypes
from zhbert.outputs import check_out
from zhbert.report_analysis import DEFAULT_TARGET, analyze
from zhbert.report_render import MARKER, summary_text, write_analysis


def default_out(path: Path) -> Path:
    return path / "analysis" if path.is_dir() else path.parent / f"{path.stem}_analysis"


def move_old_probe_files(run_dir: Path) -> None:
    """`zhbert probe` wrote its plot into RUN/analysis before it had its own folder
    (run.PROBE_DIR): there, analyze refused the folder (no analysis.json) or deleted them
    when it replaced its own. Move them to the probe's folder first."""
    import os
    from zhbert.run import PROBE_DIR

    old = sorted((run_dir / "analysis").glob("probe_vs_mlm.*"))
    if old:
        (run_dir / PROBE_DIR).mkdir(exist_ok=True)
        for f in old:
            if (run_dir / PROBE_DIR / f.name).exists():  # a newer probe wrote its own
                f.unlink()
            else:
                os.replace(f, run_dir / PROBE_DIR / f.name)


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--target", type=float, help=f"target for the prediction (default "
                        f"{DEFAULT_TARGET} for accuracy metrics)")
    parser.add_argument("--out", type=argtypes.out_path, help="output directory (default RUN_DIR/analysis, or NAME_analysis "
                        "next to a history file)")
    parser.add_argument("--n-boot", type=argtypes.boot_count, default=200,
                        help="bootstrap refits per curve and law (default 200, at least 20; 0: no refits: "
                        "the law's delta-method intervals, none for the curves)")
    parser.add_argument("--seed", type=argtypes.seed, default=0,
                        help="seed of the bootstrap refits (the same seed, the same intervals)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.history)
    history = load_history(path, args.metric)
    out = Path(args.out) if args.out else default_out(path)
    if path.is_dir() and out.resolve() == default_out(path).resolve():  # RUN/analysis
        move_old_probe_files(path)
    check_out(out, MARKER)  # before minutes of fitting, not after
    a = analyze(history, x=args.x, target=args.target, n_boot=args.n_boot, seed=args.seed)
    j = write_analysis(a, out)
    print(json.dumps(j, indent=2, ensure_ascii=False) if args.json else summary_text(a, j, out))
    return 0
