"""The learning-rate schedule: the one home of "what is the lr at step s".

Training calls ``lr_at(step, cfg)`` once per optimizer step; the planner
(``zhbert.analysis.laws``) needs the whole curve, for runs that exist and for runs
that do not, so the same formula is also a frozen ``Schedule`` with a vectorised
``curve(steps)`` (``lr_curve(cfg_or_schedule, steps)``).

Every schedule warms up linearly from 0 to the peak over ``warmup`` steps, then:

  cosine    peak -> floor along half a cosine, reaching the floor at the last step
  linear    peak -> floor in a straight line
  constant  the peak to the end
  wsd       warm-up, stable at the peak, then a linear decay to the floor over the
            last ``decay_fraction`` of the steps after warm-up (Hu et al. 2024, MiniCPM)

floor = peak * min_lr_ratio. Steps are 1-based optimizer steps; beyond ``steps``
the lr stays at its final value.

The planner also needs the data side of the run that changes what a step of lr
is worth: zhbert's sequence-length warm-up (``data.warmup_len``) trains the first
``short_fraction`` of the steps on sequences of ``short_weight`` x max_len tokens.
The held-out set is at full length, and a short-sequence step moves its loss far
less than a full one (the held-out loss sits on the plateau until the switch, then
drops at once: tests/data/tiny-4000), so ``area_weight`` counts such a step's lr
as ``short_weight`` of a full one (issue 16: weights 0 to 0.25 forecast a
4,000-step run from 1,000- and 2,000-step runs within 0.6 points; 1, i.e. no
weighting, misses by 2.8). Training never asks: ``at`` / ``curve`` are the lr.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from zhbert.errors import UserError

SCHEDULES = ("cosine", "linear", "constant", "wsd")
DEFAULT_DECAY_FRACTION = 0.2


def schedule_name(text: str | None) -> str | None:
    """A schedule as typed on a command line, in SCHEDULES' spelling: "--schedule WSD" (as
    the literature writes it) was refused. A name not known is returned as given, for the
    caller's refusal to quote it."""
    if text is None:
        return None
    lowered = text.strip().lower()
    return lowered if lowered in SCHEDULES else text


