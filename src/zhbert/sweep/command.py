"""`zhbert sweep`: start, resume or join a hyper-parameter sweep.

    zhbert sweep SPACE.toml --data DATA --out SWEEP_DIR [--config tiny] [--trials N]
                 [--budget-minutes M] [--steps S] [--pruner forecast|median|hyperband|none]
                 [--workers-per-machine K] [--storage URL]
    zhbert sweep SWEEP_DIR              # resume (after Ctrl-C, a crash, or for more trials)
    zhbert sweep SWEEP_DIR --worker     # join from another process or machine
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from zhbert import argtypes
from zhbert.config import MAX_STEPS
from zhbert.errors import UserError
from zhbert.outputs import check_out
from zhbert.run import SWEEP_SPEC
from zhbert.sweep.pruner import PRUNERS
from zhbert.sweep.liveness import HEARTBEAT_S, MIN_GRACE_S
from zhbert.sweep.liveness import start_over_if_idle
from zhbert.sweep.study import (BASE_TOML, DEFAULT_STUDY, OBJECTIVES, STUDY_ATTR, SweepSpec,
                                load_study, no_sweep, open_storage, read_spec, require_database,
                                require_same_sweep, require_study, safe_url, spec_from_storage,
                                spec_warmup_warning, started_with, storage_url, stored_identity,
                                sweep_mark, trial_label, with_runtime, write_spec)

# what a sweep is (its identity) is fixed when it starts: a resume that gave another value
# ran the old one without a word
START_ONLY = ("config", "steps", "objective", "sampler_seed")
DEFAULTS = {"config": "tiny", "objective": "acc", "sampler_seed": 0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("zhbert sweep report SWEEP_DIR: the sweep's trials table, best config "
                "(TOML), parameter importances and curves")
    p.add_argument("target", help="search space TOML (a new sweep) or SWEEP_DIR (resume / join)")
    p.add_argument("--data", help="data directory (new sweep; for --worker: this machine's path)")
    p.add_argument("--out", type=argtypes.out_path, help="SWEEP_DIR for a new sweep (trials/NNNN are ordinary runs)")
    p.add_argument("--config", help="base preset or TOML file (default tiny)")
    p.add_argument("--trials", type=argtypes.count(1), help="finished trials to reach (default 20)")
    p.add_argument("--budget-minutes", type=argtypes.positive,
                   help="no trial starts after this many minutes (running ones finish)")
    p.add_argument("--steps", type=argtypes.count(1, MAX_STEPS),
                   help="training steps per trial (default: the config's)")
    p.add_argument("--objective", choices=tuple(OBJECTIVES),
                   help="final held-out MLM accuracy (maximised, default) or loss (minimised)")
    p.add_argument("--pruner", choices=PRUNERS,
                   help="forecast (default): stop a trial whose forecast 80%% interval cannot "
                        "reach the best finished trial; median, hyperband (Optuna's), none")
    p.add_argument("--workers-per-machine", type=argtypes.cores,
                   help="workers this command starts (default 1, at most the cores); each trains "
                        "on cores / K threads")
    p.add_argument("--threads", type=argtypes.cores,
                   help="threads per trial (default: cores / workers; at most the cores)")
    p.add_argument("--storage", type=storage_url,
                   help="RDB URL (sqlite:///f.db, postgresql://...; a relative sqlite path is kept "
                        "absolute); default: the Optuna journal file in SWEEP_DIR")
    p.add_argument("--study", help=f"study name in the storage (default {DEFAULT_STUDY})")
    p.add_argument("--sampler-seed", type=argtypes.seed, help="TPE sampler seed (default 0)")
    p.add_argument("--worker", action="store_true", help="join SWEEP_DIR as one worker")
    p.add_argument("--force", action="store_true",
                   help="start over in a SWEEP_DIR that holds a sweep of another space")
    p.add_argument("--grace-seconds", type=argtypes.non_negative, default=120.0,
                   help="a running trial whose worker sent no heartbeat for this long is "
                        f"failed and retried (default 120; at least {MIN_GRACE_S:g}: workers "
                        f"beat every {HEARTBEAT_S:g})")
    # given only to the workers a sweep spawns: their sweep sums up their trials, not they
    p.add_argument("--worker-index", type=argtypes.count(0), default=None, help=argparse.SUPPRESS)


def sweep_threads(workers: int) -> int:
    """Each worker's share of the cores, zhbert trainings already running counted
    (zhbert.threads: they give up cores to the sweep's fixed counts in turn)."""
    from zhbert.threads import available_cores, live_trainers

    return max(1, available_cores() // (workers + len(live_trainers())))


def _check_options(args) -> None:
    """What argparse's ranges cannot say, before anything is written (its types refuse more
    --threads or --workers-per-machine than cores: a count torch could not take failed every
    trial of a sweep that then exited 0)."""
    if not args.grace_seconds >= MIN_GRACE_S:
        # shorter, live workers' trials were failed as lost and their workers crashed
        raise UserError(f"--grace-seconds must be at least {MIN_GRACE_S:g} (workers send a "
                        f"heartbeat every {HEARTBEAT_S:g} s), got {args.grace_seconds:g}")
    if args.study is not None and not args.study.strip():
        raise UserError("--study is empty: leave it out for the default study name "
                        f"({DEFAULT_STUDY}), or name one")


def _oversubscribed(k: int, threads: int) -> str | None:
    """A warning where K workers of ``threads`` each exceed the cores. Not refused: trials
    compare by step, not speed, and with OpenMP's waits passive (zhbert.threads) sharing
    costs little (benchmarks/RESULTS.md, "A shared machine": 2 x 2 threads on 2 cores ran
    8,975 tokens/s together against 5,093 at 1 thread each); each trial is slower."""
    from zhbert.threads import available_cores

    cores = available_cores()
    if k * threads <= cores:
        return None
    return (f"sweep: warning: {k} workers x {threads} thread(s) = {k * threads} threads on {cores} "
            f"core{'s' * (cores != 1)}: the trials share cores and each runs slower (their "
            f"results do not change); --threads {max(1, cores // k)} gives each its own")


def _given(args, key: str):
    """A start-only option as given, else its default (None on the command line tells a
    resume that it was not given)."""
    value = getattr(args, key)
    return DEFAULTS[key] if value is None else value


def new_spec(args) -> SweepSpec:
    """Parse and check everything a new sweep needs, before any trial starts."""
    from zhbert.config import PRESETS, load_config
    from zhbert.datadir import open_data_dir
    from zhbert.sweep.space import parse_space

    if not args.data or not args.out:
        raise UserError("a new sweep needs --data DATA and --out SWEEP_DIR "
                        "(or give an existing SWEEP_DIR to resume it)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file: give a directory for the sweep")
    config = _given(args, "config")
    if (config not in PRESETS and not Path(config).is_file()) or config.endswith(".json"):
        raise UserError(f"--config {config}: a sweep's base is a preset ({', '.join(PRESETS)}) "
                        "or a TOML file (a run's settings: write them as TOML)")
    base = load_config(config)
    space = parse_space(args.target, config)
    for key in ("train.steps", "train.eval_every"):
        if key in space.params:
            raise UserError(f"{args.target}: {key} cannot be searched (the sweep sets it: "
                            "--steps; evaluations every steps / 20)")
    data_identity = open_data_dir(args.data).identity
    fixed_steps = space.fixed.get("train.steps")
    if args.steps and fixed_steps is not None and int(fixed_steps) != args.steps:
        raise UserError(f"{args.target} fixes train.steps = {fixed_steps} and --steps says "
                        f"{args.steps}: give one of them")
    steps = args.steps or int(fixed_steps if fixed_steps is not None else base.train.steps)
    eval_every = int(space.fixed.get("train.eval_every", max(1, steps // 20)))
    is_preset = config in PRESETS
    return SweepSpec(
        space=space, data=str(Path(args.data).resolve()),
        config=config if is_preset else BASE_TOML,
        config_text="" if is_preset else Path(config).read_text(encoding="utf-8"),
        steps=steps, eval_every=eval_every, objective=_given(args, "objective"), trials=args.trials or 20,
        budget_minutes=args.budget_minutes, pruner=args.pruner or "forecast",
        workers_per_machine=args.workers_per_machine or 1, sampler_seed=_given(args, "sampler_seed"),
        storage=args.storage or "", study_name=args.study or DEFAULT_STUDY, data_identity=data_identity)


def _refuse_other(sweep_dir: Path, what: str) -> None:
    raise UserError(f"{sweep_dir} holds another sweep ({what} differs); resume it with "
                    f"`zhbert sweep {sweep_dir}`, choose another --out, or pass --force to "
                    "start over there (its trials are deleted)")


def prepare(args) -> tuple[Path, SweepSpec]:
    """The sweep directory and its spec: a new sweep (refusing a SWEEP_DIR of another
    space unless --force), or the one in SWEEP_DIR / the storage."""
    _check_options(args)
    target = Path(args.target)
    runtime = dict(trials=args.trials, budget_minutes=args.budget_minutes, pruner=args.pruner,
                   workers_per_machine=args.workers_per_machine)
    if target.is_dir() or (args.worker and args.storage):
        if args.force:  # it resumed, --force ignored: even with a live worker, or a damaged journal
            raise UserError(f"--force starts a sweep over from its space file: `zhbert sweep SPACE "
                            f"--data DATA --out {target} --force`; `zhbert sweep {target}` resumes it")
        return target, _existing(args, target, runtime)
    if not target.exists():  # "a new sweep needs --data" misled a mistyped SWEEP_DIR
        raise UserError(f"{target} not found: give an existing SWEEP_DIR to resume it, or a "
                        "search space TOML with --data DATA --out SWEEP_DIR to start a sweep")
    spec = new_spec(args)
    sweep_dir = Path(args.out)
    # never into a data directory, a run or a folder of other files (--force or not)
    check_out(sweep_dir, SWEEP_SPEC)
    try:
        old = read_spec(sweep_dir)
    except UserError:  # an unreadable sweep.json: --force starts over, as its message says
        if not args.force:
            raise
        start_over_if_idle(sweep_dir, spec.storage, spec.study_name, args.grace_seconds)
        old = None
    if old is not None and (args.force or old.identity() != spec.identity()):
        if not args.force:
            _refuse_other(sweep_dir, "space, base config, steps or objective")
        # --force: over, even the same space
        start_over_if_idle(sweep_dir, old.storage, old.study_name, args.grace_seconds)
        old = None
    stored = stored_identity(open_storage(sweep_dir, spec.storage), spec.study_name)
    if stored is not None and stored != spec.identity():
        if not args.force:
            _refuse_other(sweep_dir, f"the storage's study {spec.study_name!r}")
        start_over_if_idle(sweep_dir, spec.storage, spec.study_name, args.grace_seconds)
    if old is not None:  # the same search again: a resume, on its own data and sampler
        if args.sampler_seed is not None and spec.sampler_seed != old.sampler_seed:
            _refuse_other(sweep_dir, "--sampler-seed")
        # new_spec read this data's identity already
        check_data(old, args.data, spec.data_identity)
        spec = with_runtime(old, **runtime)
    publish(sweep_dir, spec)
    # once it starts (not before a refusal): a warning, the sweep runs, but such trials end alike
    if warmup := spec_warmup_warning(spec, sweep_dir, "--steps" if args.steps else "train.steps"):
        print(f"sweep: warning: {warmup}", file=sys.stderr)
    return sweep_dir, spec


def _existing(args, target: Path, runtime: dict) -> SweepSpec:
    """The spec of the sweep in SWEEP_DIR (or the storage, for a --worker that sees only
    the database), checked against this command's options and data."""
    spec = read_spec(target) if target.is_dir() else None
    joined = spec is None and bool(args.storage)
    if joined:  # a machine that sees only the database: its own SWEEP_DIR for trials
        require_database(args.storage)
        spec = spec_from_storage(open_storage(target, args.storage), args.study or DEFAULT_STUDY)
    if spec is None:
        raise no_sweep(target)
    _same_start(args, spec, target, "the study's spec in the storage" if joined else SWEEP_SPEC)
    if not joined:
        _same_store(args, spec, target)
        require_study(open_storage(target, spec.storage), spec, target)
    check_data(spec, args.data)
    spec = with_runtime(spec, **runtime)
    if joined:
        write_spec(target, spec)
    elif not args.worker:
        publish(target, spec)
    return spec


def _same_start(args, spec: SweepSpec, target: Path, where: str) -> None:
    """A resume's start-only options (START_ONLY) are the sweep's: its own values are
    accepted, another is refused with both (any given one was refused, the same too)."""
    other = [f"--{k.replace('_', '-')} {given}: the sweep started with {own}"
             for k in START_ONLY if (given := getattr(args, k)) is not None
             and (own := started_with(spec, k, given, target)) is not None]
    if other:
        raise UserError(f"{'; '.join(other)} ({where}); resume {target} without "
                        f"{'them' if len(other) > 1 else 'it'}, or start a new sweep (another --out)")


def _same_store(args, spec: SweepSpec, target: Path) -> None:
    """A resume's --storage and --study are the sweep's: another was silently ignored (the
    sweep went on in its own storage, the one named never created)."""
    kept = [("--storage", args.storage, spec.storage,
             f"keeps its trials in {safe_url(spec.storage) if spec.storage else 'the journal file in it'}"),
            ("--study", args.study, spec.study_name, f"is the study {spec.study_name!r}")]
    for option, given, own, what in kept:
        if given is not None and given != own:  # passwords hidden, as every storage message does
            shown = safe_url(given) if option == "--storage" else given
            raise UserError(f"{option} {shown}: the sweep in {target} {what} ({SWEEP_SPEC}); "
                            f"resume it without {option}, or start a new sweep (another --out)")


def check_data(spec: SweepSpec, data: str | None, identity: str | None = None) -> None:
    """The data a resume or a worker will train on (``data``, this machine's path, or the
    sweep's): there, and the data the sweep started on (trials on other data were compared
    with the others as if the same; every one failed when the directory was missing)."""
    from zhbert.datadir import open_data_dir
    where = data or spec.data
    identity = identity or open_data_dir(where).identity
    if spec.data_identity and identity != spec.data_identity:
        raise UserError(f"{where} holds other data than this sweep started on ({spec.data}: "
                        "prepared again since, or another corpus); give --data the sweep's "
                        "data, or start a new sweep (another --out)")


def publish(sweep_dir: Path, spec: SweepSpec) -> None:
    """The spec in sweep.json and in the study (a worker that sees only the database
    reads it there), with this command's --trials, --budget-minutes, --pruner."""
    write_spec(sweep_dir, spec)
    load_study(open_storage(sweep_dir, spec.storage), spec).set_user_attr(STUDY_ATTR, spec.to_json())


def _failed_attempts(trials: list) -> str:
    """The FAIL attempts by why they ended: a failure (counted towards --trials), a lost
    attempt (its worker or trainer gone: retried) and an interrupted one (the sweep's own
    Ctrl-C: it resumes), told apart as liveness.NOT_COUNTED does. All were "failed
    attempts": a kill -9 and five Ctrl-Cs read as 6 failures of a healthy sweep."""
    from optuna.trial import TrialState

    from zhbert.sweep.liveness import NOT_COUNTED, counted
    kinds = [t.user_attrs.get("failure") for t in trials if t.state == TrialState.FAIL]
    interrupted, disk_full = kinds.count("interrupted"), kinds.count("disk_full")
    lost = sum(k in NOT_COUNTED for k in kinds) - interrupted - disk_full
    failed = len(kinds) - lost - interrupted - disk_full
    # an interrupted attempt whose retry finished (Optuna's retry_history names the attempts
    # a retry resumed): "3 of 3 finished (..., 1 interrupted, 0 waiting)" read as a 4th to come
    done = {n for t in trials if counted(t) for n in t.system_attrs.get("retry_history", ())}
    resumed = sum(t.number in done for t in trials if t.state == TrialState.FAIL
                  and t.user_attrs.get("failure") == "interrupted")
    interrupted -= resumed
    return (f"{failed} failed attempt{'s' * (failed != 1)}"
            + (f", {lost} lost attempt{'s' * (lost != 1)} (retried)" if lost else "")
            + (f", {interrupted} interrupted" if interrupted else "")
            + (f", {resumed} interrupted and resumed" if resumed else "")
            + (f", {disk_full} stopped on a full disk (retried)" if disk_full else ""))


def summary(sweep_dir: Path, spec: SweepSpec) -> str:
    from optuna.trial import TrialState

    from zhbert.sweep.liveness import finished_count
    study = load_study(open_storage(sweep_dir, spec.storage), spec)
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    done = finished_count(study)
    # after a resume that lowered --trials, "2 of 1 trials finished" read as a miscount
    finished = (f"{done} of {spec.trials} trials finished" if done <= spec.trials else
                f"{done} trials finished (more than the --trials {spec.trials} asked)")
    running = f"{n[TrialState.RUNNING]} running, " if n[TrialState.RUNNING] else ""
    line = (f"sweep: {sweep_dir}: {finished} ({n[TrialState.COMPLETE]} complete, "
            f"{n[TrialState.PRUNED]} pruned, {_failed_attempts(trials)}, {running}"
            f"{n[TrialState.WAITING]} waiting)")
    if n[TrialState.COMPLETE]:
        best = study.best_trial
        line += (f"; best: {trial_label(best.number, best.user_attrs.get('trial_dir'))}, "
                 f"{spec.metric} {best.value:.4f}")
    return line + f". Next: zhbert sweep report {sweep_dir}"


def nothing_succeeded(sweep_dir: Path, spec: SweepSpec) -> str | None:
    """What to say where trials failed and none completed or was pruned: how many, and the
    last failure's message and log (such a sweep exited 0, its summary the only word)."""
    from optuna.trial import TrialState

    from zhbert.sweep.liveness import counted
    trials = load_study(open_storage(sweep_dir, spec.storage), spec).get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL and counted(t)]
    if not failed or any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return None
    last = failed[-1]
    rel = last.user_attrs.get("trial_dir")
    log = sweep_dir / rel / "train.log" if rel else None
    return (f"sweep: no trial succeeded ({len(failed)} failed); the last, "
            f"{trial_label(last.number, rel)}: {last.user_attrs.get('message') or 'no message'}"
            + (f"; its log: {log}" if log is not None and log.exists() else ""))


def _all_failed(tally) -> str | None:
    """What to say where every trial this worker ran failed (its data path on this machine,
    its memory, ...): such a worker exited 0 whatever its trials did."""
    outcomes = [outcome for _, outcome in tally.ran]
    if not any(o.startswith("failed") for o in outcomes) or any(
            o.startswith(("complete", "pruned")) for o in outcomes):
        return None
    number, last = next((n, o) for n, o in reversed(tally.ran) if o.startswith("failed"))
    failed = sum(o.startswith("failed") for o in outcomes)
    return (f"sweep: no trial this worker ran succeeded ({failed} failed); the last, Optuna "
            f"trial {number}: {last.removeprefix('failed: ')}")


def _saved_workers(spec, sweep_dir: Path) -> int:
    """The workers a sweep resumed here starts: the count kept in sweep.json was checked
    against the cores of the machine that started it (argtypes.cores), not this one's."""
    from zhbert.threads import available_cores
    cores = available_cores()
    if spec.workers_per_machine > cores:
        raise UserError(f"{sweep_dir / SWEEP_SPEC} keeps --workers-per-machine "
                        f"{spec.workers_per_machine}, more than the {cores} cores this process may "
                        f"run on here: pass --workers-per-machine {cores} or fewer")
    return spec.workers_per_machine


def _work(args, spec: SweepSpec, sweep_dir: Path, threads: int, deadline: float | None):
    """This process as the sweep's one worker: its exit code, and why it stopped the sweep
    (its trial's trainer ran out of disk space) or None."""
    from zhbert.sweep.worker import WorkerOptions, run_worker

    opts = WorkerOptions(sweep_dir, threads, index=args.worker_index or 0, data=args.data,
                         grace_s=args.grace_seconds, deadline=deadline)
    tally = run_worker(spec, opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    code = 2 if tally.disk_full else 130 if tally.interrupted else 0
    if args.worker and args.worker_index is None:  # a worker a user started (another machine)
        # it printed nothing where the sweep was already done
        print(f"sweep: this worker ran {len(tally.ran)} trial{'s' * (len(tally.ran) != 1)}; "
              + summary(sweep_dir, spec).removeprefix("sweep: "), file=sys.stderr)
        if not code and (failure := _all_failed(tally)):
            print(failure, file=sys.stderr)
            code = 1
    return code, tally.disk_full


def run(args) -> int:
    from zhbert.sweep.liveness import registered

    sweep_dir, spec = prepare(args)
    # for --force to see: this process is one of the sweep's until it has summed it up
    with registered(sweep_dir, "zhbert sweep --worker" if args.worker else "zhbert sweep"):
        return _run(args, sweep_dir, spec)


def _run(args, sweep_dir: Path, spec: SweepSpec) -> int:
    from zhbert.sweep.spawn import STOPPED, STOPS_THE_SWEEP, spawn_workers

    k = 1 if args.worker else _saved_workers(spec, sweep_dir)
    threads = args.threads or sweep_threads(k)
    if not args.worker and (warning := _oversubscribed(k, threads)):
        print(warning, file=sys.stderr)
    deadline = time.time() + 60 * spec.budget_minutes if spec.budget_minutes else None
    mark = None if args.worker else sweep_mark(sweep_dir, spec)  # run_worker marks its own
    if args.worker or k == 1:
        code, disk_full = _work(args, spec, sweep_dir, threads, deadline)
    else:
        print(f"sweep: {k} workers, {threads} thread(s) each", file=sys.stderr)
        code, disk_full = spawn_workers(sweep_dir, k, threads, args.grace_seconds, args.data), None
    if not args.worker:
        require_same_sweep(sweep_dir, spec, mark)  # a summary would make the deleted study anew
        print(summary(sweep_dir, spec), file=sys.stderr)
        if code == STOPPED:
            print(f"sweep: stopped; continue with `zhbert sweep {sweep_dir}`", file=sys.stderr)
        elif code == STOPS_THE_SWEEP and not disk_full:  # a spawned worker's, printed above
            print(f"sweep: stopped on a worker's error (above); fix it and run `zhbert sweep "
                  f"{sweep_dir}` again", file=sys.stderr)
        elif failure := nothing_succeeded(sweep_dir, spec):
            print(failure, file=sys.stderr)
            code = code or 1
    if disk_full:  # last, where it is seen: the trial is not lost, it waits for the space
        print(f"zhbert: error: {disk_full}; free disk space and run `zhbert sweep {sweep_dir}` "
              "again: the trial resumes from its last checkpoint", file=sys.stderr)
    return code
