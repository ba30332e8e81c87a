"""Autoregressive noise: AR coefficients (Yule-Walker, order by AIC), innovations and
simulated AR series. The curve fits' sieve bootstrap resamples residual noise with them,
so that intervals respect the autocorrelation of a learning curve's evaluations.

Below them, AR(1) noise pooled over several runs' stacked residuals (``lengths``: the
points of each run), as the schedule-aware laws (laws.py) and the planner's accuracy
noise (forecast.py) need it: the estimate, the Prais-Winsten whitening, each point's
noise scale, a late point's sd and simulated AR(1) noise."""

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


# ----------------------------------------------------------------------------- AR(1) over runs

def whiten(r: np.ndarray, lengths: list[int], phi: float) -> np.ndarray:
    """Prais-Winsten transform of the stacked residuals, run by run."""
    if phi == 0.0:
        return r
    out, i = np.empty_like(r), 0
    for n in lengths:
        seg = r[i:i + n]
        out[i] = math.sqrt(1 - phi * phi) * seg[0]
        out[i + 1:i + n] = seg[1:] - phi * seg[:-1]
        i += n
    return out


def segments(r: np.ndarray, lengths: list[int]):
    i = 0
    for n in lengths:
        yield r[i:i + n]
        i += n


def ar1_estimate(r: np.ndarray, lengths: list[int]) -> float:
    """AR(1) coefficient of the noise, pooled over runs, in [0, 0.95]: the larger of two
    estimates. From the residuals (bias-corrected: E[phi_hat] ~ phi - (1 + 3 phi) / n) it
    is biased towards 0 when the curve soaks up slow noise, badly so with few points (16
    points of phi = 0.7 noise around a 4-parameter curve gave ~0.1); from their first
    differences (lag-1 autocorrelation -(1 - phi) / 2 for AR(1)) it is not, since what a
    smooth curve absorbs is slow, but it is noisier. Taking the larger keeps intervals
    from being too narrow."""
    num = den = dnum = dden = 0.0
    for seg in segments(r, lengths):
        seg = seg - seg.mean()
        d = np.diff(seg)
        num, den = num + float(seg[1:] @ seg[:-1]), den + float(seg @ seg)
        dnum, dden = dnum + float(d[1:] @ d[:-1]), dden + float(d @ d)
    if den <= 0:
        return 0.0
    phi = num / den
    phi += (1 + 3 * phi) / (sum(lengths) / max(len(lengths), 1))
    phi_d = 1 + 2 * dnum / dden if dden > 0 else 0.0
    return float(min(max(phi, phi_d, 0.0), 0.95))


PHI_GRID = np.linspace(0.0, 0.95, 39)  # ar1_reml's values of phi: ar1_estimate's range


def ar1_reml(r: np.ndarray, jac: np.ndarray, lengths: list[int]) -> float:
    """AR(1) coefficient of the residuals ``r`` of a curve fitted with Jacobian ``jac``
    (n, k), pooled over runs: the mean of its restricted (REML) likelihood over ``PHI_GRID``
    (a flat prior). The residuals' own correlation (``ar1_estimate``) reads the noise after the
    curve has soaked up what is slow in it: 16 points of AR(1) 0.7 noise around a 4-parameter
    law read ~0 whatever the truth, and its first-difference fallback is noisy (RMSE
    0.23-0.49 on the planner's generated curves).
    The restricted likelihood (Patterson & Thompson 1971) is that of what the curve's k
    directions cannot fit, so the degrees of freedom the fit took do not bias phi; its mean,
    not its mode, since with few points it is flat over a wide range. On the planner's
    generated curves: RMSE 0.15-0.20 with two runs (52 points; bias -0.07 at 0.7); with one
    run's 16 it says little, and the mean stays near the grid's middle (~0.5)."""
    n, ll = len(r), np.empty(len(PHI_GRID))
    for i, phi in enumerate(PHI_GRID):
        yw = whiten(r, lengths, phi)
        xw = np.column_stack([whiten(c, lengths, phi) for c in jac.T]) if jac.size else np.zeros((n, 0))
        u, sv, _ = np.linalg.svd(xw, full_matrices=False)
        keep = sv > 1e-9 * max(float(sv.max(initial=0.0)), 1e-300)  # a pinned parameter: a zero column
        k = int(keep.sum())
        if n - k < 2:
            return ar1_estimate(r, lengths)
        e = yw - u[:, keep] @ (u[:, keep].T @ yw)
        # profiled over the innovation variance; log|W| of the Prais-Winsten transform per run
        ll[i] = (-(n - k) / 2 * math.log(max(float(e @ e), 1e-300) / (n - k))
                 + len(lengths) / 2 * math.log(1 - phi * phi) - float(np.sum(np.log(sv[keep]))))
    w = np.exp(ll - ll.max())
    return float(w @ PHI_GRID / w.sum())


def marginal_sd(r: np.ndarray, lengths: list[int], phi: float) -> float:
    """The noise sd of one point late in a run (where forecasts are asked): the larger of the
    residuals' robust sd in the second half of each run and the sd implied by their first
    differences (var(diff) = 2 sd^2 (1 - phi)), which a fitted curve does not shrink."""
    late = np.concatenate([seg[len(seg) // 2:] for seg in segments(r, lengths)])
    d = np.concatenate([np.diff(seg) for seg in segments(r, lengths)])
    robust = float(1.4826 * np.median(np.abs(late - np.median(late)))) if len(late) else 0.0
    from_diff = math.sqrt(float(np.mean(d * d)) / (2 * (1 - phi))) if len(d) else 0.0
    return max(robust, from_diff)


MEDIAN_ABS_D2 = 0.6745 * math.sqrt(6)  # white noise's median |second difference|, in sd (1.652)


def scatter_sd(y: Any) -> float:
    """The noise sd of a smooth curve's points, from their second differences (a smooth
    curve's own second differences are small): median |second difference| / 1.652."""
    d = np.abs(np.diff(np.asarray(y, dtype=float), 2))
    return float(np.median(d)) / MEDIAN_ABS_D2 if len(d) else 0.0


def local_sd(y: np.ndarray, window: int = 51) -> np.ndarray:
    """Each point's noise sd: a running median of |second differences| / 1.652 (for white
    noise the median |second difference| is 0.6745 * sqrt(6) sd). A training-batch loss
    is far noisier early (the seed's: 0.55 at 2-5K steps, 0.24 after 20K); unweighted,
    those points would decide the curve's shape. The fit divides each residual by it.
    Second, not first, differences: a held-out curve is smooth, and its first differences
    are mostly the descent itself, which would down-weight the steepest (most telling)
    part of a run just after it leaves a plateau (tiny-2000: its forecast of tiny-4000
    moved from -1.5 to +0.7 points)."""
    d = np.abs(np.diff(y, 2))
    if len(d) == 0:
        return np.ones_like(y)
    d = np.r_[d[0], d, d[-1]]
    half = min(window, len(d)) // 2
    pad = np.r_[np.full(half, d[0]), d, np.full(half, d[-1])]
    med = np.array([np.median(pad[i:i + 2 * half + 1]) for i in range(len(d))])
    floor = max(float(np.median(d)), 1e-9) * 0.25
    return np.maximum(med / MEDIAN_ABS_D2, floor)


def ar1_noise(n: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """n points of stationary AR(1) noise with marginal sd ``sd``."""
    e = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    e[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -phi], e) if phi else e
