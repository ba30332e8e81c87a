"""`zhbert train`: data directory -> trained BERT + a history the study can trust.

main: process group and device -> build_trainer (precision, data, run directory,
model, optimizer, resume) -> trainloop.fit (the loop). Everything that must survive a
restart is in the checkpoint: weights and AdamW moments (safetensors) and
Trainer.state_dict() (the data position, progress and logging accumulators);
dropout is re-seeded from (seed, step, rank) each step, so a killed and resumed
run writes the same history as one that never stopped (bit for bit on CPU with
the same thread count).

Run data-parallel with torchrun:
    torchrun --nproc_per_node 2 -m zhbert train --data DATA --out RUN
Global batch = train.batch_size x ranks x train.grad_accum.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from pathlib import Path

from zhbert.threads import ThreadShare, quiet_openmp_waits

quiet_openmp_waits()  # before torch loads libgomp, which reads its wait policy once
import torch  # noqa: E402

from zhbert.checkpoint import latest_valid_checkpoint, load_checkpoint, remove_partial
from zhbert.config import Config, load_config
from zhbert.distributed import Dist, agree_on_step, barrier, on_main, setup, shutdown
from zhbert import argtypes
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json
from zhbert.history import SCHEMA, VERSION, HistoryWriter, rewrite_for_resume
from zhbert.run import DATA_MANIFEST, data_config, is_run_dir, model_config_from
from zhbert.rundir import (check_resumable, check_resume_target, check_run_folder, orphan_error,
                           orphaned, prepare_run_dir)
from zhbert.runlock import WriterLock, lock_path
from zhbert.tblog import TensorBoardLog
from zhbert.trainloop import Interval, Progress, Trainer, fit
from zhbert.trainparts import (bf16_copy, build_loader, build_optimizer, length_warmup,
                               resolve_precision_for, wrap_model)


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="data directory made by `zhbert prepare`")
    p.add_argument("--out", type=argtypes.out_path, required=True, help="run directory (history, checkpoints, config)")
    p.add_argument("--config", help="preset (tiny, seed, base), a TOML file, or a run (its directory "
                   "or config.json) to repeat its settings; default: tiny, and with --resume the "
                   "run's own settings")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint that verifies")
    p.add_argument("--force", action="store_true",
                   help="start over in a run directory that holds another run")
    p.add_argument("--minutes", type=float, metavar="M",
                   help="train for about M minutes: train.steps is set to the steps that fit, "
                        "from this machine's measured cost of a step (a few at each sequence "
                        "length), an evaluation and a checkpoint, and kept in the run's "
                        "config.json; the timing (seconds) and start-up come on top")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=argtypes.cores, metavar="N",
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else this "
                        "training's share of the cores: cores / zhbert trainings on the machine, "
                        "followed as others start and end)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "config keys for --set, with the tiny preset's values:\n" + "\n".join(
        textwrap.fill(" ".join(f"{section}.{k}={str(v).lower() if isinstance(v, bool) else v}"
                                 for k, v in values.items()), width=88,
                      initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        for section, values in load_config("tiny").to_dict().items() if isinstance(values, dict))


def run(args) -> int:
    if args.resume and args.force:  # resuming kept the run and ignored --force without a word
        raise UserError("--resume continues the run in --out and --force deletes it to start "
                        "over: give one of them")
    _check_minutes(args)  # first: a refused --resume --minutes said "resuming with ..." before
    check_run_folder(Path(args.out))  # before the data are read and --minutes times steps
    cfg = load_config(config_spec(args), args.set)
    with ThreadShare(args.threads, run=args.out):  # its share of the cores, following other trainings
        progress = main(cfg, args.data, args.out, resume=args.resume, force=args.force,
                        progress=not args.no_progress, minutes=args.minutes)
    if args.minutes is not None:  # the steps it chose are in the run's config
        cfg = load_config(str(Path(args.out) / "config.json"))
    if _launched_rank() == 0:
        print(summary_line(Path(args.out), cfg, progress, args.data), file=sys.stderr)
        if args.minutes is not None and progress.step >= cfg.train.steps:
            from zhbert.budget import budget_note
            note = budget_note(args.minutes, progress.elapsed)
            if note:
                print(note, file=sys.stderr)
    return 0


MAX_MINUTES = 100_000  # ~69 days of training: more is a unit mistake


def _check_minutes(args) -> None:
    if args.minutes is None:
        return
    if args.resume:  # the steps were fixed when the run started; another count is another run
        raise UserError("--minutes chooses the steps of a new run; a resumed run keeps its own "
                        f"(train.steps in {Path(args.out) / 'config.json'}): drop --minutes")
    if not 0 < args.minutes <= MAX_MINUTES:  # nan too; a schedule over 1e9 minutes means nothing
        raise UserError(f"--minutes must be a number of minutes above 0 and at most "
                        f"{MAX_MINUTES:,} ({MAX_MINUTES / 1440:.0f} days), got {args.minutes:g}")
    if any(o.strip().startswith("train.steps=") for o in args.set):
        raise UserError("--minutes sets train.steps: give one of --minutes and --set train.steps")
    if not args.force and not is_run_dir(args.out) and orphaned(Path(args.out)):
        raise orphan_error(Path(args.out))  # before the timing, as below
    if is_run_dir(args.out) and not args.force:
        # before the timing: a repeated command would time steps, choose another count and
        # then call the run "other settings", pointing at the --force that deletes it
        raise UserError(f"{args.out} already holds a run (its steps were chosen when it "
                        f"started: train.steps in {Path(args.out) / 'config.json'}); pass "
                        "--resume without --minutes to continue it, --force to start over "
                        "there, or choose a new --out")


def config_spec(args) -> str:
    """What --config means when it is not given: with --resume into a run, that run's own
    settings (a resumed run had to repeat every --config and --set flag of its start, and
    the message pointed at a config.json that --config did not read); else the tiny preset."""
    if args.config is not None:
        return args.config
    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file():
        if _launched_rank() == 0:  # once, not once per torchrun process
            print(f"zhbert: resuming with the settings in {saved}", file=sys.stderr)
        return str(saved)
    return "tiny"


def _launched_rank() -> int:
    """The rank torchrun gave this process (0 without torchrun), before any process group."""
    return int(os.environ.get("RANK", "0"))


def summary_line(run_dir: Path, cfg: Config, progress: "Progress", data: str | None = None) -> str:
    """What a finished (or stopped) `zhbert train` says last: where it got, how fast, the
    latest held-out figures (as `zhbert status` reads them), and what to run next: for a run
    stopped early, its resume (``data``: the --data to name) before anything else."""
    from zhbert.runstate import average_tokens_per_s, collect

    e = collect(run_dir)["eval"]
    speed = average_tokens_per_s(progress.tokens, progress.elapsed) or 0.0
    line = (f"zhbert: {run_dir} at step {progress.step:,} of {cfg.train.steps:,}: "
            f"{progress.elapsed / 60:.1f} min of training, {speed:,.0f} real tokens/s")
    if e:
        nsp = f", NSP {e['eval_nsp_acc']:.1%}" if e.get("eval_nsp_acc") is not None else ""
        line += f"; held-out MLM accuracy {e['eval_mlm_acc']:.1%}{nsp} at step {e['step']:,}"
    if progress.step < cfg.train.steps:  # stopped by a signal: "analyze" came first
        import shlex
        return line + f". Next: zhbert train --data {shlex.quote(data or 'DATA')} --out {shlex.quote(str(run_dir))} --resume"
    return line + f". Next: zhbert status {run_dir}; zhbert analyze {run_dir}"


# ----------------------------------------------------------------------------- main

def main(cfg: Config, data_dir: str | Path, run_dir: str | Path, *, resume: bool = False,
         force: bool = False, progress: bool = True, minutes: float | None = None) -> Progress:
    from zhbert.machine import tune_malloc

    tune_malloc()  # no page faults on activations every step (see its docstring)
    dist, device = setup(cfg.train.device)
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, released however it ends
            tr = build_trainer(cfg, data_dir, run_dir, dist, device, resume=resume, force=force,
                               held=held, minutes=minutes)
            return _fit_and_close(tr, show_progress=progress and dist.main)
    finally:
        shutdown(dist)


def build_trainer(cfg: Config, data_dir: str | Path, run_dir: str | Path, dist: Dist,
                  device: torch.device, *, resume: bool = False, force: bool = False,
                  held: contextlib.ExitStack | None = None, minutes: float | None = None) -> Trainer:
    """The complete Trainer of a run: precision, data, run directory, model, optimizer,
    logs, and with ``resume`` the newest valid checkpoint's state loaded. With ``held``
    the run directory's lock is taken into it (``main``: for the whole run). With
    ``minutes``, train.steps is first set to the steps that fit (``zhbert.budget``)."""
    from zhbert.model import BertForPretraining
    from zhbert.precision import trains_bf16_copy

    precision, reason, autocast, scaler = resolve_precision_for(cfg, device)
    run_dir = Path(run_dir)
    precheck = None
    if resume:  # other data: say so before the loader judges them (run refuses --resume --force)
        precheck = lambda info: on_main(dist, device, lambda: check_resume_target(run_dir, cfg, info))  # noqa: E731
    cfg, vocab_size, data_info, loader, eval_batches = _open_data(cfg, data_dir, dist, device,
                                                                 minutes, precheck)

    def prepare() -> None:  # rank 0 alone; a failure (a bad --out) stops every rank
        if resume:
            check_resumable(run_dir)
        _claim(run_dir, held)
        prepare_run_dir(run_dir, cfg, data_info, resume, force)
        print(f"zhbert: precision {precision}: {reason}", file=sys.stderr)
        _warn_warmup(cfg)
    on_main(dist, device, prepare)

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    raw_model = BertForPretraining(model_config_from(cfg, vocab_size)).to(device)
    optimizer = build_optimizer(raw_model, cfg, device)
    # weights and moments before the bf16 copy is made of them; the history cut back
    # to the checkpoint before it is reopened for appending
    ref, state = (_load_resume(cfg, run_dir, dist, device, raw_model, optimizer) if resume
                  else (None, None))
    bf16 = bf16_copy(raw_model) if trains_bf16_copy(precision) else None
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * dist.world * cfg.data.max_len
    done = ref is not None and ref.step >= cfg.train.steps
    if done and dist.main:  # a header with nothing after it would only clutter the history
        print(f"zhbert: {run_dir} is already complete (step {ref.step:,} of {cfg.train.steps:,}): "
              "nothing to train", file=sys.stderr)
    history = _open_history(run_dir, cfg, dist, precision, reason, tokens_per_step,
                            ref.step if ref else None) if dist.main and not done else None
    tr = Trainer(cfg=cfg, dist=dist, device=device, run_dir=run_dir,
                 model=wrap_model(bf16.module if bf16 else raw_model, cfg, dist, device, ddp=bf16 is None),
                 raw_model=raw_model, optimizer=optimizer, loader=loader,
                 eval_batches=eval_batches, autocast=autocast, scaler=scaler,
                 tokens_per_step=tokens_per_step, progress=Progress(),
                 interval=Interval.zeros(device), history=history,
                 tb=TensorBoardLog(run_dir) if dist.main else None, bf16=bf16)
    if state is not None:
        tr.load_state_dict(state)
    return tr


def _open_data(cfg: Config, data_dir: str | Path, dist: Dist, device: torch.device,
               minutes: float | None, precheck=None):
    """(cfg, vocabulary size, config.json's data entry, loader, held-out batches); with
    ``minutes``, cfg's train.steps are the steps that fit (``zhbert.budget``). The data
    come first: a config they cannot serve (say NSP over one document) fails here, before
    the run directory exists, so the fixed command can use the same --out. ``precheck``
    is given the data entry before the batches are built."""
    from zhbert.budget import budgeted
    from zhbert.data import build_eval_set
    from zhbert.datadir import open_data_dir

    dd = open_data_dir(data_dir)
    data_info = {"dir": str(Path(data_dir).resolve()), "vocab_sha256": dd.vocab.sha256,
                 "vocab_size": len(dd.vocab), "identity": dd.identity}
    if precheck is not None:
        precheck(data_info)
    # before --minutes' budget builds the model to time its steps, and before any batch
    _check_memory(cfg, len(dd.vocab), device)
    loader = build_loader(cfg, data_dir, dist, device.type)
    loader.check()
    _check_accumulation(cfg, getattr(loader, "full", loader))
    # rank 0 evaluates; its held-out set failing (an empty split) stops every rank
    eval_batches = on_main(dist, device, lambda: build_eval_set(
        data_dir, "validation", data_config(cfg), max_sequences=cfg.data.eval_sequences)) or []
    if minutes is not None:
        cfg = budgeted(cfg, loader, len(dd.vocab), dist, device, minutes, eval_batches)
        if cfg.data.warmup_len:  # the warm-up's share is of the steps chosen
            loader = length_warmup(cfg, loader.short, loader.full)
    return cfg, len(dd.vocab), data_info, loader, eval_batches


def _check_accumulation(cfg: Config, full) -> None:
    """A step reads train.grad_accum global batches at once (trainloop.train_step weighs
    them by their masked tokens): more than an epoch holds is a typo, not a run (1e30 filled
    the memory before the first step)."""
    per_epoch = full.steps_in_epoch()
    if cfg.train.grad_accum > per_epoch:
        raise UserError(f"train.grad_accum {cfg.train.grad_accum:,} asks for more global batches a "
                        f"step than an epoch of the training split holds ({per_epoch:,} at "
                        f"train.batch_size {cfg.train.batch_size}); lower train.grad_accum")


def _check_memory(cfg: Config, vocab_size: int, device: torch.device) -> None:
    """Refuse, before the run directory is written, a model that cannot fit the machine."""
    from zhbert.accounting import training_bytes_lower_bound
    from zhbert.machine import memory_bytes

    need = training_bytes_lower_bound(model_config_from(cfg, vocab_size), cfg.train.batch_size,
                                      cfg.data.max_len)
    have = memory_bytes(device)
    if have is not None and need > have:
        m = cfg.model
        raise UserError(f"this model needs at least {need / 2**30:,.1f} GiB to train (model."
                        f"hidden_size {m.hidden_size:,}, num_layers {m.num_layers:,}, intermediate_size "
                        f"{m.intermediate_size:,}, train.batch_size {cfg.train.batch_size:,}) and the "
                        f"{device.type} has {have / 2**30:,.1f} GiB; lower these settings")


def _fit_and_close(tr: Trainer, show_progress: bool) -> Progress:
    if tr.dist.main:
        atomic_write_json(tr.run_dir / "running.json", {"pid": os.getpid(), "host": _host(),
                                                        "started": _now()}, tr.run_dir)
    try:
        fit(tr, show_progress=show_progress)
        barrier(tr.dist)  # every rank is done with the node's shared epoch files
        if tr.dist.local_rank == 0:
            tr.loader.drop_shared_cache()
    finally:
        if tr.history:
            tr.history.close()
        if tr.tb:
            tr.tb.close()
        if tr.dist.main:
            (tr.run_dir / "running.json").unlink(missing_ok=True)
    return tr.progress


def _claim(run_dir: Path, held: contextlib.ExitStack | None) -> None:
    """Lock the run directory for this process's life (a second trainer exits 2 naming
    this PID), then clear what a save killed midway left. A data directory is left
    untouched: prepare_run_dir refuses it next."""
    if held is None or (run_dir / DATA_MANIFEST).exists():
        return
    held.enter_context(WriterLock(lock_path(run_dir / "train"), "zhbert train"))
    gone = remove_partial(run_dir)  # safe under the lock: no other save can be in progress
    if gone:
        print(f"zhbert: removed {len(gone)} unfinished checkpoint directories left by an "
              f"interrupted save or deletion: {', '.join(gone)}", file=sys.stderr)


def _warn_warmup(cfg: Config) -> None:
    if cfg.train.warmup_steps >= cfg.train.steps:
        print(f"zhbert: warning: train.warmup_steps ({cfg.train.warmup_steps}) >= train.steps "
              f"({cfg.train.steps}): the learning rate never leaves its warm-up; set "
              "train.warmup_steps below train.steps", file=sys.stderr)


def _open_history(run_dir: Path, cfg: Config, dist: Dist, precision: str, reason: str,
                  tokens_per_step: int, resumed_from: int | None) -> HistoryWriter:
    from zhbert.data import masking_rule
    from zhbert.machine import cpu_info, describe_machine
    machine = cpu_info()
    history = HistoryWriter(run_dir / "history.jsonl")
    # threads: a field of its own (threads.recorded_threads), not only words in the machine line
    history.write({"type": "header", "schema": SCHEMA, "version": VERSION,
                   "run": run_dir.name, "started": _now(), "config": cfg.to_dict(),
                   "precision": precision, "precision_reason": reason,
                   "machine": describe_machine(machine), "threads": machine["threads"],
                   "total_steps": cfg.train.steps,
                   "tokens_per_step": tokens_per_step, "world_size": dist.world,
                   "masking": masking_rule(cfg.data.whole_word),
                   **({"resumed_from": resumed_from} if resumed_from is not None else {})})
    return history


def _load_resume(cfg: Config, run_dir: Path, dist: Dist, device: torch.device,
                 raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """(ref, state) of the newest valid checkpoint, its weights and AdamW moments loaded
    into ``raw_model`` and ``optimizer``; state is the Trainer's state_dict() it was
    saved from. (None, None) when there is none."""
    ref = latest_valid_checkpoint(run_dir, warn=lambda m: print(m, file=sys.stderr))
    agree_on_step(dist, ref.step if ref else None, device, str(run_dir))  # all ranks, or none
    if ref is None:
        if dist.main:  # the records of an attempt killed before its first checkpoint go too
            dropped, copy = rewrite_for_resume(run_dir / "history.jsonl", 0)
            print(f"zhbert: no checkpoint in {run_dir} to resume from; starting at step 0 "
                  f"({dropped} history records dropped){_kept(copy)}", file=sys.stderr)
        return None, None
    header = _kept_header(run_dir, ref.step)  # the history read once for both checks
    _check_world(run_dir, header, dist, ref.step)  # every rank reads it: every rank stops alike
    # the config hash checked before the weights load: another run's checkpoint copied in
    # failed inside load_state_dict with a size mismatch before this check could name it
    state = load_checkpoint(ref.path, raw_model, optimizer, config_hash=cfg.hash())
    if dist.main:
        _warn_masking(run_dir, header, cfg, ref.step)
        dropped, copy = rewrite_for_resume(run_dir / "history.jsonl", ref.step)
        print(f"zhbert: resuming from step {ref.step} ({ref.path.name}); "
              f"{dropped} history records after it dropped{_kept(copy)}", file=sys.stderr)
        from zhbert.runstate import logged_gap  # a history cut before the checkpoint: a gap
        if gap := logged_gap(run_dir, ref.step):
            print(f"zhbert: {gap}", file=sys.stderr)
    return ref, state


def _kept(copy: Path | None) -> str:
    """Where the history as it was before a resume's rewrite is kept (rewrite_for_resume)."""
    return f"; the history as it was is kept in {copy}" if copy else ""


