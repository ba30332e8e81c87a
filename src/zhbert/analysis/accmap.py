"""Held-out MLM loss -> held-out MLM accuracy: one monotone map for all runs.

The laws (laws.py) forecast the loss; the question is asked in accuracy. Over
the range a study sees, accuracy is close to logistic in the loss:

    acc = expit(a + b * loss),  b < 0  (monotone: lower loss, higher accuracy)

On the seed's history (training-batch metrics, 5K-step means) logit(acc) falls
0.41-0.53 per nat from loss 6.6 to 2.9, near enough a straight line, and two
parameters extrapolate a little past the lowest loss seen without bending back
(an isotonic fit could not extrapolate at all). It is fitted by least squares
in accuracy units on every eval point of every run; its covariance (Jacobian,
AR(1)-aware like the laws') carries the map's own uncertainty into the
forecast (``predict`` returns a standard error), and ``limit(L0)`` is the
accuracy the law's floor maps to ("not reachable" only below it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

from zhbert.analysis.ar import ar1_estimate
from zhbert.errors import UserError


@dataclass(frozen=True)
class AccuracyMap:
    a: float
    b: float
    cov: np.ndarray          # (2, 2) covariance of (a, b)
    sigma: float             # sd of one accuracy point around the map
    phi: float               # AR(1) of those residuals
    n: int
    loss_range: tuple[float, float]

    def __call__(self, loss: Any) -> np.ndarray:
        return expit(self.a + self.b * np.asarray(loss, dtype=float))

    def slope(self, loss: Any) -> np.ndarray:
        """d acc / d loss (negative)."""
        p = self(loss)
        return self.b * p * (1 - p)

    def predict(self, loss: Any) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy at ``loss`` and the map's own standard error there (delta method)."""
        loss = np.asarray(loss, dtype=float)
        p = self(loss)
        g = np.stack([p * (1 - p), p * (1 - p) * loss], axis=-1)
        var = np.einsum("...i,ij,...j->...", g, self.cov, g)
        return p, np.sqrt(np.clip(var, 0, None))

    def to_json(self) -> dict[str, Any]:
        return {"form": "acc = expit(a + b * loss)", "a": self.a, "b": self.b,
                "a_sd": math.sqrt(max(self.cov[0, 0], 0)), "b_sd": math.sqrt(max(self.cov[1, 1], 0)),
                "residual_sd": self.sigma, "ar1_phi": self.phi, "n_points": self.n,
                "loss_range": list(self.loss_range)}


def fit_accuracy_map(loss: Any, acc: Any, lengths: Sequence[int] | None = None) -> AccuracyMap:
    """Fit the map on paired (loss, accuracy) eval points: all runs stacked, each in step
    order, ``lengths`` points each (default: one run). The residuals' AR(1) is
    ``ar.ar1_estimate``, within each run, so the jump from one run's last point to the
    next run's first is not taken for correlation (the map's two parameters soak up
    little of the slow noise; the laws' four do, and use ``ar.ar1_reml``)."""
    x, y = np.asarray(loss, dtype=float), np.asarray(acc, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0) & (y < 1)
    bounds = np.cumsum([0, *(lengths if lengths is not None else [len(x)])])
    if bounds[-1] != len(x):
        raise ValueError(f"lengths add up to {bounds[-1]}, not the {len(x)} points given")
    kept = [int(keep[lo:hi].sum()) for lo, hi in zip(bounds[:-1], bounds[1:])]
    x, y = x[keep], y[keep]
    if len(x) < 4 or np.ptp(x) <= 0:
        raise UserError("the loss -> accuracy map needs at least 4 eval points with both held-out "
                        "loss and accuracy, at different losses; evaluate more often")
    b0, a0 = np.polyfit(x, logit(np.clip(y, 1e-4, 1 - 1e-4)), 1)
    res = least_squares(lambda p: expit(p[0] + p[1] * x) - y, [a0, min(b0, -1e-3)],
                        bounds=([-50, -50], [50, 0]))
    r = res.fun
    phi = ar1_estimate(r, [n for n in kept if n])
    s2 = float(r @ r) / max(len(r) - 2, 1)
    J = res.jac
    # OLS covariance inflated for AR(1) noise: the long-run variance factor (1 + phi) / (1 - phi)
    cov = s2 * np.linalg.pinv(J.T @ J) * (1 + phi) / (1 - phi)
    return AccuracyMap(float(res.x[0]), float(res.x[1]), cov, math.sqrt(s2), phi, len(x),
                       (float(x.min()), float(x.max())))
