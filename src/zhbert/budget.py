"""Training for a time budget: how many steps fit N minutes on this machine (`train --minutes`).

Two CPUs that both have AVX512-BF16 trained the demo's 2-layer step in 0.114 s and in
0.205 s (an AMD EPYC of one generation and of another, 2 threads each): a step count
chosen for one misses a time target on the other by 1.8x. A budget in minutes is what a
user means ("the demo in 5 minutes", cramming's "a day on one GPU"), and the schedule
needs its length up front (the lr decay, the length warm-up's share). So the steps are
chosen once, before the run, from the step's measured cost: a few steps at each sequence
length the run trains on, and one held-out evaluation. They are then an ordinary
``train.steps`` in the run's config.json: a resume or a repeat with ``--config RUN`` trains
the same steps whatever the machine.
"""

from __future__ import annotations

import dataclasses
import tempfile
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from zhbert.distributed import Dist, agree_max
from zhbert.errors import UserError
from zhbert.schedule import Schedule

WARM_STEPS = 2   # untimed: kernel choice, the allocator growing to the step's peak
TIMED_STEPS = 8  # timed; their mean is kept: a run pays its odd slow steps too


@dataclass(frozen=True)
class StepCosts:
    """Measured seconds of one optimizer step at each sequence length, of one held-out
    evaluation (0 where this process does not evaluate) and of one checkpoint."""
    step_s: dict[int, float]
    eval_s: float
    checkpoint_s: float = 0.0

    def seconds(self, cfg: Any, steps: int) -> float:
        """Predicted training seconds of ``steps`` steps of ``cfg``: the length warm-up's
        steps at its length, the rest at full length, and an evaluation every
        train.eval_every steps and a checkpoint every train.checkpoint_every, each also at
        the end (as trainloop.fit does)."""
        d, t = cfg.data, cfg.train
        short = Schedule.from_config(with_steps(cfg, steps)).short_steps if d.warmup_len else 0
        full = self.step_s[d.max_len] * (steps - short)
        return (full + (self.step_s[d.warmup_len] * short if short else 0.0)
                + self.eval_s * _every(steps, t.eval_every)
                + self.checkpoint_s * _every(steps, t.checkpoint_every))

    def describe(self) -> str:
        """'0.201 s a step at length 16, 0.205 s at 128, 1.9 s an evaluation'."""
        parts = [f"{s:.3f} s a step at length {n}" if i == 0 else f"{s:.3f} s at {n}"
                 for i, (n, s) in enumerate(sorted(self.step_s.items()))]
        if self.eval_s:
            parts.append(f"{self.eval_s:.1f} s an evaluation")
        return ", ".join(parts + [f"{self.checkpoint_s:.1f} s a checkpoint"])


def _every(steps: int, interval: int) -> int:
    """How many times a run of ``steps`` steps does what it does every ``interval`` steps
    and at its last step."""
    return steps // interval + (steps % interval != 0)


