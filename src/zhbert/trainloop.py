"""The training loop: a Trainer's state and one run of `fit` over it.

train.py builds a complete ``Trainer`` (precision, data, run directory, model,
optimizer, resume) and calls ``fit``; here are the loop, one optimizer step
(``train_step``), logging, evaluation, checkpoints and the non-finite policy.
Everything that must survive a restart is ``Trainer.state_dict()`` plus the
weights and AdamW moments (zhbert.checkpoint's safetensors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zhbert.checkpoint import apply_retention, latest_valid_checkpoint, save_checkpoint
from zhbert.config import OBJECTIVES, Config
from zhbert.data import IGNORE_INDEX
from zhbert.distributed import Dist, agree_max, agree_sum, all_reduce_mean_, on_main
from zhbert.errors import UserError
from zhbert.history import DIVERGED_ADVICE, DIVERGED_EVENT, STOP_EVENT, HistoryWriter
from zhbert.schedule import lr_at
from zhbert.threads import rebalance

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
    warned: set[str] = field(default_factory=set)  # warnings printed: see warn_once
    # this rank's real tokens since the last _sync_tokens (0 at every checkpoint: not saved)
    pending_tokens: int = 0

    def warn_once(self, message: str) -> None:
        """Print a warning on stderr unless this run printed it already: retention names a
        corrupt checkpoint it leaves in place at every save, and once is enough."""
        if message not in self.warned:
            self.warned.add(message)
            print(message, file=sys.stderr)

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


# ----------------------------------------------------------------------------- fit

def fit(tr: Trainer, show_progress: bool = True) -> None:
    t = tr.cfg.train
    bar = _progress_bar(tr) if show_progress else None
    tr.interval.started = time.perf_counter()
    with StopRequested() as stop:
        while tr.progress.step < t.steps:
            step = tr.progress.step + 1
            bad = train_step(tr, step)
            if bad:  # the step is spent (its batch is used); too many in a row stop the run
                _handle_nonfinite(tr, step, bad)
            tr.progress.step = step
            rebalance()  # every few seconds: other trainings may have started or ended
            # a skipped step still evaluates and checkpoints where it falls (it skipped them,
            # the last step's included: a run ended without its final checkpoint); its log
            # waits for a step that was taken (the interval holds none of its sums), except
            # at the end, where the steps taken since the last log are logged
            if (step % t.log_every == 0 or step == t.steps) and (not bad or _ends_taken(tr, step)):
                _log(tr, bar)
            if bar is not None:  # after the log: a plain line (progress.LineProgress) prints
                bar.update(1)    # at the update, with this step's figures, not the last log's
            if step % t.eval_every == 0 or step == t.steps:  # rank 0 evaluates; a failure stops all
                _sync_tokens(tr)  # the record's tokens
                on_main(tr.dist, tr.device, lambda: _eval(tr))
            # all ranks stop at the same step (a signal may reach them at different times,
            # or only one of them): the longest time since a signal, -1 when none
            waited = agree_max(tr.dist, stop.waited(), tr.device)
            stopping = waited >= 0
            if step % t.checkpoint_every == 0 or step == t.steps or stopping:
                _checkpoint(tr, STOP_EVENT if stopping else "checkpoint",
                            since=time.monotonic() - waited if stopping else None)
            if stopping:
                if tr.dist.main:
                    print(f"\nzhbert: stopped at step {step} by signal; checkpoint saved. "
                          f"Continue with --resume.", file=sys.stderr)
                break
    if bar is not None:
        bar.close()


def _ends_taken(tr: Trainer, step: int) -> bool:
    """At the last step, skipped: does the interval hold steps that were taken? (Every rank
    asks: its answer decides a collective; a rank's sums restart after a checkpoint.)"""
    if step != tr.cfg.train.steps:
        return False
    return agree_max(tr.dist, float(tr.interval.sums[8].item() > 0), tr.device) > 0


def train_step(tr: Trainer, step: int) -> str | None:
    """One optimizer step over grad_accum micro-batches. None if it was taken, else why
    not (precision.classify_bad_step: a non-finite step, or a loss-scaler skip)."""
    from zhbert.model import any_padding
    cfg = tr.cfg
    # Dropout randomness as a function of (seed, step, rank): exact resume needs no RNG state.
    # Modulo 2^64, torch's seed range: the same seed as before wherever it fitted.
    torch.manual_seed((cfg.train.seed * 1_000_003 + step * 7919 + tr.dist.rank) % 2 ** 64)
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
    # The gradient norm is the same on every rank, the losses are not: one rank's non-finite
    # loss with finite gradients (a -inf label logit) must skip the step everywhere, or that
    # rank waits in _skip_step's collective while the others go on to the next step's.
    if agree_max(tr.dist, 0.0 if all(finite) else 1.0, tr.device) > 0:  # world 1: no collective
        return _skip_step(tr, loss_finite=finite[1])
    _update(tr)
    tr.progress.nonfinite_in_a_row = 0
    tr.pending_tokens += tokens  # under torchrun: summed at the next log, evaluation or checkpoint
    if tr.dist.world == 1:  # nothing to sum: counted at once, for callers of train_step alone
        _sync_tokens(tr)    # (benchmarks.race_sides reads the count after each step)
    tr.interval.sums[:7] += stats
    tr.interval.sums[7] += grad_norm.double()
    tr.interval.sums[8] += 1
    return None


def _skip_step(tr: Trainer, loss_finite: bool) -> str:
    """Drop a step whose gradients are not finite; why (precision.classify_bad_step)."""
    from zhbert.precision import classify_bad_step
    tr.optimizer.zero_grad(set_to_none=True)
    # the same verdict on every rank (the gradient norm is the same, the losses are not)
    loss_finite = agree_max(tr.dist, 0.0 if loss_finite else 1.0, tr.device) == 0.0
    kind = classify_bad_step(loss_finite, tr.scaler)  # before update() lowers the scale
    if tr.scaler is not None:
        tr.scaler.update()
    return kind


def _update(tr: Trainer) -> None:
    """The optimizer step (through the loss scaler, if any), then the bf16 copy follows."""
    if tr.scaler is not None:
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
    else:
        tr.optimizer.step()
    tr.optimizer.zero_grad(set_to_none=True)
    if tr.bf16 is not None:
        tr.bf16.sync_from_master()


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


def _sync_tokens(tr: Trainer) -> None:
    """Add every rank's real (non-padding) tokens since the last call to the run's count:
    exact under torchrun at one collective per log, evaluation or checkpoint, where a
    record or a checkpoint reads the count, rather than one a step. Every rank calls it."""
    tokens = agree_sum(tr.dist, tr.pending_tokens, tr.device)
    tr.pending_tokens = 0
    tr.progress.tokens += tokens
    tr.interval.tokens += tokens


def _log(tr: Trainer, bar) -> None:
    _sync_tokens(tr)
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
    if tr.tb is not None:
        tr.tb.log(rec)


TORCHRUN_GRACE_S = 30  # torchrun: SIGTERM to the workers, then SIGKILL this much later


def _checkpoint(tr: Trainer, kind: str, since: float | None = None) -> None:
    """Rank 0 writes, as a collective: a failure there (a full disk) stops every rank
    with its message. The logging interval's sums are all-reduced onto rank 0 first, so
    the checkpoint holds every rank's share and a resume logs what an unbroken run logs."""
    _sync_tokens(tr)  # the checkpoint's count is complete: nothing pending is saved
    if tr.dist.world > 1:
        import torch.distributed
        torch.distributed.all_reduce(tr.interval.sums)
        if not tr.dist.main:
            tr.interval.sums.zero_()

    def save() -> None:
        # the records before it first: after a power loss a durable checkpoint must not
        # outlive them (a resume from it never writes them again)
        tr.history.sync()
        path = save_checkpoint(tr.run_dir, tr.progress.step, tr.raw_model, tr.optimizer,
                               tr.state_dict(), warn=tr.warn_once)  # as retention's warnings
        apply_retention(tr.run_dir, tr.cfg.train.keep_last, tr.cfg.train.keep_every,
                        warn=tr.warn_once)
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
        tr.history.write({"type": "event", "step": step, "kind": DIVERGED_EVENT,
                          "message": f"{n} non-finite steps in a row: run stopped; {last}"})
        tr.history.sync()
    raise UserError(f"training diverged: {n} non-finite steps in a row (steps {step - n + 1}-{step}); "
                    f"the run stopped ({last}); {DIVERGED_ADVICE}")


def _progress_bar(tr: Trainer):
    from zhbert.progress import progress_bar
    return progress_bar(tr.cfg.train.steps, initial=tr.progress.step, desc="train", unit="step",
                        every=tr.cfg.train.log_every)
