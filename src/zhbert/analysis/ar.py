"""Autoregressive noise: AR coefficients (Yule-Walker, order by AIC), innovations and
simulated AR series. The curve fits' sieve bootstrap resamples residual noise with them,
so that intervals respect the autocorrelation of a learning curve's evaluations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter


def autocov(e: np.ndarray, lags: int) -> np.ndarray:
    e = e - e.mean()
    return np.array([e[: len(e) - j] @ e[j:] for j in range(lags + 1)]) / len(e)


def yule_walker(e: Any, order: int) -> np.ndarray:
    """AR(order) coefficients of ``e`` by Yule-Walker (always a stationary model)."""
    r = autocov(np.asarray(e, dtype=float), order)
    if order == 0 or r[0] <= 0:
        return np.zeros(order)
    return solve_toeplitz(r[:order], r[1:])


def ar_select(e: Any, max_order: int | None = None) -> np.ndarray:
    """AR coefficients of ``e``, the order chosen by AIC (n log s2_p + 2p) up to
    10 log10 n (as R's ``ar``); empty when white noise is the best description."""
    e = np.asarray(e, dtype=float)
    n = len(e)
    pmax = max_order if max_order is not None else min(int(10 * math.log10(n)), (n - 1) // 4)
    r = autocov(e, max(pmax, 0))
    if r[0] <= 0:
        return np.zeros(0)
    best, best_aic = np.zeros(0), n * math.log(r[0])
    for order in range(1, pmax + 1):
        phi = solve_toeplitz(r[:order], r[1:order + 1])
        s2 = r[0] - phi @ r[1:order + 1]
        if s2 <= 0:
            break
        aic = n * math.log(s2) + 2 * order
        if aic < best_aic:
            best, best_aic = phi, aic
    return best


def stationary(phi: np.ndarray, toward: np.ndarray) -> np.ndarray:
    """``phi`` moved towards ``toward`` until every root is inside 0.99 (Kilian 1998)."""
    for d in np.linspace(1.0, 0.0, 21):
        cand = toward + d * (phi - toward)
        if len(cand) == 0 or np.max(np.abs(np.roots(np.r_[1.0, -cand]))) < 0.99:
            return cand
    return toward


def innovations(e: np.ndarray, phi: np.ndarray) -> np.ndarray:
    e = e - e.mean()
    out = lfilter(np.r_[1.0, -phi], [1.0], e)[len(phi):] if len(phi) else e
    return out - out.mean()


def simulate_ar(phis: np.ndarray, innov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One AR series per row of ``phis`` (B, p), driven by resampled innovations."""
    burn = 100 + 10 * phis.shape[1]
    eps = rng.choice(innov, size=(len(phis), n + burn))
    if phis.shape[1] == 0:
        return eps[:, burn:]
    return np.stack([lfilter([1.0], np.r_[1.0, -phi], row)[burn:] for phi, row in zip(phis, eps)])
