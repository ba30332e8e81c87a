"""One run's held-out loss curve as the laws (laws.py) fit it: its points, its schedule, and the
first step worth fitting (past the lr warm-up, and past the fall after a sequence-length
switch: ``settled_from``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from zhbert.schedule import Schedule

MIN_POINTS = 6   # eval points a law needs (laws._check_points)

# After a sequence-length switch the held-out loss (at full length) first falls by what the
# longer positions are learned in, fast, then follows the lr: 5.49 -> 3.87 in 150 steps on the
# 2-layer demo. Fitted across that, the law's residual sd was 0.23 and a 4,000-step run's 80%
# band 33-53%; from 150 steps later, 0.004 and 41-43%. A point is still in that fall while its
# drop to the next point is more than SETTLE_FACTOR times the median drop of the SETTLE_WINDOW
# points after it; a run that switches while still on the plateau (tiny-1000, tiny-2000) falls
# faster later, not sooner, and keeps every point (a fixed skip cost it 9 points of forecast).
SETTLE_FACTOR = 4.0
SETTLE_WINDOW = 5
SETTLE_KEEP = 2 * MIN_POINTS


def settled_from(steps: np.ndarray, loss: np.ndarray, start: int) -> int:
    """The first step at or after ``start`` past the fall that follows a length switch (see
    SETTLE_FACTOR). It skips at most a third of the points from ``start`` on, and only where
    SETTLE_KEEP points stay: fewer cannot pin the law without the fall (a 1,000-step demo run
    that kept 8 of its 10 points forecast 4,000 steps at 25-56%, 80%)."""
    keep = (steps >= start) & np.isfinite(loss)
    s, y = steps[keep], loss[keep]
    most = min(len(s) // 3, len(s) - SETTLE_KEEP)
    if most <= 0:
        return start
    rate = (y[:-1] - y[1:]) / np.diff(s)  # the drop a step from each point to the next
    i = 0
    while i < most and rate[i] > SETTLE_FACTOR * np.median(np.abs(rate[i + 1:i + 1 + SETTLE_WINDOW])):
        i += 1
    return int(s[i]) if i else start


@dataclass(frozen=True)
class RunCurve:
    """One run's loss at its eval steps and the schedule that produced them."""
    name: str
    steps: np.ndarray
    loss: np.ndarray
    schedule: Schedule
    fit_from: int = 0               # points before this step are not fitted (warm-up, plateau)

    @functools.cached_property
    def start(self) -> int:
        """The first fitted step: ``fit_from``, and after a length switch past the fall that
        follows it (``settled_from``, from these points only: a truncated run decides anew)."""
        start = max(self.fit_from, 1)
        if 0 < self.schedule.short_steps < start:
            return settled_from(self.steps, self.loss, start)
        return start

    def fitted(self) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.steps >= self.start) & np.isfinite(self.loss)
        return self.steps[keep].astype(int), self.loss[keep]