@dataclass(frozen=True)
class Schedule:
    kind: str
    peak: float
    steps: int
    warmup: int = 0
    min_lr_ratio: float = 0.0
    decay_fraction: float = DEFAULT_DECAY_FRACTION  # wsd only
    short_fraction: float = 0.0     # sequence-length warm-up: share of the steps on short sequences
    short_weight: float = 1.0       # their length / max_len: what their lr area counts for the planner

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise UserError(f"unknown schedule {self.kind!r}; use one of {', '.join(SCHEDULES)}")
        if self.steps <= 0:
            raise UserError(f"a schedule needs steps > 0 (got {self.steps}); e.g. --steps 4000")
        if self.peak <= 0 or not math.isfinite(self.peak):
            raise UserError(f"the peak learning rate must be > 0 (got {self.peak}); e.g. --lr 1e-3")
        if self.warmup < 0:
            raise UserError(f"warm-up steps must be >= 0 (got {self.warmup})")
        if not 0 < self.decay_fraction <= 1:
            raise UserError(f"decay_fraction must be in (0, 1] (got {self.decay_fraction})")
        if not (0 <= self.short_fraction < 1 and 0 <= self.short_weight <= 1):
            raise UserError(f"short_fraction must be in [0, 1) and short_weight in [0, 1] "
                            f"(got {self.short_fraction}, {self.short_weight})")

    @classmethod
    def from_config(cls, cfg: Any) -> "Schedule":
        t, d = cfg.train, cfg.data
        short = (d.warmup_len_fraction, d.warmup_len / d.max_len) if getattr(d, "warmup_len", 0) else (0.0, 1.0)
        return cls(t.schedule, t.lr, t.steps, t.warmup_steps, t.min_lr_ratio,
                   getattr(t, "decay_fraction", DEFAULT_DECAY_FRACTION), *short)

    @property
    def short_steps(self) -> int:
        """Steps on short sequences (the length warm-up; training's own rule, train.py)."""
        return max(1, round(self.short_fraction * self.steps)) if self.short_weight < 1 else 0

    def area_weight(self, steps: Any) -> np.ndarray:
        """What one step's lr counts in the planner's lr area (1, or short_weight in the
        length warm-up)."""
        s = np.asarray(steps)
        return np.where(s <= self.short_steps, self.short_weight, 1.0)

    def at(self, step: int) -> float:
        """lr at one step; the formula training has always used (kept scalar and exact)."""
        if step <= self.warmup:
            return self.peak * step / max(1, self.warmup)
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        floor = self.peak * self.min_lr_ratio
        if self.kind == "cosine":
            return floor + (self.peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if self.kind == "linear":
            return floor + (self.peak - floor) * max(0.0, 1 - progress)
        if self.kind == "wsd":
            decay = (progress - (1 - self.decay_fraction)) / self.decay_fraction
            return floor + (self.peak - floor) * (1 - min(1.0, max(0.0, decay)))
        return self.peak

    def curve(self, steps: Any) -> np.ndarray:
        """lr at every step of ``steps`` (any shape), vectorised; equals ``at`` to rounding."""
        s = np.asarray(steps, dtype=float)
        warm = self.peak * s / max(1, self.warmup)
        progress = np.minimum(1.0, (s - self.warmup) / max(1, self.steps - self.warmup))
        floor = self.peak * self.min_lr_ratio
        if self.kind == "cosine":
            after = floor + (self.peak - floor) * 0.5 * (1 + np.cos(np.pi * progress))
        elif self.kind == "linear":
            after = floor + (self.peak - floor) * np.maximum(0.0, 1 - progress)
        elif self.kind == "wsd":
            decay = np.clip((progress - (1 - self.decay_fraction)) / self.decay_fraction, 0.0, 1.0)
            after = floor + (self.peak - floor) * (1 - decay)
        else:
            after = np.full_like(s, self.peak)
        return np.where(s <= self.warmup, warm, after)

    def stretched(self, steps: int, kind: str | None = None, warmup: int | None = None,
                  peak: float | None = None) -> "Schedule":
        """The same schedule for a run of ``steps`` steps (warm-up kept in steps unless given;
        the length warm-up, a share of the steps as in the config, stretches with it)."""
        return replace(self, steps=int(steps), kind=kind or self.kind,
                       warmup=self.warmup if warmup is None else int(warmup),
                       peak=self.peak if peak is None else float(peak))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, cfg: Any) -> float:
    """Learning rate for optimizer step `step` (1-based): linear warm-up, then decay."""
    return Schedule.from_config(cfg).at(step)


def lr_curve(cfg_or_schedule: Any, steps: Any) -> np.ndarray:
    """lr at each of ``steps`` for a Config or a Schedule (vectorised)."""
    sched = cfg_or_schedule if isinstance(cfg_or_schedule, Schedule) else Schedule.from_config(cfg_or_schedule)
    return sched.curve(steps)


def infer_schedule(steps: Any, lr: Any, total: int | None = None) -> Schedule:
    """The schedule that best explains logged (step, lr) pairs, for histories without a
    config (the seed's JSON, a Trainer's trainer_state.json): peak = the largest lr,
    warm-up = where the line from (0, 0) through the first logged lr reaches the peak,
    the kind and floor by least squares. ``total``: the run's planned steps (default:
    the last logged step, i.e. a finished run)."""
    s, y = np.asarray(steps, dtype=float), np.asarray(lr, dtype=float)
    keep = np.isfinite(s) & np.isfinite(y) & (s > 0)
    s, y = s[keep], y[keep]
    if len(s) < 3 or np.max(y, initial=0.0) <= 0:
        raise UserError("the history logs too few learning rates to tell its schedule")
    peak = float(np.max(y))
    first_peak = float(s[np.argmax(y >= peak * (1 - 1e-6))])
    warm = 0 if y[0] >= peak * (1 - 1e-6) else int(round(min(first_peak, peak * s[0] / max(y[0], 1e-300))))
    total = int(total or round(s[-1]))
    floor_ratio = float(min(1.0, max(0.0, y[-1] / peak)))
    best, best_err = None, math.inf
    for kind in SCHEDULES:
        for ratio in (0.0, floor_ratio):
            cand = Schedule(kind, peak, total, warm, ratio)
            err = float(np.sum((cand.curve(s) - y) ** 2))
            if err < best_err * (1 - 1e-9):
                best, best_err = cand, err
    return best