def _kept_header(run_dir: Path, step: int) -> dict:
    """The header of the start whose steps up to ``step`` a resume keeps (an earlier
    resume's header stays in the history after a fall-back to an older checkpoint); {}
    where there is none."""
    from zhbert.history import read_history

    path = run_dir / "history.jsonl"
    records = read_history(path, lambda _: None).records if path.exists() else []
    kept = [r for r in records if r.get("type") == "header" and r.get("resumed_from", 0) < step]
    return kept[-1] if kept else {}


def _check_world(run_dir: Path, header: dict, dist: Dist, step: int) -> None:
    """A resume with another number of processes changes the global batch (batch_size x
    processes x grad_accum) and which rows each rank reads: 2 processes resumed as 1 went
    on at half the tokens a step without a word. Exact resume needs the same count."""
    was = header.get("world_size")  # of the start whose steps are kept (_kept_header)
    if was is None or was == dist.world:
        return
    how = f"`torchrun --nproc_per_node {was} -m zhbert train ... --resume`" if was > 1 else \
        "`zhbert train ... --resume` (one process)"
    raise UserError(f"{run_dir} trained its first {step:,} steps with {was} process"
                    f"{'es' * (was > 1)}, and this resume runs {dist.world}: the global batch "
                    f"(train.batch_size x processes x train.grad_accum) and the rows each process "
                    f"reads would change mid-run; resume it with {how}, or start a new run")


