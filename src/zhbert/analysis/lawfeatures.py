"""What the laws (laws.py) read off a learning-rate schedule at some steps: the forward area
S1 and the annealing area S2 (lr_annealing), and the drops in blocks (multi_power), in the
units that keep every fitted parameter O(1). See laws.py's docstring for the formulas."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import lfilter

from zhbert.errors import UserError
from zhbert.schedule import Schedule

LAM = 0.999
MAX_BLOCKS = 300
MAX_GRID = 200_000   # lr values summed per schedule (beyond: every k-th step, times k)
MAX_STEPS = 10 ** 15  # steps summed on int64 grids: past 2^63 a step overflowed or wrapped


@dataclass(frozen=True)
class Units:
    ref: float      # lr unit (largest fitted peak)
    scale: float    # area unit (largest fitted S1)


def _eta(schedule: Schedule, upto: int, ref: float) -> np.ndarray:
    """lr of steps 0..upto in units of ref (step 0: lr 0, before training), weighted as S1 counts it."""
    grid = np.arange(0, upto + 1)
    return schedule.curve(grid) * schedule.area_weight(grid) / ref


def _drops(eta: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.maximum(0.0, eta[:-1] - eta[1:])]


@dataclass(frozen=True)
class Features:
    """What a law needs at some steps of one schedule (precomputed once per schedule)."""
    s1: np.ndarray                   # (n,)
    s2: np.ndarray                   # (n,) lr_annealing
    gap: np.ndarray | None = None    # (n, K) S_k(t) per drop block (multi_power), 0 where k > t
    eta_b: np.ndarray | None = None  # (K,) lr at each block
    d_b: np.ndarray | None = None    # (K,) drop in each block


def features(schedule: Schedule, steps: Any, units: Units, law: str) -> Features:
    """Areas at ``steps``: exact sums over every step up to MAX_GRID steps; beyond, sums over
    every k-th step times k (a 100M-step forecast would otherwise hold 100M lr values).
    Remembered for the last few questions: a forecast asks for the same steps of the same
    schedule from both readings of the anneal, its band and its share (read-only arrays)."""
    top = float(np.max(steps, initial=1))  # float: an int past int64 would raise or wrap here
    if not top <= MAX_STEPS:
        raise UserError(f"a run of {top:,.0f} steps is past what the law can sum ({MAX_STEPS:,}): "
                        "ask about a shorter run (--steps), or check the history's train.steps")
    f = _features(schedule, tuple(np.asarray(steps, dtype=int).ravel().tolist()), units, law)
    if np.ndim(steps) == 0 and law != "multi_power":  # one step in, one value out, as before
        return Features(f.s1[0], f.s2[0])
    return f


@functools.lru_cache(maxsize=32)
def _features(schedule: Schedule, steps: tuple[int, ...], units: Units, law: str) -> Features:
    f = _compute_features(schedule, np.array(steps, dtype=int), units, law)
    for a in (f.s1, f.s2, f.gap, f.eta_b, f.d_b):
        if a is not None:
            a.setflags(write=False)
    return f


def _compute_features(schedule: Schedule, steps: np.ndarray, units: Units, law: str) -> Features:
    top = int(np.max(steps, initial=1))
    k = max(1, -(-top // MAX_GRID))
    grid = np.arange(0, top + k, k)
    eta = schedule.curve(grid) / units.ref
    cum = np.cumsum(eta * schedule.area_weight(grid)) * k   # S1: the length warm-up counts less
    d = _drops(eta)
    lam = LAM ** k
    s2 = np.cumsum(lfilter([1 - lam], [1, -lam], d))
    at = lambda a: a[steps // k] if k == 1 else np.interp(steps, grid, a)  # noqa: E731
    f = Features(at(cum) / units.scale, at(s2))
    if law != "multi_power":
        return f
    nz = np.nonzero(d > 0)[0]
    if len(nz) == 0:
        return Features(f.s1, f.s2, np.zeros((len(steps), 0)), np.zeros(0), np.zeros(0))
    groups = np.array_split(nz, min(MAX_BLOCKS, len(nz)))
    d_b = np.array([d[g].sum() for g in groups])
    centre = np.array([int(round(np.average(g, weights=d[g]))) for g in groups])
    gap = (at(cum)[:, None] - cum[centre - 1][None, :]) / units.scale
    gap = np.where(grid[centre][None, :] <= steps[:, None], gap, 0.0)
    # eta -> 0 at the end of a decay-to-zero: eta^(-gamma) would be inf times a 0 area
    return Features(f.s1, f.s2, gap, np.maximum(eta[centre], 1e-4), d_b)
