"""Learning-curve models fitted with scipy.optimize.curve_fit.

Accuracy vs step saturates; the seed fitted a straight line and so predicted 91%
at 95K steps where the run reached 58%. We fit several shapes and let AIC and a
backtest (predict.py) decide:

  power      a - b * u^(-c)          saturates at a
  exp        a - b * exp(-u / tau)   saturates at a
  loglinear  a + b * log(u)          grows without bound (slowly)
  linear     a + b * u               the seed's model
  loss_power L + A * u^(-alpha)      loss falls to the floor L
  loss_exp   L + A * exp(-u / tau)

u = x / x_scale with x_scale = the last x of the fitted data, so every parameter
is O(1) and the optimiser is well conditioned; ``params`` are in those units
(``x_scale`` is reported beside them). Points with x <= 0 are dropped (log/power).

Uncertainty: a residual sieve bootstrap (Buehlmann 1997), bias-corrected in the
way of Kilian (1998). Training-curve residuals are autocorrelated (lag-1 ~0.75
around a straight line on the seed's history), so they are not resampled one by
one: an AR(p) model is fitted to them (Yule-Walker, p by AIC up to 10 log10 n;
p = 0, plain iid resampling, when they look independent), its innovations are
resampled and run through the AR filter to make new residual series, which are
added back to the fitted curve, and the model is refitted. Three details make the
intervals cover at their stated rate (measured on generated curves, see
tests/test_analysis_curves.py):

* AR coefficients estimated from a fit's residuals are biased towards 0 (the
  curve soaks up part of the slow noise; with phi = 0.7 and 100 points the
  estimate averages ~0.63, and the long-run variance (1 + phi) / (1 - phi) falls
  from 5.7 to 4.4). A first stage of refits measures that bias on series whose
  AR coefficients are known, and the second stage uses the corrected ones.
* The coefficients are themselves uncertain (a series with phi ~0.7 holds few
  effective points), which matters most for the 95% interval: each second-stage
  replicate draws them from their first-stage distribution (centred on the
  corrected value), as a t interval carries the uncertainty of an estimated sigma.
* Innovations are scaled by sqrt(n / (n - k)) for the k fitted parameters, and
  interval ends are the (B + 1) q-th order statistics of the B replicates
  (Davison & Hinkley 1997, sec. 5.2), not interpolated percentiles.

The refitted parameters give the parameter and asymptote CIs; the refitted curves
give the band and (predict.py) the distribution of the step at which a target is
reached. The earlier moving-block bootstrap (block = twice the AR(1) decorrelation
time) undercovered: a block of 6 points keeps only ~60% of the long-run variance
of AR(1) noise with phi = 0.7 (its 80% / 95% intervals covered 0.615 / 0.825 of
generated AR(1) curves; this bootstrap: 0.850 / 0.940); it stays available with
``block=``. On the seed's history the exp fit's residuals have lag-1 autocorrelation
only 0.09 but small positive ones out past lag 30 (means of 100 consecutive
residuals vary 5.3x as much as for iid noise): AIC picks AR(11), and the ceiling's
CI is [0.565, 0.583] where blocks of 10 gave [0.570, 0.578].

AIC/BIC use the Gaussian likelihood n log(RSS/n) + 2k; with autocorrelated residuals
they over-reward extra parameters a little, one reason the backtest is reported
beside them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from zhbert.analysis.ar import ar_select, innovations, simulate_ar, stationary, yule_walker
from zhbert.analysis.curve_models import ACCURACY_MODELS, LOSS_MODELS, MODELS, Model, accuracy_cap, solve_for
from zhbert.analysis.stats import _f, block_indices, lag1_autocorrelation
from zhbert.errors import UserError
from zhbert.metrics import metric_info

MIN_POINTS = 5
FIRST_STAGE = 50    # refits that measure the bias of the AR coefficients (at most)


@dataclass(frozen=True, kw_only=True)
class CurveFit:
    """One model fitted to one curve (built by keyword: it has twenty fields)."""
    model: Model
    ok: bool
    error: str                              # why the fit failed ("" when ok)
    params: dict[str, float]
    param_ci95: dict[str, tuple[float, float]]
    x_scale: float
    n: int
    x_range: tuple[float, float]
    rss: float
    sigma: float                            # residual standard deviation
    aic: float
    bic: float
    rho1: float                             # lag-1 autocorrelation of the residuals
    block: int                              # moving-block length when ``block=`` asked for one, else 0
    ar: tuple[float, ...]                   # bias-corrected AR coefficients of the bootstrap noise
    bootstrap: str                          # how the replicates were made, in words
    asymptote: float | None
    asymptote_ci95: tuple[float, float] | None
    boot: np.ndarray = field(repr=False)    # (B, k) refitted parameters
    n_boot: int = 0
    # the metric's range (MetricInfo.bounds): predictions and bands stay inside it (a line read 933%)
    limits: tuple[float, float] = (-math.inf, math.inf)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def p(self) -> np.ndarray:
        return np.array([self.params[k] for k in self.model.params])

    def raw(self, x: Any) -> np.ndarray:
        """The fitted curve at ``x`` as its formula gives it, past the metric's range too."""
        return self.model.f(np.asarray(x, dtype=float) / self.x_scale, *self.p)

    def predict(self, x: Any) -> np.ndarray:
        """The fitted curve at ``x``, inside the metric's range (``limits``)."""
        return np.clip(self.raw(x), *self.limits)

    def boot_curves(self, x: Any) -> np.ndarray:
        """(B, len(x)): each bootstrap refit's curve at ``x``, inside the metric's range."""
        u = np.asarray(x, dtype=float) / self.x_scale
        return np.clip(np.stack([self.model.f(u, *p) for p in self.boot]), *self.limits)

    def band(self, x: Any, level: float = 0.95, noise: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise band from the bootstrap curves; ``noise`` adds the residual scatter
        (a band for new observations rather than for the mean curve)."""
        if len(self.boot) == 0:
            y = self.predict(x)
            return y, y
        curves = self.boot_curves(x)
        if noise:
            curves = curves + np.random.default_rng(seed).normal(0, self.sigma, curves.shape)
        q = (1 - level) / 2  # the residual scatter can carry a quantile past the range: clip it too
        return tuple(np.clip(np.nanquantile(curves, [q, 1 - q], axis=0), *self.limits))

    def reach(self, target: float, direction: int | None = None) -> float:
        """x at which the fitted curve reaches ``target`` (inf when it never does)."""
        d = self.model.direction if direction is None else direction
        return float(solve_for(self.model, self.p, target, d)[0] * self.x_scale)

    def reach_boot(self, target: float, direction: int | None = None) -> np.ndarray:
        d = self.model.direction if direction is None else direction
        return solve_for(self.model, self.boot, target, d) * self.x_scale if len(self.boot) else np.array([])

    def to_json(self) -> dict[str, Any]:
        return {"model": self.name, "formula": self.model.formula, "ok": self.ok, "error": self.error,
                "params": {k: _f(v) for k, v in self.params.items()},
                "param_ci95": {k: [_f(v[0]), _f(v[1])] for k, v in self.param_ci95.items()},
                "x_scale": self.x_scale, "n": self.n, "x_range": list(self.x_range),
                "rss": _f(self.rss), "sigma": _f(self.sigma), "aic": _f(self.aic), "bic": _f(self.bic),
                "rho1": _f(self.rho1), "block": self.block, "ar": [_f(v) for v in self.ar],
                "bootstrap": self.bootstrap, "n_boot": self.n_boot,
                "asymptote": _f(self.asymptote),
                "asymptote_ci95": None if self.asymptote_ci95 is None else [_f(v) for v in self.asymptote_ci95]}


def _fit_once(model: Model, u: np.ndarray, y: np.ndarray, starts: list, bounds: tuple,
              maxfev: int = 5000) -> np.ndarray | None:
    """Best of several starting points by RSS; None when every start fails."""
    best, best_rss = None, math.inf
    lo, hi = np.asarray(bounds[0], float), np.asarray(bounds[1], float)
    for p0 in starts:
        p0 = np.clip(np.asarray(p0, float), lo, hi)  # least_squares nudges it strictly inside
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                p, _ = curve_fit(model.f, u, y, p0=p0, bounds=(lo, hi), maxfev=maxfev)
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((y - model.f(u, *p)) ** 2))
        if math.isfinite(rss) and rss < best_rss:
            best, best_rss = p, rss
    return best


def _failed(model: Model, n: int, scale: float, xr: tuple[float, float], why: str) -> CurveFit:
    nan = math.nan
    return CurveFit(model=model, ok=False, error=why, params={k: nan for k in model.params},
                    param_ci95={}, x_scale=scale, n=n, x_range=xr, rss=nan, sigma=nan,
                    aic=math.inf, bic=math.inf, rho1=nan, block=0, ar=(), bootstrap="",
                    asymptote=None, asymptote_ci95=None, boot=np.empty((0, len(model.params))))


def boot_interval(samples: Any, level: float) -> tuple[float, float]:
    """Equal-tailed bootstrap interval: the (B + 1) q-th and (B + 1)(1 - q)-th order
    statistics of the B replicates, q = (1 - level) / 2 (Davison & Hinkley 1997,
    sec. 5.2); no interpolation, so infinite replicates (a curve that never reaches a
    target) give an infinite end instead of nan."""
    s = np.sort(np.asarray(samples, dtype=float).ravel())
    s = s[~np.isnan(s)]
    if len(s) == 0:
        return (math.nan, math.nan)
    j = min(max(int(math.floor((len(s) + 1) * (1 - level) / 2 + 1e-9)), 1), len(s))
    return float(s[j - 1]), float(s[len(s) - j])


def fit_model(model: Model, x: np.ndarray, y: np.ndarray, *, n_boot: int = 200,
              block: int | None = None, seed: int = 0,
              limits: tuple[float, float] = (-math.inf, math.inf)) -> CurveFit:
    """Fit one model; ``block`` switches the bootstrap to a moving-block one of that length;
    ``limits``: the metric's range (``MetricInfo.bounds``), its lower end the least a floor can be."""
    floor = limits[0] if math.isfinite(limits[0]) else None
    scale = float(x[-1])
    u, n, k = x / scale, len(x), len(model.params) + 1  # +1: the noise variance
    cap = accuracy_cap(y)
    bounds = model.bounds(u, y, cap)
    if floor is not None and model.direction < 0 and model.asymptote is not None:
        lo = list(bounds[0])  # the demo's eval_ppl floor came out at 3.8e-20 without this
        lo[model.asymptote] = min(max(lo[model.asymptote], floor), bounds[1][model.asymptote])
        bounds = (lo, bounds[1])
    xr = (float(x[0]), float(x[-1]))
    p = _fit_once(model, u, y, model.starts(u, y, cap), bounds)
    if p is None:
        return _failed(model, n, scale, xr, "curve_fit did not converge from any starting point")
    resid = y - model.f(u, *p)
    rss = float(np.sum(resid ** 2))
    rho1 = lag1_autocorrelation(resid) if np.ptp(resid) > 0 else 0.0
    fitted, rng = y - resid, np.random.default_rng(seed)
    if block:
        boot, ar, how = _block_bootstrap(model, u, fitted, resid, p, bounds, block, n_boot, rng)
    else:
        boot, ar, how = _sieve_bootstrap(model, u, fitted, resid, p, bounds, n_boot, rng)
    ci = {name: boot_interval(boot[:, i], 0.95) for i, name in enumerate(model.params)} if len(boot) else {}
    ll = n * math.log(max(rss, 1e-300) / n)
    a = model.asymptote
    return CurveFit(model=model, ok=True, error="", params=dict(zip(model.params, map(float, p))),
                    param_ci95=ci, x_scale=scale, n=n, x_range=xr, rss=rss,
                    sigma=math.sqrt(rss / max(n - k + 1, 1)), aic=ll + 2 * k, bic=ll + k * math.log(n),
                    rho1=rho1, block=block or 0, ar=ar, bootstrap=how,
                    asymptote=None if a is None else float(p[a]),
                    asymptote_ci95=None if a is None or not ci else ci[model.params[a]],
                    boot=boot, n_boot=len(boot), limits=limits)


def _refits(model: Model, u, fitted, noise, p, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Refit on fitted + each noise row, starting from ``p``; (parameters, rows that converged)."""
    out, ok = [], []
    for i, e in enumerate(noise):
        q = _fit_once(model, u, fitted + e, [p], bounds, maxfev=2000)
        if q is not None:
            out.append(q)
            ok.append(i)
    return np.array(out).reshape(-1, len(p)), np.array(ok, dtype=int)


def _block_bootstrap(model: Model, u, fitted, resid, p, bounds, block, n_boot, rng):
    """Refit on fitted + moving-block-resampled residuals (centered)."""
    if n_boot <= 0:
        return np.empty((0, len(p))), (), ""
    idx = block_indices(len(u), block, n_boot, rng)
    boot, _ = _refits(model, u, fitted, (resid - resid.mean())[idx], p, bounds)
    return boot, (), f"moving-block residual bootstrap, block {block}"


def _sieve_bootstrap(model: Model, u, fitted, resid, p, bounds, n_boot, rng):
    """Bias-corrected AR-sieve residual bootstrap (see the module docstring)."""
    n, k = len(u), len(p)
    phi = ar_select(resid)
    order = len(phi)
    dof = math.sqrt(n / max(n - k, 1))
    if n_boot <= 0:
        return np.empty((0, k)), tuple(map(float, phi)), ""
    if order == 0:
        noise = simulate_ar(np.zeros((n_boot, 0)), innovations(resid, phi) * dof, n, rng)
        boot, _ = _refits(model, u, fitted, noise, p, bounds)
        return boot, (), "iid residual bootstrap (residuals show no autocorrelation by AIC)"
    # stage 1: how far are AR coefficients re-estimated from refit residuals off the truth?
    n1 = max(10, min(FIRST_STAGE, n_boot // 4))
    noise = simulate_ar(np.tile(phi, (n1, 1)), innovations(resid, phi) * dof, n, rng)
    q1, ok = _refits(model, u, fitted, noise, p, bounds)
    est = np.array([yule_walker(fitted + noise[i] - model.f(u, *q), order) for i, q in zip(ok, q1)])
    if len(est) >= 2:
        corrected = stationary(phi - (est.mean(axis=0) - phi), phi)
        draws = [stationary(corrected + d, corrected) for d in est - est.mean(axis=0)]
    else:
        corrected, draws = phi, [phi]
    # stage 2: corrected coefficients, each replicate with its own draw of them
    phis = np.array([draws[i % len(draws)] for i in range(n_boot)])
    noise = simulate_ar(phis, innovations(resid, corrected) * dof, n, rng)
    boot, _ = _refits(model, u, fitted, noise, p, bounds)
    how = (f"AR({order}) sieve residual bootstrap, phi1 {corrected[0]:.3f} "
           f"(bias-corrected from {phi[0]:.3f} by {len(est)} first-stage refits)")
    return boot, tuple(map(float, corrected)), how


def _clean(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise UserError(f"x and y must be 1-D and the same length (got {x.shape} and {y.shape})")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(x) < MIN_POINTS:
        raise UserError(f"a learning curve needs at least {MIN_POINTS} finite points with step > 0, "
                        f"have {len(x)}; train longer or log more often")
    return x, y


def default_models(y: Any, metric: str | None = None) -> tuple[str, ...]:
    """Metrics where lower is better get the loss models: zhbert.metrics says which, from
    the name, or for a name it does not know from whether the curve ``y`` falls."""
    return LOSS_MODELS if metric_info(metric or "").direction_for(y) < 0 else ACCURACY_MODELS


def fit_curve(x: Any, y: Any, models: Sequence[str] | None = None, *, n_boot: int = 200,
              block: int | None = None, seed: int = 0, metric: str | None = None) -> list[CurveFit]:
    """Fit every model; the list is sorted by AIC (failed fits last, their ``error`` says why)."""
    x, y = _clean(x, y)
    names = tuple(models) if models else default_models(y, metric)
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    limits = metric_info(metric or "").bounds(y)
    fits = [fit_model(MODELS[m], x, y, n_boot=n_boot, block=block, seed=seed, limits=limits)
            for m in names]
    return sorted(fits, key=lambda f: (not f.ok, f.aic))