def _warn_masking(run_dir: Path, header: dict, cfg: Config, step: int) -> None:
    """A resume across a change of the masking rule continues with other masks than the
    run's steps up to ``step`` drew, and scores the held-out set on other masked slots:
    say so. The rule compared is the one of the start whose steps are kept."""
    from zhbert.data import masking_rule

    rule = masking_rule(cfg.data.whole_word)
    path = run_dir / "history.jsonl"
    if not header or header.get("masking") == rule:
        return
    was = header.get("masking")
    if was is None and cfg.data.whole_word:  # the whole-word rule has not changed
        return
    after = (f"from step {step:,} the training batches mask other tokens than an unbroken run "
             "would, and the held-out accuracy is measured on other masked slots (a step in the "
             "curve there is the masks, not the model); start a new run for a curve drawn by "
             "one rule")
    if was is None:
        print(f"zhbert: warning: {path} records no masking rule (the run started before commit "
              "3c43a40, 2026-12-06). If it started before commit 0423e4b (the same day) it drew "
              f"its masks by another rule than this zhbert's ({rule}): then {after}",
              file=sys.stderr)
    else:
        print(f"zhbert: warning: {run_dir} was trained with masking rule {was}, and this zhbert "
              f"draws masks by {rule}: {after}", file=sys.stderr)


def _host() -> str:
    import socket
    return socket.gethostname()


def _now() -> str:
    import datetime as _dt
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