def with_steps(cfg: Any, steps: int) -> Any:
    """``cfg`` with train.steps = ``steps``."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))


def step_seconds(step: Callable[[int], Any], first: int = 1) -> float:
    """The mean seconds of ``step(i)`` over TIMED_STEPS calls, after WARM_STEPS untimed."""
    for i in range(WARM_STEPS):
        step(first + i)
    started = time.perf_counter()
    for i in range(TIMED_STEPS):
        step(first + WARM_STEPS + i)
    return (time.perf_counter() - started) / TIMED_STEPS


def seconds_of(call: Callable[[], Any]) -> float:
    """Seconds of ``call()``, the second of two calls (the first pays one-time costs: an
    evaluation's first pass in eval mode, a checkpoint directory's creation)."""
    call()
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def steps_within(seconds: float, cfg: Any, costs: StepCosts) -> int:
    """The most steps whose predicted time (``StepCosts.seconds``) is within ``seconds``;
    refused (UserError) when that leaves the lr warm-up unfinished."""
    low, high = 0, int(seconds / min(costs.step_s.values())) + 1
    while low < high:  # the predicted time grows with the steps: the last that fits
        mid = (low + high + 1) // 2
        if costs.seconds(cfg, mid) <= seconds:
            low = mid
        else:
            high = mid - 1
    if low <= cfg.train.warmup_steps:
        raise UserError(
            f"--minutes {seconds / 60:g} fits {low:,} steps here ({costs.describe()}), "
            f"no more than the lr warm-up's {cfg.train.warmup_steps:,} (train.warmup_steps): "
            f"give more minutes (twice the warm-up takes about "
            f"{costs.seconds(cfg, 2 * cfg.train.warmup_steps) / 60:.1f} minutes) or a shorter "
            f"warm-up")
    return low


def warmup_warning(cfg: Any, steps: int, minutes: float, costs: StepCosts) -> str | None:
    """A run of ``steps`` that the lr warm-up fills more than half of runs, but hardly
    trains at its peak lr: say so, and what twice the warm-up would take."""
    warm = cfg.train.warmup_steps
    if steps >= 2 * warm:
        return None
    return (f"zhbert: warning: --minutes {minutes:g} fits {steps:,} steps, {warm:,} of them the "
            f"lr warm-up (train.warmup_steps): {steps - warm:,} steps of {cfg.train.schedule} "
            f"schedule after it. Twice the warm-up takes about "
            f"{costs.seconds(cfg, 2 * warm) / 60:.1f} minutes")


OVERRUN = 1.1  # a loop this much past (or this much short of) its --minutes is said at the end


def budget_note(minutes: float, seconds: float) -> str | None:
    """After a --minutes run: a loop more than OVERRUN x its minutes, or short of them by as
    much, ran its steps at another speed than measured at the start (the machine got busier
    or slower: a demo trained 4.0 minutes of 3.5, a 1-minute run beside a test suite 1.4; or
    it was busier while the steps were timed: a tester's demo trained 2.4 minutes of 3.25).
    The steps stay: they fix the lr schedule."""
    ratio = seconds / (minutes * 60)
    if 2 - OVERRUN <= ratio <= OVERRUN:  # within 10% either way
        return None
    # two decimals below 10 minutes: "0.4 minutes of the 0.4 asked: 12% slower" read as a contradiction
    trained = f"{seconds / 60:.1f}" if seconds >= 600 else f"{seconds / 60:.2f}"
    head = f"zhbert: note: the run trained {trained} minutes of the {minutes:g} asked: its steps ran "
    if ratio > 1:
        return (head + f"{ratio - 1:.0%} slower than measured at its start (another process, or "
                "a slower machine by then; `zhbert status` says when a run is starved)")
    return (head + f"{1 / ratio - 1:.0%} faster than measured at its start (the machine was busier "
            "while they were timed): the same --minutes on a quiet machine fits more steps")


def measure(cfg: Any, loader: Any, vocab_size: int, device: torch.device,
            eval_batches: list) -> StepCosts:
    """Steps of ``cfg`` timed at each sequence length of ``loader`` (train.build_loader's:
    a PretrainingLoader, or a LengthWarmupLoader's two), on a throwaway model and optimizer
    in the run's precision, and one evaluation of ``eval_batches``. The loaders are rewound
    after; the run's own model is made afterwards from the seed."""
    from zhbert.checkpoint import save_checkpoint
    from zhbert.evaluate import evaluate
    from zhbert.model import BertForPretraining
    from zhbert.precision import trains_bf16_copy
    from zhbert.run import model_config_from
    from zhbert.trainloop import Interval, Progress, Trainer, train_step
    from zhbert.trainparts import bf16_copy, build_optimizer, resolve_precision_for, wrap_model
    precision, _, autocast, scaler = resolve_precision_for(cfg, device)
    model = BertForPretraining(model_config_from(cfg, vocab_size)).to(device)
    bf16 = bf16_copy(model) if trains_bf16_copy(precision) else None
    optimizer = build_optimizer(model, cfg, device)
    net = wrap_model(bf16.module if bf16 else model, cfg, Dist(), device)  # compiled once
    step_s = {}
    for part in [loader.short, loader.full] if hasattr(loader, "short") else [loader]:
        start = part.state_dict()
        tr = Trainer(cfg=cfg, dist=Dist(), device=device, run_dir=Path(), eval_batches=[],
                     model=net,
                     raw_model=model, optimizer=optimizer, loader=part, autocast=autocast,
                     scaler=scaler, tokens_per_step=0, progress=Progress(),
                     interval=Interval.zeros(device), bf16=bf16)
        step_s[part.cfg.max_len] = step_seconds(lambda i: train_step(tr, i))
        part.load_state_dict(start)
    eval_s = seconds_of(lambda: evaluate(model, eval_batches, device, autocast,
                                         cfg.model.objective)) if eval_batches else 0.0
    with tempfile.TemporaryDirectory(prefix="zhbert-budget-") as scratch:
        checkpoint_s = seconds_of(lambda: save_checkpoint(scratch, 0, model, optimizer, {}))
    return StepCosts(step_s, eval_s, checkpoint_s)


def budgeted(cfg: Any, loader: Any, vocab_size: int, dist: Dist, device: torch.device,
             minutes: float, eval_batches: list) -> Any:
    """``cfg`` with train.steps the most that fit ``minutes`` (``measure``, ``steps_within``).
    Under torchrun every rank times its own steps (rank 0 also its evaluation) and the
    fewest steps, the slowest rank's, are kept."""
    costs = measure(cfg, loader, vocab_size, device, eval_batches)
    steps = steps_within(minutes * 60, cfg, costs)
    steps = int(-agree_max(dist, -steps, device))
    if dist.main:
        threads = torch.get_num_threads()
        print(f"zhbert: --minutes {minutes:g}: {costs.describe()} (means of {TIMED_STEPS} "
              f"steps, {threads} thread{'s' if threads != 1 else ''}): train.steps = {steps:,}",
              file=sys.stderr)
        warning = warmup_warning(cfg, steps, minutes, costs)  # of the steps all ranks agreed
        if warning:
            print(warning, file=sys.stderr)
    return with_steps(cfg, steps)
