"""`zhbert train`: data directory -> trained BERT + a history the study can trust.

main: process group and device -> build_trainer (precision, data, run directory,
model, optimizer, resume) -> fit (the loop). Everything that must survive a
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
import dataclasses
import os
import signal
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhbert.threads import ThreadShare, quiet_openmp_waits, rebalance

quiet_openmp_waits()  # before torch loads libgomp, which reads its wait policy once
import torch  # noqa: E402

from zhbert.checkpoint import (apply_retention, latest_valid_checkpoint, load_checkpoint,
                               remove_partial, save_checkpoint)
from zhbert.config import OBJECTIVES, Config, config_from_dict, load_config
from zhbert.data import IGNORE_INDEX
from zhbert.distributed import (Dist, agree_max, agree_on_step, all_reduce_mean_, barrier, on_main,
                                setup, shutdown)
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_json, read_json
from zhbert.history import SCHEMA, VERSION, HistoryWriter, truncate_after
from zhbert.instance_cache import instance_cache_dir
from zhbert.run import EVAL_RESULTS, PROBE_RESULTS, data_config, model_config_from
from zhbert.runlock import WriterLock, lock_path
from zhbert.schedule import Schedule, lr_at


# ----------------------------------------------------------------------------- CLI

def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="data directory made by `zhbert prepare`")
    p.add_argument("--out", required=True, help="run directory (history, checkpoints, config)")
    p.add_argument("--config", default="tiny", help="preset (tiny, seed, base) or a TOML file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint that verifies")
    p.add_argument("--force", action="store_true",
                   help="start over in a run directory that holds another run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, metavar="N",
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
    cfg = load_config(args.config, args.set)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    with ThreadShare(args.threads, run=args.out):  # its share of the cores, following other trainings
        progress = main(cfg, args.data, args.out, resume=args.resume, force=args.force,
                        progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(Path(args.out), cfg, progress), file=sys.stderr)
    return 0


def summary_line(run_dir: Path, cfg: Config, progress: "Progress") -> str:
    """What a finished (or stopped) `zhbert train` says last: where it got, how fast, the
    latest held-out figures (as `zhbert status` reads them), and what to run next."""
    from zhbert.runstate import collect

    e = collect(run_dir)["eval"]
    speed = progress.tokens / progress.elapsed if progress.elapsed > 0 else 0.0
    line = (f"zhbert: {run_dir} at step {progress.step:,} of {cfg.train.steps:,}: "
            f"{progress.elapsed / 60:.1f} min of training, {speed:,.0f} real tokens/s")
    if e:
        nsp = f", NSP {e['eval_nsp_acc']:.1%}" if e.get("eval_nsp_acc") is not None else ""
        line += f"; held-out MLM accuracy {e['eval_mlm_acc']:.1%}{nsp} at step {e['step']:,}"
    return line + f". Next: zhbert status {run_dir}; zhbert analyze {run_dir}"


# ----------------------------------------------------------------------------- setup

def build_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW, no weight decay on biases and LayerNorm weights (1-D params)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    t = cfg.train
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps, fused=True)


# ----------------------------------------------------------------------------- run dir

def prepare_run_dir(run_dir: Path, cfg: Config, data_info: dict, resume: bool, force: bool) -> None:
    """Refuse to mix runs: a run directory belongs to one config and one data set, and is
    never a data directory (a run written there would mix with, and --force clear, its files)."""
    if (run_dir / "manifest.json").exists():  # also when --out is --data under another name
        raise UserError(f"{run_dir} is a data directory (it holds manifest.json); choose "
                        "another --out for the run, e.g. runs/NAME")
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = read_json(cfg_path, "run config")
        same = (config_from_dict(old.get("config", {})).hash() == cfg.hash()
                and old.get("data", {}).get("vocab_sha256") == data_info["vocab_sha256"])
        if not same and not force:
            raise UserError(f"{run_dir} holds a run with another config or vocabulary; "
                            "choose a new --out, or pass --force to start over there")
        if same and not resume and not force:
            raise UserError(f"{run_dir} already holds this run; pass --resume to continue it "
                            "or --force to start over")
        if force and not resume:
            _clear_run(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the run directory {run_dir}: {exc.strerror}; "
                        "choose a writable --out") from None
    atomic_write_json(cfg_path, {"config": cfg.to_dict(), "config_hash": cfg.hash(), "data": data_info})


def _clear_run(run_dir: Path) -> None:
    import shutil
    for name in ("history.jsonl", "checkpoints", "tb", "analysis", EVAL_RESULTS, PROBE_RESULTS):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ----------------------------------------------------------------------------- state

@dataclass
class Interval:
    """Sums over the current logging interval, kept on the device (no host syncs)."""
    sums: torch.Tensor  # loss, mlm_loss, nsp_loss, mlm_correct, mlm_count, nsp_correct, nsp_count, grad_norm, steps
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    data_wait: float = 0.0        # seconds blocked in next(loader): is the GPU fed?

    @classmethod
    def zeros(cls, device) -> "Interval":
        return cls(torch.zeros(9, dtype=torch.float64, device=device))

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.tolist(), "tokens": self.tokens}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.sums = torch.tensor(d["sums"], dtype=torch.float64, device=self.sums.device)
        self.tokens = d["tokens"]


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0          # training seconds across resumes
    nonfinite_in_a_row: int = 0

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, d: dict[str, Any]) -> None:
        vars(self).update(vars(Progress(**d)))  # Progress(**d): an unknown or odd key fails here


class StopRequested:
    """SIGINT/SIGTERM -> finish the current step, checkpoint, flush, exit 0."""

    def __init__(self) -> None:
        self.flag = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    since: float | None = None    # when the first signal came (time.monotonic)

    def _handler(self, signum, frame) -> None:
        self.flag = True
        self.since = self.since or time.monotonic()

    def waited(self) -> float:
        """Seconds since the first signal, -1 if none came."""
        return time.monotonic() - self.since if self.flag else -1.0

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- main

@dataclass
class Trainer:
    """What the loop needs; built complete by `main`, consumed by `fit`."""
    cfg: Config
    dist: Dist
    device: torch.device
    run_dir: Path
    model: torch.nn.Module        # possibly DDP-wrapped / compiled: call it to train
    raw_model: torch.nn.Module    # the plain module: checkpoints, evaluation
    optimizer: torch.optim.Optimizer
    loader: Any
    eval_batches: list
    autocast: Any
    scaler: Any
    tokens_per_step: int
    progress: Progress
    interval: Interval
    history: HistoryWriter | None = None
    tb: Any = None
    bf16: Any = None              # precision.Bf16Weights: the bf16 copy that trains, or None

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint's state.json: the state of every part a resume needs, except the
        weights and AdamW moments (raw_model, optimizer: zhbert.checkpoint's safetensors)."""
        state = {"config_hash": self.cfg.hash(), "data": self.loader.state_dict(),
                 "progress": self.progress.state_dict(), "interval": self.interval.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state["data"])
        self.progress.load_state_dict(state["progress"])
        if self.dist.main:  # the saved interval sums are all ranks' (see _checkpoint)
            self.interval.load_state_dict(state["interval"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def main(cfg: Config, data_dir: str | Path, run_dir: str | Path, *, resume: bool = False,
         force: bool = False, progress: bool = True) -> Progress:
    from zhbert.machine import tune_malloc

    tune_malloc()  # no page faults on activations every step (see its docstring)
    dist, device = setup(cfg.train.device)
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, released however it ends
            tr = build_trainer(cfg, data_dir, run_dir, dist, device, resume=resume, force=force,
                               held=held)
            return _fit_and_close(tr, show_progress=progress and dist.main)
    finally:
        shutdown(dist)


def build_trainer(cfg: Config, data_dir: str | Path, run_dir: str | Path, dist: Dist,
                  device: torch.device, *, resume: bool = False, force: bool = False,
                  held: contextlib.ExitStack | None = None) -> Trainer:
    """The complete Trainer of a run: precision, data, run directory, model, optimizer,
    logs, and with ``resume`` the newest valid checkpoint's state loaded. With ``held``
    the run directory's lock is taken into it (``main``: for the whole run)."""
    from zhbert.data import build_eval_set
    from zhbert.datadir import open_data_dir
    from zhbert.model import BertForPretraining
    from zhbert.precision import trains_bf16_copy

    precision, reason, autocast, scaler = _resolve_precision(cfg, device)
    run_dir = Path(run_dir)
    dd = open_data_dir(data_dir)
    data_info = {"dir": str(Path(data_dir).resolve()), "vocab_sha256": dd.vocab.sha256,
                 "vocab_size": len(dd.vocab)}
    # the data first: a config the data cannot serve (say NSP over one document) fails
    # here, before the run directory exists, so the fixed command can use the same --out
    loader = build_loader(cfg, data_dir, dist, device.type)
    loader.check()
    # rank 0 evaluates; its held-out set failing (an empty split) stops every rank
    eval_batches = on_main(dist, device, lambda: build_eval_set(
        data_dir, "validation", data_config(cfg), max_sequences=cfg.data.eval_sequences)) or []

    def prepare() -> None:  # rank 0 alone; a failure (a bad --out) stops every rank
        _claim(run_dir, held)
        prepare_run_dir(run_dir, cfg, data_info, resume, force)
        print(f"zhbert: precision {precision}: {reason}", file=sys.stderr)
        _warn_warmup(cfg)
    on_main(dist, device, prepare)

    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    raw_model = BertForPretraining(model_config_from(cfg, len(dd.vocab))).to(device)
    optimizer = build_optimizer(raw_model, cfg, device)
    # weights and moments before the bf16 copy is made of them; the history cut back
    # to the checkpoint before it is reopened for appending
    ref, state = (_load_resume(cfg, run_dir, dist, device, raw_model, optimizer) if resume
                  else (None, None))
    bf16 = _bf16_copy(raw_model) if trains_bf16_copy(precision) else None
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * dist.world * cfg.data.max_len
    history = _open_history(run_dir, cfg, dist, precision, reason, tokens_per_step,
                            ref.step if ref else None) if dist.main else None
    tr = Trainer(cfg=cfg, dist=dist, device=device, run_dir=run_dir,
                 model=_wrap(bf16.module if bf16 else raw_model, cfg, dist, device, ddp=bf16 is None),
                 raw_model=raw_model, optimizer=optimizer, loader=loader,
                 eval_batches=eval_batches, autocast=autocast, scaler=scaler,
                 tokens_per_step=tokens_per_step, progress=Progress(),
                 interval=Interval.zeros(device), history=history,
                 tb=_tensorboard(run_dir) if dist.main else None, bf16=bf16)
    if state is not None:
        tr.load_state_dict(state)
    return tr


def _fit_and_close(tr: Trainer, show_progress: bool) -> Progress:
    if tr.dist.main:
        atomic_write_json(tr.run_dir / "running.json", {"pid": os.getpid(), "host": _host(),
                                                        "started": _now()})
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
    if held is None or (run_dir / "manifest.json").exists():
        return
    held.enter_context(WriterLock(lock_path(run_dir / "train"), "zhbert train"))
    gone = remove_partial(run_dir)  # safe under the lock: no other save can be in progress
    if gone:
        print(f"zhbert: removed {len(gone)} unfinished checkpoint directories left by an "
              f"interrupted save: {', '.join(gone)}", file=sys.stderr)


def _warn_warmup(cfg: Config) -> None:
    if cfg.train.warmup_steps >= cfg.train.steps:
        print(f"zhbert: warning: train.warmup_steps ({cfg.train.warmup_steps}) >= train.steps "
              f"({cfg.train.steps}): the learning rate never leaves its warm-up; set "
              "train.warmup_steps below train.steps", file=sys.stderr)


def _bf16_copy(raw_model: torch.nn.Module):
    """The bf16 copy that trains; the fp32 raw_model stays the master."""
    from zhbert.precision import Bf16Weights
    return Bf16Weights(raw_model)


def _open_history(run_dir: Path, cfg: Config, dist: Dist, precision: str, reason: str,
                  tokens_per_step: int, resumed_from: int | None) -> HistoryWriter:
    from zhbert.machine import describe_machine
    history = HistoryWriter(run_dir / "history.jsonl")
    history.write({"type": "header", "schema": SCHEMA, "version": VERSION,
                   "run": run_dir.name, "started": _now(), "config": cfg.to_dict(),
                   "precision": precision, "precision_reason": reason,
                   "machine": describe_machine(), "total_steps": cfg.train.steps,
                   "tokens_per_step": tokens_per_step, "world_size": dist.world,
                   **({"resumed_from": resumed_from} if resumed_from is not None else {})})
    return history


def build_loader(cfg: Config, data_dir, dist: Dist = Dist(), device_type: str = "cpu"):
    """The training batches: PretrainingLoader, or with data.warmup_len a
    LengthWarmupLoader whose batches of the first warmup_len_fraction x train.steps
    steps hold max_len / warmup_len times as many sequences of warmup_len tokens.
    On CUDA: loader workers (data.num_workers -1) and pinned batches; with several
    processes on a node, one build of each epoch for all of them (instance_cache)."""
    from zhbert.loader import LengthWarmupLoader, PretrainingLoader, loader_workers
    d, b = cfg.data, cfg.train.batch_size
    workers = loader_workers(d.num_workers, device_type, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cache = instance_cache_dir() if dist.world > 1 or workers > 0 else None

    def loader(max_len: int, batch_size: int) -> PretrainingLoader:
        return PretrainingLoader(data_dir, "train", data_config(cfg, max_len), batch_size=batch_size,
                                 rank=dist.rank, world_size=dist.world, num_workers=workers,
                                 pin_memory=device_type == "cuda", cache_dir=cache)

    full = loader(d.max_len, b)
    if not d.warmup_len:
        return full
    short = loader(d.warmup_len, b * (d.max_len // d.warmup_len))
    short_steps = Schedule.from_config(cfg).short_steps
    return LengthWarmupLoader(short, full, short_steps * cfg.train.grad_accum)


def _resolve_precision(cfg: Config, device: torch.device):
    from zhbert.machine import detect_capabilities
    from zhbert.precision import (apply_matmul_precision, autocast_context, needs_grad_scaler,
                                  resolve_precision)
    resolved = resolve_precision(cfg.train.precision, detect_capabilities(device))
    apply_matmul_precision(resolved)  # TF32 for fp32 on Ampere+
    autocast = lambda: autocast_context(resolved.precision, device)  # noqa: E731
    scaler = (torch.amp.GradScaler(device.type)
              if needs_grad_scaler(resolved.precision, device) else None)
    return resolved.precision, resolved.reason, autocast, scaler


def _load_resume(cfg: Config, run_dir: Path, dist: Dist, device: torch.device,
                 raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """(ref, state) of the newest valid checkpoint, its weights and AdamW moments loaded
    into ``raw_model`` and ``optimizer``; state is the Trainer's state_dict() it was
    saved from. (None, None) when there is none."""
    ref = latest_valid_checkpoint(run_dir, warn=lambda m: print(m, file=sys.stderr))
    agree_on_step(dist, ref.step if ref else None, device, str(run_dir))  # all ranks, or none
    if ref is None:
        if dist.main:  # the records of an attempt killed before its first checkpoint go too
            dropped = truncate_after(run_dir / "history.jsonl", 0)
            print(f"zhbert: no checkpoint in {run_dir} to resume from; starting at step 0 "
                  f"({dropped} history records dropped)", file=sys.stderr)
        return None, None
    state = load_checkpoint(ref.path, raw_model, optimizer)
    if state.get("config_hash") != cfg.hash():
        raise UserError(f"checkpoint {ref.path} was made with another config; "
                        "resume with the run's own config or start a new run")
    if dist.main:
        dropped = truncate_after(run_dir / "history.jsonl", ref.step)
        print(f"zhbert: resuming from step {ref.step} ({ref.path.name}); "
              f"{dropped} history records after it dropped", file=sys.stderr)
    return ref, state


def _wrap(model: torch.nn.Module, cfg: Config, dist: Dist, device: torch.device, ddp: bool = True):
    """DDP (when several ranks and ``ddp``) and torch.compile. A bf16 copy is not wrapped:
    its gradients are accumulated and all-reduced in fp32 on the masters (train_step)."""
    if dist.world > 1 and ddp:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        model = torch.compile(model)
    return model


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the history still has everything
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _host() -> str:
    import socket
    return socket.gethostname()


def _now() -> str:
    import datetime as _dt
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- fit

def fit(tr: Trainer, show_progress: bool = True) -> None:
    t = tr.cfg.train
    bar = _progress_bar(tr) if show_progress else None
    tr.interval.started = time.perf_counter()
    with StopRequested() as stop:
        while tr.progress.step < t.steps:
            step = tr.progress.step + 1
            bad = train_step(tr, step)
            if bad:
                _handle_nonfinite(tr, step, bad)
                continue
            tr.progress.step = step
            rebalance()  # every few seconds: other trainings may have started or ended
            if bar is not None:
                bar.update(1)
            if step % t.log_every == 0 or step == t.steps:
                _log(tr, bar)
            if step % t.eval_every == 0 or step == t.steps:  # rank 0 evaluates; a failure stops all
                on_main(tr.dist, tr.device, lambda: _eval(tr))
            # all ranks stop at the same step (a signal may reach them at different times,
            # or only one of them): the longest time since a signal, -1 when none
            waited = agree_max(tr.dist, stop.waited(), tr.device)
            stopping = waited >= 0
            if step % t.checkpoint_every == 0 or step == t.steps or stopping:
                _checkpoint(tr, "stop" if stopping else "checkpoint",
                            since=time.monotonic() - waited if stopping else None)
            if stopping:
                if tr.dist.main:
                    print(f"\nzhbert: stopped at step {step} by signal; checkpoint saved. "
                          f"Continue with --resume.", file=sys.stderr)
                break
    if bar is not None:
        bar.close()


def train_step(tr: Trainer, step: int) -> str | None:
    """One optimizer step over grad_accum micro-batches. None if it was taken, else why
    not (precision.classify_bad_step: a non-finite step, or a loss-scaler skip)."""
    from zhbert.model import any_padding
    from zhbert.precision import classify_bad_step
    cfg = tr.cfg
    # Dropout randomness as a function of (seed, step, rank): exact resume needs no RNG state.
    torch.manual_seed(cfg.train.seed * 1_000_003 + step * 7919 + tr.dist.rank)
    lr = lr_at(step, cfg)
    for group in tr.optimizer.param_groups:
        group["lr"] = lr
    accum = cfg.train.grad_accum
    stats = torch.zeros(7, dtype=torch.float64, device=tr.device)
    tokens = 0
    ddp = tr.dist.world > 1 and tr.bf16 is None  # the bf16 copy reduces on its masters
    waited = time.perf_counter()
    batches = [next(tr.loader) for _ in range(accum)]
    tr.interval.data_wait += time.perf_counter() - waited
    # a micro-batch's MLM loss is a mean over its masked tokens: weighted by its share of
    # the step's masked tokens, k accumulated micro-batches equal one batch k times larger
    masked = [int((b["mlm_labels"] != IGNORE_INDEX).sum()) for b in batches]  # CPU: no sync
    for micro, batch in enumerate(batches):
        tokens += int(batch["attention_mask"].sum())  # CPU tensor: no device sync
        padded = any_padding(batch["attention_mask"])  # read here, on the host (see model.encode)
        batch = {k: v.to(tr.device, non_blocking=True) for k, v in batch.items()}
        ctx = tr.model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext()
        with ctx:
            with contextlib.nullcontext() if tr.bf16 else tr.autocast():
                out = tr.model(batch, padded=padded)
            share = masked[micro] / max(1, sum(masked))
            loss = out.mlm_loss * share + (out.nsp_loss / accum if out.nsp_loss is not None else 0)
            (tr.scaler.scale(loss) if tr.scaler else loss).backward()
        if tr.bf16 is not None:  # accumulate in fp32, not in the bf16 copy's gradients
            tr.bf16.grads_to_master()
        stats += _mlm_weighted(_step_stats(out), share * accum)
    if tr.bf16 is not None and tr.dist.world > 1:
        all_reduce_mean_(tr.dist, [p.grad for p in tr.raw_model.parameters() if p.grad is not None])
    if tr.scaler is not None:
        tr.scaler.unscale_(tr.optimizer)
    clip = cfg.train.clip_norm if cfg.train.clip_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(tr.raw_model.parameters(), clip)
    finite = torch.isfinite(torch.stack([grad_norm.double(), stats[0]])).tolist()  # one host sync
    if not all(finite):
        tr.optimizer.zero_grad(set_to_none=True)
        # the same verdict on every rank (the gradient norm is the same, the losses are not)
        loss_finite = agree_max(tr.dist, 0.0 if finite[1] else 1.0, tr.device) == 0.0
        kind = classify_bad_step(loss_finite, tr.scaler)  # before update() lowers the scale
        if tr.scaler is not None:
            tr.scaler.update()
        return kind
    if tr.scaler is not None:
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
    else:
        tr.optimizer.step()
    tr.optimizer.zero_grad(set_to_none=True)
    if tr.bf16 is not None:
        tr.bf16.sync_from_master()
    tr.progress.nonfinite_in_a_row = 0
    # Real (non-padding) tokens; under DDP rank 0's count x ranks, to avoid a per-step all-reduce.
    tr.progress.tokens += tokens * tr.dist.world
    tr.interval.tokens += tokens * tr.dist.world
    tr.interval.sums[:7] += stats
    tr.interval.sums[7] += grad_norm.double()
    tr.interval.sums[8] += 1
    return None


def _step_stats(out) -> torch.Tensor:
    """loss, mlm_loss, nsp_loss, mlm_correct, mlm_count, nsp_correct, nsp_count (detached)."""
    zero = out.mlm_loss.new_zeros(())
    parts = [out.loss, out.mlm_loss, out.nsp_loss if out.nsp_loss is not None else zero,
             out.mlm_correct, out.mlm_count,
             out.nsp_correct if out.nsp_correct is not None else zero,
             out.nsp_count if out.nsp_count is not None else zero]
    return torch.stack([p.detach().double() for p in parts])


def _mlm_weighted(stats: torch.Tensor, weight: float) -> torch.Tensor:
    """A micro-batch's stats with its MLM loss weighted as in the step's gradient: the
    logged loss is then the mean over the step's masked tokens, whatever grad_accum.
    Weight 1 (no accumulation) leaves the loss as computed, bit for bit."""
    if weight != 1.0:
        stats[1] *= weight
        stats[0] = stats[1] + stats[2]
    return stats


def _log(tr: Trainer, bar) -> None:
    sums = tr.interval.sums.clone()
    if tr.dist.world > 1:
        import torch.distributed as dist
        dist.all_reduce(sums)
        sums[7:] /= tr.dist.world  # grad norm and step count are identical on every rank
    loss, mlm_loss, nsp_loss, mc, mn, nc, nn_, gnorm, steps = sums.tolist()
    now = time.perf_counter()
    seconds = now - tr.interval.started
    tr.progress.elapsed += seconds
    micro = max(1.0, steps * tr.cfg.train.grad_accum * tr.dist.world)
    pair = nc / nn_ if nn_ else None
    task = OBJECTIVES[tr.cfg.model.objective]  # the sentence-pair task: nsp, sop or None
    rec = {"type": "train", "step": tr.progress.step, "tokens": tr.progress.tokens,
           "elapsed": round(tr.progress.elapsed, 3), "lr": lr_at(tr.progress.step, tr.cfg),
           "loss": loss / micro, "mlm_loss": mlm_loss / micro,
           "mlm_acc": mc / mn if mn else None,
           "nsp_loss": nsp_loss / micro if task else None,
           "nsp_acc": pair if task == "nsp" else None,
           "sop_acc": pair if task == "sop" else None,
           "grad_norm": gnorm / max(1.0, steps),
           "tokens_per_s": tr.interval.tokens / seconds if seconds > 0 else None,
           "data_wait": tr.interval.data_wait / seconds if seconds > 0 else None}
    tr.interval = Interval.zeros(tr.device)
    tr.interval.started = time.perf_counter()

    def write() -> None:  # rank 0 writes; a failure (a full disk) stops every rank
        tr.history.write(rec)
        _tb(tr, rec)
        if bar is not None:
            bar.set_postfix(loss=f"{rec['loss']:.3f}", mlm=f"{rec['mlm_acc'] or 0:.3f}",
                            tok_s=f"{rec['tokens_per_s'] or 0:,.0f}", refresh=False)
    on_main(tr.dist, tr.device, write)


def _eval(tr: Trainer) -> None:
    from zhbert.evaluate import evaluate
    started = time.perf_counter()
    metrics = evaluate(tr.raw_model, tr.eval_batches, tr.device, tr.autocast, tr.cfg.model.objective)
    rec = {"type": "eval", "step": tr.progress.step, "tokens": tr.progress.tokens,
           "elapsed": round(tr.progress.elapsed, 3), **metrics}
    tr.history.write(rec)
    tr.history.sync()
    _tb(tr, rec)
    # Evaluation time is not training time: keep tokens/s honest.
    tr.interval.started += time.perf_counter() - started


def _tb(tr: Trainer, rec: dict) -> None:
    if tr.tb is None:
        return
    for k, v in rec.items():
        if isinstance(v, (int, float)) and k not in ("step", "type"):
            tr.tb.add_scalar(f"{rec['type']}/{k}", v, rec["step"])
    tr.tb.flush()


TORCHRUN_GRACE_S = 30  # torchrun: SIGTERM to the workers, then SIGKILL this much later


def _checkpoint(tr: Trainer, kind: str, since: float | None = None) -> None:
    """Rank 0 writes, as a collective: a failure there (a full disk) stops every rank
    with its message. The logging interval's sums are all-reduced onto rank 0 first, so
    the checkpoint holds every rank's share and a resume logs what an unbroken run logs."""
    if tr.dist.world > 1:
        import torch.distributed
        torch.distributed.all_reduce(tr.interval.sums)
        if not tr.dist.main:
            tr.interval.sums.zero_()

    def save() -> None:
        path = save_checkpoint(tr.run_dir, tr.progress.step, tr.raw_model, tr.optimizer,
                               tr.state_dict())
        apply_retention(tr.run_dir, tr.cfg.train.keep_last, tr.cfg.train.keep_every)
        message = f"checkpoint {path.name}"
        if since is not None:  # a stop: did it fit before torchrun's SIGKILL?
            took = time.monotonic() - since
            fits = took <= TORCHRUN_GRACE_S
            message += (f", {took:.1f} s after the signal (torchrun allows {TORCHRUN_GRACE_S} s)"
                        + ("" if fits else ": too slow, torchrun would have killed it first"))
            if not fits:
                print(f"zhbert: warning: the stop {message}", file=sys.stderr)
        tr.history.write({"type": "event", "step": tr.progress.step, "kind": kind,
                          "message": message})
        tr.history.sync()
    on_main(tr.dist, tr.device, save)


def _handle_nonfinite(tr: Trainer, step: int, kind: str = "nonfinite") -> None:
    from zhbert.precision import SCALER_SKIP
    if kind == SCALER_SKIP:  # fp16 loss scaling finding its scale: recorded, not divergence
        if tr.dist.main:
            tr.history.write({"type": "event", "step": step, "kind": "scaler_skip",
                              "message": f"fp16 gradient overflow at step {step}: step skipped, "
                                         f"loss scale now {tr.scaler.get_scale():g}"})
        tr.progress.step = step
        return
    tr.progress.nonfinite_in_a_row += 1
    n, limit = tr.progress.nonfinite_in_a_row, tr.cfg.train.max_nonfinite
    if tr.dist.main:
        tr.history.write({"type": "event", "step": step, "kind": "nonfinite_loss",
                          "message": f"non-finite loss/gradient at step {step}: step skipped "
                                     f"({n} in a row)"})
    # The skipped step still consumed its batch; move on so the same batch is not retried forever.
    tr.progress.step = step
    if n < limit:
        return
    # Stop at once, with no rollback: a skipped step changes no weight, so the weights are
    # already the last good ones, and going back to a checkpoint with the same config would
    # replay the same batches into the same divergence.
    ref = latest_valid_checkpoint(tr.run_dir, warn=lambda m: print(m, file=sys.stderr))
    last = f"the last checkpoint is step {ref.step}" if ref else "no checkpoint was saved"
    if tr.dist.main:
        tr.history.write({"type": "event", "step": step, "kind": "diverged",
                          "message": f"{n} non-finite steps in a row: run stopped; {last}"})
        tr.history.sync()
    raise UserError(f"training diverged: {n} non-finite steps in a row (steps {step - n + 1}-{step}); "
                    f"the run stopped ({last}). Start it again with a lower train.lr, a longer "
                    "train.warmup_steps or train.precision=fp32 (--resume would replay the same batches)")


def _progress_bar(tr: Trainer):
    from zhbert.progress import progress_bar
    return progress_bar(tr.cfg.train.steps, initial=tr.progress.step, desc="train", unit="step")
