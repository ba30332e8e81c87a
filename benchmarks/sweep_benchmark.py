"""Sweep benchmark (issue 17): does forecast pruning save training steps without losing
the best trial, does the best trial beat the `tiny` preset, and do two workers on one
machine finish the same trials with no duplicate or lost one?

    python -m benchmarks.sweep_benchmark                       # the issue's figures
    python -m benchmarks.sweep_benchmark --steps 300 --trials 6 --budget-minutes 30 \\
        --workers-check-trials 0                               # a reduced run

Runs, all on the built-in corpus (prepared once, as benchmarks.time_to_accuracy does):
1. the `tiny` preset for --steps steps (the baseline);
2. `zhbert sweep --pruner none` over examples/sweep_space.toml, --trials trials of --steps
   steps within --budget-minutes, sampler seed 0;
3. the same with `--pruner forecast`, as many trials as sweep 2 finished, same seed;
4. (--workers-check-trials > 0) a sweep with --workers-per-machine 1 and one with 2,
   that many trials each: wall time, and the journal checked for duplicate / lost trials.
Writes benchmarks/out/sweep_benchmark-<time>.json (its path printed) and prints a Markdown
summary. Exit 2 (one line): a bad option, a --fixed typo, a --data that is not a data directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks import common

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "examples" / "sweep_space.toml"


def parse_args(argv=None):
    from zhbert import argtypes

    from benchmarks import time_to_accuracy as tta

    p = common.Parser("sweep_benchmark", __doc__)
    p.add_argument("--steps", type=argtypes.count(1), default=1000, help="steps per trial (issue: 1,000)")
    p.add_argument("--budget-minutes", type=argtypes.positive, default=45.0, help="per sweep (issue: 45)")
    p.add_argument("--trials", type=argtypes.count(1), default=12, help="trials of the unpruned sweep")
    p.add_argument("--space", type=Path, default=SPACE)
    p.add_argument("--data", type=Path, default=tta.DATA, help=tta.DATA_HELP)
    p.add_argument("--out", type=Path, default=common.OUT / "sweep")
    p.add_argument("--workers-check-trials", type=argtypes.count(0), default=4,
                   help="trials of the 1- vs 2-worker check (0: skip it)")
    p.add_argument("--workers-check-steps", type=argtypes.count(1), help="steps per trial there (default --steps)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="sampler seed of every sweep")
    p.add_argument("--summarize", action="store_true",
                   help="train nothing: measure the runs already in --out (e.g. sweeps run by hand)")
    p.add_argument("--fixed", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a value fixed for the preset run and every trial (repeatable), e.g. "
                        "model.num_layers=2 for a reduced run on a busy machine")
    args = p.parse_args(argv)
    if not args.space.is_file():
        p.error(f"--space {args.space}: no such file")
    from zhbert.config import load_config
    load_config("tiny", args.fixed)  # a --fixed typo: one line now (ConfigError), not a traceback later
    if not args.summarize:
        common.check_data_dir(args.data)
    return args


def _toml_literal(text: str) -> str:
    """A --fixed value as a TOML literal: numbers and booleans as they are, else a string."""
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        float(text)
        return text
    except ValueError:
        return json.dumps(text)


def space_with_fixed(space: Path, fixed: list[str], out: Path) -> Path:
    """The space file with the --fixed values as dotted keys before its first table."""
    if not fixed:
        return space
    head = "".join(f"{k.strip()} = {_toml_literal(v.strip())}\n"
                   for k, _, v in (item.partition("=") for item in fixed))
    path = out / "space.toml"
    path.write_text(head + space.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def zhbert(*args: str) -> None:
    """Run a zhbert command (its stderr goes to ours); stop on failure."""
    subprocess.run([sys.executable, "-m", "zhbert", *args], check=True)


def preset_baseline(data: Path, out: Path, steps: int, fixed: list[str]) -> dict:
    """The `tiny` preset's run; one already in ``out`` with the same settings, run to its
    end, is measured again rather than trained again (a benchmark restarted after a change
    of space)."""
    run, marker = out / "preset", out / "preset.json"
    sets = [f"train.steps={steps}", f"train.eval_every={max(1, steps // 20)}"] + fixed
    if marker.exists() and json.loads(marker.read_text()) == {"data": str(data), "sets": sets}:
        done = measure_preset(run)
        if done["steps"] == steps:
            return done
    zhbert("train", "--data", str(data), "--out", str(run), "--config", "tiny", "--force",
           "--no-progress", *sum((["--set", s] for s in sets), []))
    marker.write_text(json.dumps({"data": str(data), "sets": sets}))
    return measure_preset(run)


def measure_preset(run: Path) -> dict:
    from zhbert.status import collect
    s = collect(run)
    return {"eval_mlm_acc": s["eval"]["eval_mlm_acc"], "wall_s": s["train"]["elapsed"],
            "steps": s["step"]}


def sweep(data: Path, out: Path, space: Path, steps: int, trials: int, pruner: str,
          budget: float, seed: int, workers: int = 1) -> dict:
    zhbert("sweep", str(space), "--data", str(data), "--out", str(out), "--force",
           "--steps", str(steps), "--trials", str(trials), "--pruner", pruner,
           "--budget-minutes", str(budget), "--sampler-seed", str(seed),
           "--workers-per-machine", str(workers))
    return measure_sweep(out)


def measure_sweep(out: Path) -> dict:
    """A finished sweep's figures, from its journal and its trial directories."""
    from zhbert.sweep.report import collect
    from zhbert.sweep.study import load_study, open_storage
    zhbert("sweep", "report", str(out))
    rep = collect(out)
    trials = load_study(open_storage(out, rep.spec.storage), rep.spec).get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {"pruner": rep.spec.pruner, "workers": rep.spec.workers_per_machine,
            "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
            "trials": len(rep.rows), "states": dict(Counter(r.state for r in rep.rows)),
            "steps_run": sum(r.steps_run for r in rep.rows),
            "best": rep.best.value if rep.best else None,
            "best_params": rep.best.params if rep.best else None,
            "values": [(r.number, r.state, r.value, r.steps_run) for r in rep.rows],
            "journal_check": journal_check(out, rep.spec.trials)}


