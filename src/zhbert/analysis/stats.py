"""Correlation of a metric with training progress, with honest uncertainty.

The seed reported Pearson r = 0.79 between step and training MLM accuracy with
p < 0.001 and a 95% CI of [0.76, 0.81]. Those assume 1,000 independent points.
A learning curve's points are not independent: consecutive residuals around any
fitted line are strongly correlated (lag-1 ~0.76 on the seed's data), partly
because the batches overlap in time and partly because a straight line is the
wrong shape for a saturating curve. So next to scipy's textbook numbers we report:

* rho1: lag-1 autocorrelation of the residuals of the linear fit, and the
  Durbin-Watson statistic of the same residuals (~2 means no autocorrelation;
  DW ~ 2(1 - rho1)).
* n_eff = n (1 - rho1) / (1 + rho1): the effective sample size for a trend with
  AR(1) residuals (Santer et al. 2000, J. Geophys. Res. 105(D6), eq. 6; Bretherton
  et al. 1999). rho1 <= 0 leaves n unchanged (we never inflate the sample).
  The Pearson p-value and Fisher-z CI are recomputed with n_eff in place of n,
  and so are the slope CIs (t quantile with n_eff - 2 degrees of freedom).
* a moving-block bootstrap CI for r (Kuensch 1989): resample blocks of
  consecutive (x, y) pairs so that the dependence inside a block survives.
  Block length: max(n^(1/3), 2 / -ln(rho1)) -- twice the AR(1) decorrelation
  time, so a block spans the memory of the series -- capped at n / 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
from scipy import stats

from zhbert.errors import UserError
from zhbert.fileio import json_safe

SLOPE_UNIT = 10_000  # slopes are reported per 10K steps (the x unit), as the seed read them


class ConfidenceInterval(NamedTuple):
    low: float
    high: float


@dataclass(frozen=True)
class Estimate:
    """A statistic with its p-value and 95% CI, read like a scipy result;
    ``confidence_interval(level)`` gives the interval at any level by the same method."""
    name: str
    statistic: float
    pvalue: float | None
    ci95: tuple[float, float] | None
    method: str = ""
    interval: Callable[[float], tuple[float, float]] | None = field(default=None, repr=False,
                                                                   compare=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        if self.ci95 is None:
            raise ValueError(f"{self.name}: no confidence interval ({self.method})")
        if not 0.0 < confidence_level < 1.0:
            raise ValueError(f"{self.name}: confidence_level must lie between 0 and 1, "
                             f"got {confidence_level}")
        if self.interval is None:  # an Estimate built by hand with only its 95% interval
            if not math.isclose(confidence_level, 0.95):
                raise ValueError(f"{self.name}: only the 95% interval is known")
            return ConfidenceInterval(*self.ci95)
        return ConfidenceInterval(*self.interval(confidence_level))

    def to_json(self) -> dict[str, Any]:
        return {"statistic": _f(self.statistic), "pvalue": _f(self.pvalue),
                "ci95": None if self.ci95 is None else [_f(v) for v in self.ci95],
                "method": self.method}


def _estimate(name: str, statistic: float, pvalue: float | None, method: str,
              interval: Callable[[float], tuple[float, float]]) -> Estimate:
    """An Estimate whose ci95 is ``interval(0.95)``: one formula for every level."""
    return Estimate(name, statistic, pvalue, interval(0.95), method, interval)


@dataclass(frozen=True)
class CorrelationResult:
    """Everything ``correlate`` measured. ``statistic`` is Pearson r; ``pvalue`` and
    ``confidence_interval()`` are the autocorrelation-corrected (n_eff) ones."""
    n: int
    pearson: Estimate            # scipy.stats.pearsonr, assumes independent points
    r2: float
    spearman: Estimate
    kendall: Estimate
    slope: Estimate              # metric per SLOPE_UNIT of x, naive t CI
    slope_log: Estimate          # metric per doubling of x (y ~ a + b log2 x)
    rho1: float                  # lag-1 autocorrelation of the linear-fit residuals
    durbin_watson: float
    n_eff: float
    pearson_neff: Estimate       # p and Fisher-z CI with n_eff
    slope_neff: Estimate         # slope CI with n_eff - 2 dof
    pearson_block: Estimate      # moving-block bootstrap percentile CI
    block: int
    n_boot: int

    @property
    def statistic(self) -> float:
        return self.pearson.statistic

    @property
    def pvalue(self) -> float | None:
        return self.pearson_neff.pvalue

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        return self.pearson_neff.confidence_interval(confidence_level)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "r2": _f(self.r2), "rho1": _f(self.rho1),
                               "durbin_watson": _f(self.durbin_watson), "n_eff": _f(self.n_eff),
                               "block": self.block, "n_boot": self.n_boot,
                               "slope_unit": SLOPE_UNIT}
        for name in ("pearson", "spearman", "kendall", "slope", "slope_log", "pearson_neff",
                     "slope_neff", "pearson_block"):
            out[name] = getattr(self, name).to_json()
        return out


def _f(v: float | None) -> float | str | None:
    """A statistic for JSON, written the one zhbert way (fileio.json_safe): NaN becomes
    None, an infinity "inf" / "-inf" (a failed fit's AIC, an unbounded interval end)."""
    return json_safe(None if v is None else float(v))


def _xy(x: Any, y: Any, min_n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise UserError(f"x and y must be 1-D and the same length (got {x.shape} and {y.shape})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < min_n:
        raise UserError(f"need at least {min_n} finite points, have {len(x)}; "
                        "train longer or log more often")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise UserError("the metric (or the step) is constant; a correlation is undefined")
    return x, y


def lag1_autocorrelation(e: Any) -> float:
    """Sample lag-1 autocorrelation sum(e_t e_t-1) / sum(e_t^2) of de-meaned ``e``."""
    e = np.asarray(e, dtype=float) - np.mean(e)
    return float(np.dot(e[1:], e[:-1]) / np.dot(e, e))


def durbin_watson(e: Any) -> float:
    """sum((e_t - e_t-1)^2) / sum(e_t^2); 2 = no lag-1 autocorrelation, ->0 = strong."""
    e = np.asarray(e, dtype=float)
    return float(np.sum(np.diff(e) ** 2) / np.dot(e, e))


def effective_n(n: int, rho1: float) -> float:
    """AR(1) effective sample size n (1 - rho1)/(1 + rho1), never above n."""
    rho = min(max(rho1, 0.0), 0.999)
    return n * (1 - rho) / (1 + rho)


def block_length(n: int, rho1: float) -> int:
    b = n ** (1 / 3)
    if 0 < rho1 < 1:
        b = max(b, 2.0 / -math.log(rho1))
    return int(max(1, min(math.ceil(b), n // 5)))


def block_indices(n: int, block: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) indices of a moving-block bootstrap: random overlapping blocks, concatenated."""
    k = math.ceil(n / block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, k))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, k * block)
    return idx[:, :n]


def _pearson_neff(r: float, n_eff: float) -> Estimate:
    method = f"Fisher z and t test with n_eff = {n_eff:.1f} instead of n"
    if n_eff <= 3:
        return Estimate("pearson_neff", r, None, None, method + " (n_eff <= 3: undefined)")
    dof = n_eff - 2
    t = r * math.sqrt(dof / max(1e-300, 1 - r * r))
    p = float(2 * stats.t.sf(abs(t), dof))
    z = math.atanh(min(max(r, -0.999999), 0.999999))

    def fisher(level: float) -> tuple[float, float]:
        half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(n_eff - 3)
        return (math.tanh(z - half), math.tanh(z + half))
    return _estimate("pearson_neff", r, p, method, fisher)


def _slope(fit: Any, dof: float, scale: float, name: str, method: str,
           inflate: float = 1.0) -> Estimate:
    """Slope (times ``scale``) with a t CI; ``inflate`` widens the standard error
    (sqrt((n-2)/(n_eff-2)) when the residuals are autocorrelated)."""
    if dof <= 0:
        return Estimate(name, fit.slope * scale, None, None, method + " (too few points)")
    b, se = fit.slope * scale, fit.stderr * scale * inflate
    p = float(2 * stats.t.sf(abs(b / se), dof)) if se > 0 else 0.0

    def t_interval(level: float) -> tuple[float, float]:
        q = stats.t.ppf(0.5 + level / 2, dof)
        return (b - q * se, b + q * se)
    return _estimate(name, b, p, method, t_interval)


def correlate(x: Any, y: Any, *, block: int | None = None, n_boot: int = 2000,
              seed: int = 0) -> CorrelationResult:
    """Correlation of ``y`` with ``x`` (steps), naive and autocorrelation-aware."""
    x, y = _xy(x, y)
    n = len(x)
    pr = stats.pearsonr(x, y)
    sp, kt = stats.spearmanr(x, y), stats.kendalltau(x, y)
    lin = stats.linregress(x, y)
    resid = y - (lin.intercept + lin.slope * x)
    rho1 = lag1_autocorrelation(resid)
    n_eff = effective_n(n, rho1)
    block = block or block_length(n, rho1)
    boot = _block_bootstrap_r(x, y, block, n_boot, seed)
    pos = x > 0
    lin_log = stats.linregress(np.log2(x[pos]), y[pos]) if pos.sum() >= 3 else None
    return CorrelationResult(
        n=n,
        pearson=_estimate("pearson", float(pr.statistic), float(pr.pvalue),
                          "scipy.stats.pearsonr, Fisher z CI",
                          lambda level: tuple(map(float, pr.confidence_interval(level)))),
        r2=float(pr.statistic) ** 2,
        spearman=Estimate("spearman", float(sp.statistic), float(sp.pvalue), None,
                          "scipy.stats.spearmanr"),
        kendall=Estimate("kendall", float(kt.statistic), float(kt.pvalue), None,
                         "scipy.stats.kendalltau"),
        slope=_slope(lin, n - 2, SLOPE_UNIT, "slope", f"linregress; per {SLOPE_UNIT} x units"),
        slope_log=(_slope(lin_log, pos.sum() - 2, 1.0, "slope_log", "linregress on log2(x); "
                          "per doubling of x") if lin_log is not None else
                   Estimate("slope_log", math.nan, None, None, "fewer than 3 points with x > 0")),
        rho1=rho1, durbin_watson=durbin_watson(resid), n_eff=n_eff,
        pearson_neff=_pearson_neff(float(pr.statistic), n_eff),
        slope_neff=_slope(lin, n_eff - 2, SLOPE_UNIT, "slope_neff",
                          f"linregress, standard error and t dof from n_eff = {n_eff:.1f}",
                          inflate=math.sqrt((n - 2) / max(n_eff - 2, 1e-9))),
        pearson_block=boot, block=block, n_boot=n_boot)


def _block_bootstrap_r(x: np.ndarray, y: np.ndarray, block: int, n_boot: int, seed: int) -> Estimate:
    idx = block_indices(len(x), block, n_boot, np.random.default_rng(seed))
    xb, yb = x[idx], y[idx]  # (n_boot, n)
    ok = (np.ptp(xb, axis=1) > 0) & (np.ptp(yb, axis=1) > 0)  # a resample can be constant
    r = stats.pearsonr(xb[ok], yb[ok], axis=1).statistic

    def percentile(level: float) -> tuple[float, float]:
        lo, hi = np.percentile(r, [50 - 50 * level, 50 + 50 * level])
        return (float(lo), float(hi))
    return _estimate("pearson_block", float(stats.pearsonr(x, y).statistic), None,
                     f"moving-block bootstrap, block {block}, {int(ok.sum())} resamples, percentile CI",
                     percentile)


def summary(series: Any) -> dict[str, float | int | None]:
    """mean, max, min, std (population, as numpy and the seed), first, last, n of finite values."""
    y = np.asarray(getattr(series, "y", series), dtype=float)
    y = y[np.isfinite(y)]
    if len(y) == 0:
        return {"mean": None, "max": None, "min": None, "std": None, "first": None, "last": None, "n": 0}
    return {"mean": float(y.mean()), "max": float(y.max()), "min": float(y.min()),
            "std": float(y.std()), "first": float(y[0]), "last": float(y[-1]), "n": int(len(y))}


def smooth_window(n: int) -> int:
    """The points ``smooth`` averages by default for a series of ``n``: ~5% of them, odd."""
    return min(max(3, n // 20) | 1, n if n % 2 else n - 1)


def smooth(y: Any, window: int | None = None) -> np.ndarray:
    """Centered moving average (window ~5% of the points, odd: ``smooth_window``); edges use
    a shrinking window."""
    y = np.asarray(y, dtype=float)
    w = min(window | 1, len(y) if len(y) % 2 else len(y) - 1) if window else smooth_window(len(y))
    if w <= 1:
        return y.copy()
    half = w // 2
    c = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(len(y))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(y))
    return (c[hi] - c[lo]) / (hi - lo)
