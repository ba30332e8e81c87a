"""Two normal answers weighed together: how the delta method states a forecast that mixes two
readings of the lr fall ahead (laws.LawFit.readings; the bootstrap mixes its refits instead,
laws.LawFit.loss_draws). Elementwise over arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr  # the normal cdf, without scipy.stats' per-call checks
from scipy.stats import norm

TINY = 1e-12  # a standard deviation of 0 (a parameter at its bound) as a point mass, nearly


def mixture_moments(m1: float, s1: float, m0: float, s0: float, w: float) -> tuple[float, float]:
    """Mean and standard deviation of (1 - w) N(m1, s1) + w N(m0, s0)."""
    m = (1 - w) * m1 + w * m0
    var = (1 - w) * s1 * s1 + w * s0 * s0 + w * (1 - w) * (m1 - m0) ** 2
    return float(m), float(np.sqrt(max(var, 0.0)))


def mixture_bounds(m1: Any, s1: Any, m0: Any, s0: Any, w: Any, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of (1 - w) N(m1, s1) + w N(m0, s0), elementwise; where
    w is 0, m1 -+ z s1 exactly. Found by bisection on all elements at once (60 halvings of a
    bracket 20 sds wide: far below any figure printed)."""
    m1, s1, m0, s0, w = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float))
                                              for v in (m1, s1, m0, s0, w)))
    s1, s0 = np.maximum(s1, TINY), np.maximum(s0, TINY)
    z = float(norm.ppf(0.5 + level / 2))
    span = 10 * np.maximum(s1, s0)
    out = []
    for q in (0.5 - level / 2, 0.5 + level / 2):
        a, b = np.minimum(m1, m0) - span, np.maximum(m1, m0) + span
        for _ in range(60):
            mid = (a + b) / 2
            below = (1 - w) * ndtr((mid - m1) / s1) + w * ndtr((mid - m0) / s0) < q
            a, b = np.where(below, mid, a), np.where(below, b, mid)
        out.append((a + b) / 2)
    lo, hi = (np.where(w > 0, v, m1 + sign * z * s1) for v, sign in zip(out, (-1, 1)))
    return lo, hi