def journal_check(sweep_dir: Path, expected: int) -> dict:
    """The journal is the judge: each counted trial once, each trial directory once."""
    from zhbert.sweep.study import load_study, open_storage, read_spec
    from zhbert.sweep.worker import counted
    spec = read_spec(sweep_dir)
    trials = load_study(open_storage(sweep_dir, spec.storage), spec).get_trials(deepcopy=False)
    done = [t for t in trials if counted(t)]
    dirs = Counter(t.user_attrs.get("trial_dir") for t in done)
    return {"counted": len(done), "expected": expected,
            "duplicate_dirs": [d for d, n in dirs.items() if n > 1],
            "numbers_unique": len({t.number for t in trials}) == len(trials)}


def _acc(best: float | None) -> str:
    return "-" if best is None else f"{best:.4f}"


def summary(res: dict) -> str:
    a, b, p = res["none"], res["forecast"], res["preset"]
    saved = 1 - b["steps_run"] / a["steps_run"] if a["steps_run"] else float("nan")
    lines = [f"machine: {res['machine']}", f"fixed: {res['fixed'] or 'nothing (the tiny preset)'}", "",
             "| run | trials | states | steps trained | best held-out MLM acc | wall |",
             "|---|---|---|---|---|---|",
             f"| `tiny` preset, {res['steps']} steps | 1 | - | {p['steps']:,} | {p['eval_mlm_acc']:.4f} | {p['wall_s'] / 60:.1f} min (training) |"]
    for s in (a, b):
        lines.append(f"| sweep, --pruner {s['pruner']} | {s['trials']} | {s['states']} | {s['steps_run']:,} | "
                     f"{_acc(s['best'])} | {(s['wall_s'] or 0) / 60:.1f} min |")
    lines += ["", f"forecast pruning trained {saved:.0%} fewer steps than no pruning (issue: >= 40%); "
              f"best {_acc(b['best'])} vs {_acc(a['best'])} (issue: within 0.01); preset {p['eval_mlm_acc']:.4f}"]
    for w in res.get("workers", []):
        lines.append(f"workers {w['workers']}: {w['trials']} trials in {(w['wall_s'] or 0) / 60:.1f} min; "
                     f"journal: {w['journal_check']}")
    return "\n".join(lines)


def run_all(args, res: dict) -> None:
    res["preset"] = preset_baseline(args.data, args.out, args.steps, args.fixed)
    res["none"] = sweep(args.data, args.out / "none", args.space, args.steps, args.trials, "none",
                        args.budget_minutes, args.seed)
    n = res["none"]["trials"]
    res["forecast"] = sweep(args.data, args.out / "forecast", args.space, args.steps, n, "forecast",
                            args.budget_minutes, args.seed)
    if args.workers_check_trials:
        ws = args.workers_check_steps or args.steps
        res["workers"] = [sweep(args.data, args.out / f"workers{k}", args.space, ws,
                                args.workers_check_trials, "none", args.budget_minutes, args.seed, k)
                          for k in (1, 2)]


@common.entry("sweep_benchmark")
def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.summarize:
        from benchmarks.time_to_accuracy import prepare_builtin
        args.data = prepare_builtin(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    res = {"machine": common.machine_line(common.machine()), "steps": args.steps,
           "budget_minutes": args.budget_minutes, "cores": len(os.sched_getaffinity(0)),
           "command": " ".join(sys.argv), "fixed": args.fixed}
    args.space = space_with_fixed(args.space, args.fixed, args.out)
    if args.summarize:
        res["preset"] = measure_preset(args.out / "preset")
        res["none"], res["forecast"] = (measure_sweep(args.out / n) for n in ("none", "forecast"))
        res["workers"] = [measure_sweep(args.out / f"workers{k}") for k in (1, 2)
                          if (args.out / f"workers{k}").exists()]
    else:
        run_all(args, res)
    path = common.write_json("sweep_benchmark", res)
    print(summary(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
