"""Schedule-aware laws for the (held-out) MLM loss, fitted with scipy.

A schedule-free curve (curves.py) fitted to a warm-up + cosine run learns where
*that* schedule flattens, not what a longer run would reach. These laws take
the learning rate of every step, so one fit answers for any length and
schedule. lr is measured in units of ``ref`` (the largest peak among the fitted
runs), areas in units of ``scale`` lr-steps (the largest area fitted), so every
parameter is O(1).

  lr_annealing (Tissue et al. 2024, arXiv 2408.11029)
      L(t) = L0 + A * S1(t)^(-alpha) - C * S2(t)
      S1(t) = sum_{i<=t} eta_i                          forward area
      S2(t) = sum_{i<=t} m_i,  m_i = lam m_{i-1} + (1 - lam) max(0, eta_{i-1} - eta_i)
  The (1 - lam) makes S2 the lr drop seen so far, delayed by ~1/(1 - lam) steps
  (the paper's S2 is ours times 1/(1 - lam), the same law with another C);
  lam = 0.999 as in the paper. Warm-up (rising lr) adds to S1 only.

  multi_power (Luo et al. 2025, arXiv 2503.12811)
      L(t) = L0 + A * S1(t)^(-alpha) - B * sum_k d_k G(eta_k^(-gamma) S_k(t))
      d_k = max(0, eta_{k-1} - eta_k),  S_k(t) = sum_{k<=tau<=t} eta_tau,
      G(x) = 1 - (C x + 1)^(-beta)
  Drops are summed in at most ``lawfeatures.MAX_BLOCKS`` blocks (a 100K-step run in blocks
  of 333 steps), each at its drop-weighted centre, so a fit stays fast. Its fit is
  still ~50x the annealing law's, so it gets no bootstrap (``MPL_BOOT``): delta-method
  intervals only, which are unreliable where its 7 parameters are poorly pinned.

Fitting (``fit_law``): ``scipy.optimize.least_squares`` (trust-region with
bounds, Huber loss scaled by the noise read off first differences), from
several starting points, on every given run at once. Then the residuals'
AR(1) coefficient (ar.ar1_reml: pooled over runs, from the restricted likelihood, so
the curve's own degrees of freedom do not bias it) prewhitens the residuals and the fit
is repeated (Cochrane-Orcutt),
so the Jacobian gives a covariance that knows the noise is autocorrelated.
``LawFit.draws`` samples parameters from it (clipped to the bounds) for the
Monte Carlo intervals in forecast.py.

Two readings of the lr fall still ahead (``LawFit.loss_draws``): where a forecast's annealing
area S2 goes past the most any fitted point had, the fit cannot tell the annealing gain from a
climb still going on (a run leaving its plateau falls faster and faster, which only the
annealing term can follow: tiny-2000's first 800 steps fitted C = 11 where its whole run fits
0.7, and forecast its end at 84.8-98.2%, 80%, for 31.6%). So the bootstrap also refits the law
without annealing gain (``no_gain``), and at such a step half of the unseen share of S2 is drawn
from those refits: from none at the area seen to half where none was. On tiny-2000, tiny-4000
and demo-2000 cut at 30-80% of their steps, the 80% intervals covered the last tenth in 7 of 24
cuts before and in 24 after (benchmarks/prediction_accuracy.py, "5. early cuts"); from the first
half of a Trainer run still on its plateau the error fell from +19.5 to +10.9 points.

When no fitted run's lr ever falls (one constant-lr run), S2 is 0 at every
point and C (B) cannot be identified: it is fixed at 0 in the fit and
``identifiable`` is False; forecast.py then draws it from 0 to the value at
which a full anneal would recover all of the remaining loss above L0 (wider
intervals), and says so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import norm
from scipy.stats import t as student_t

from zhbert.analysis.ar import ar1_noise, ar1_reml, local_sd, marginal_sd, whiten
from zhbert.analysis.lawfeatures import Features, Units, _eta, features
from zhbert.analysis.runcurve import MIN_POINTS, RunCurve
from zhbert.errors import UserError
from zhbert.schedule import Schedule

LAWS = ("lr_annealing", "multi_power")
MPL_BOOT = 0          # bootstrap refits for multi_power (each is seconds: see above)
# Residual AR(1) near 1 is a curve the law does not fit (a plateau's edge), not noise:
# whitening with it would fit first differences and drop the level the forecast extends
# (tiny-1000 + tiny-2000 -> tiny-4000: -11 points at phi 0.95, +1.4 at 0.7). Refits whiten
# with at most this; the covariance is widened for the rest (_finish).
MAX_WHITEN = 0.7
HUBER = 1.5     # Huber threshold in noise sds: points beyond it count linearly


@dataclass(frozen=True)
class LawSpec:
    name: str
    params: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    anneal: str                                    # the parameter that scales the annealing term
    starts: tuple[dict[str, float], ...]

    def predict(self, p: np.ndarray, f: Features) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.name == "lr_annealing":
            q = p[:, :, None] if p.ndim == 2 else p  # draws (D, P) -> (D, n)
            return q[0] + q[1] * np.power(f.s1, -q[2]) - q[3] * f.s2 if p.ndim == 1 else \
                q[:, 0] + q[:, 1] * np.power(f.s1[None, :], -q[:, 2]) - q[:, 3] * f.s2[None, :]
        return _mpl(p, f)


def _mpl(p: np.ndarray, f: Features) -> np.ndarray:
    """multi_power for one parameter vector (P,) or many (D, P) -> (n,) or (D, n)."""
    P = np.atleast_2d(p)
    out = []
    for L0, A, alpha, B, C, beta, gamma in P:
        base = L0 + A * np.power(f.s1, -alpha)
        if f.d_b is not None and len(f.d_b):
            x = C * np.power(f.eta_b, -gamma)[None, :] * f.gap
            G = 1.0 - np.power(x + 1.0, -beta)
            base = base - B * (G * f.d_b[None, :]).sum(axis=1)
        out.append(base)
    return np.array(out) if np.ndim(p) == 2 else out[0]


SPECS = {
    "lr_annealing": LawSpec("lr_annealing", ("L0", "A", "alpha", "C"),
                            (0.0, 0.0, 0.01, 0.0), (50.0, 1e3, 3.0, 1e3), "C",
                            tuple({"alpha": a, "L0f": l0} for a in (0.3, 0.7, 1.5) for l0 in (0.3, 0.8))),
    "multi_power": LawSpec("multi_power", ("L0", "A", "alpha", "B", "C", "beta", "gamma"),
                           (0.0, 0.0, 0.01, 0.0, 1e-3, 0.05, 0.0), (50.0, 1e3, 3.0, 1e3, 1e3, 5.0, 1.5), "B",
                           tuple({"alpha": a, "L0f": l0, "C": 2.0} for a in (0.4, 1.0) for l0 in (0.3, 0.8))),
}


@dataclass(frozen=True)
class LawFit:
    law: str
    params: dict[str, float]
    cov: np.ndarray                 # covariance of the parameter vector (prewhitened Jacobian)
    units: Units
    phi: float                      # AR(1) of the residuals (restricted likelihood)
    sigma: float                    # marginal residual sd (the noise of one eval point)
    n: int
    runs: tuple[str, ...]
    identifiable: bool              # False: no lr drop in the data, the annealing term is a guess
    resid: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    fitted_steps: tuple[np.ndarray, ...] = field(repr=False, default=())
    innovation_var: float = 0.0     # of the prewhitened residuals in noise-sd units
    boot: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    # the law without annealing gain, fitted when a forecast first asks past ``seen_anneal``
    # (``no_gain``): most questions never do, and fitting it always added 40-50% to a plan's
    # time (tiny-2000 with 200 refits: 2.13 s + 0.88 s; tiny-4000: 0.54 + 0.26 s)
    no_gain_fit: Any = field(repr=False, default=None, compare=False)
    seen_anneal: float = 0.0        # the most annealing area (S2) any fitted point had
    anneal_fitted: bool = True      # False: the law without annealing gain (its term pinned at 0)

    @functools.cached_property
    def no_gain(self) -> "LawFit | None":
        """The law fitted without annealing gain (module docstring), or None."""
        return None if self.no_gain_fit is None else self.no_gain_fit()

    @property
    def spec(self) -> LawSpec:
        return SPECS[self.law]

    @property
    def vector(self) -> np.ndarray:
        return np.array([self.params[k] for k in self.spec.params])

    def predict(self, schedule: Schedule, steps: Any, p: np.ndarray | None = None) -> np.ndarray:
        """Loss at ``steps`` of a run with ``schedule`` (``p``: (P,) or draws (D, P))."""
        f = features(schedule, steps, self.units, self.law)
        return self.spec.predict(self.vector if p is None else p, f)

    def loss_draws(self, schedule: Schedule, steps: Any, share: float | None = None) -> np.ndarray:
        """Loss at ``steps`` under the bootstrap refits, (D, n). At a step whose annealing area
        is past what the runs showed, ``unseen_share`` of the refits come from the law without
        annealing gain (``no_gain``): the data cannot tell that gain from a climb still going on.
        ``share``: one share for every step (a window's mean), not each step's own."""
        f = features(schedule, np.atleast_1d(steps), self.units, self.law)  # (D, n), n >= 1
        draws = np.atleast_2d(self.spec.predict(self.boot, f))
        share = self._share(f.s2) if share is None else np.full(len(f.s2), share)  # one for a window
        if not share.any() or not len(self.no_gain.boot):
            return draws
        k0 = np.minimum(np.rint(share * len(draws)), len(self.no_gain.boot))  # share <= 1/2: enough
        no_gain = np.atleast_2d(self.spec.predict(self.no_gain.boot, f))[:len(draws)]
        no_gain = np.concatenate([no_gain, draws[len(no_gain):]])  # rows past k0: never taken
        return np.where(np.arange(len(draws))[:, None] < k0[None, :], no_gain, draws)

    def readings(self, schedule: Schedule, steps: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The loss at ``steps`` by the law as fitted and without annealing gain (point fits),
        and the share of the second (``unseen_share``): the forecast's central values mix them."""
        f = features(schedule, np.atleast_1d(steps), self.units, self.law)
        share = self._share(f.s2)
        fitted = np.atleast_1d(self.spec.predict(self.vector, f))
        return fitted, np.atleast_1d(self.spec.predict(self.no_gain.vector, f)) if share.any() else fitted, share

    def unseen_share(self, schedule: Schedule, steps: Any) -> np.ndarray:
        """Weight of the no-gain reading at ``steps``: half of the share of their annealing area
        the runs did not show (0 up to ``seen_anneal``, 1/2 where they showed none of it)."""
        return self._share(features(schedule, np.atleast_1d(steps), self.units, self.law).s2)

    def unseen_share_at(self, s2: float) -> float:
        """``unseen_share`` at an annealing area ``s2`` (lr units: a full anneal is 1)."""
        return float(self._share(np.array([s2]))[0])

    def _share(self, s2: np.ndarray) -> np.ndarray:
        s2 = np.asarray(s2, dtype=float)
        if self.no_gain_fit is None:
            return np.zeros_like(s2)
        seen = np.minimum(1.0, self.seen_anneal / np.maximum(s2, 1e-12))
        return np.where(s2 > self.seen_anneal, 0.5 * (1.0 - seen), 0.0)

    def band(self, schedule: Schedule, steps: Any, mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Predicted loss at ``steps`` (or their mean) and its standard error from the
        parameter covariance (delta method: gradient by forward differences)."""
        f = features(schedule, steps, self.units, self.law)
        spec, x = self.spec, self.vector
        g = lambda p: np.atleast_1d(spec.predict(p, f)).mean(keepdims=True) if mean else \
            np.atleast_1d(spec.predict(p, f))  # noqa: E731
        y0 = g(x)
        grad = np.empty((len(y0), len(x)))
        for i in range(len(x)):
            h = 1e-6 * max(abs(x[i]), 1e-3)
            xi = x.copy()
            xi[i] += h
            grad[:, i] = (g(xi) - y0) / h
        var = np.einsum("ni,ij,nj->n", grad, self.cov, grad)
        return y0, np.sqrt(np.clip(var, 0, None))

    def small_sample_ratio(self, level: float) -> float:
        """Student-t over normal quantile at ``level`` for the law's own error: its noise
        variance is estimated from n points that, autocorrelated at phi, hold about
        n (1 - phi) / (1 + phi) independent ones, less one per fitted parameter. (Neither the
        delta method nor refits around the fitted curve see that the noise level and the
        curve come from the same few effective points: on law-generated curves with AR(1)
        noise at phi 0.7 their 80% intervals covered 60-70%.)"""
        k = len(self.spec.params) - (0 if self.identifiable and self.anneal_fitted else 1)
        dof = max(self.n * (1 - self.phi) / (1 + self.phi) - k, 1.0)
        q = 0.5 + level / 2
        return float(student_t.ppf(q, dof) / norm.ppf(q))

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Parameter vectors from the fit's normal approximation, clipped to the bounds."""
        s = self.spec
        cov = (self.cov + self.cov.T) / 2
        w, v = np.linalg.eigh(cov)
        z = rng.standard_normal((n, len(w))) * np.sqrt(np.clip(w, 0, None))
        return np.clip(self.vector + z @ v.T, s.lower, s.upper)

    def to_json(self) -> dict[str, Any]:
        sd = np.sqrt(np.clip(np.diag(self.cov), 0, None))
        return {"law": self.law, "params": self.params,
                "params_sd": dict(zip(self.spec.params, map(float, sd))),
                "lr_unit": self.units.ref, "area_unit": self.units.scale, "ar1_phi": self.phi,
                "residual_sd": self.sigma, "n_points": self.n, "runs": list(self.runs),
                "annealing_identifiable": self.identifiable, "annealing_area_seen": self.seen_anneal,
                # only where a forecast needed it (fitting it for the JSON alone costs a fit)
                "without_annealing_gain": (g := self.__dict__.get("no_gain")) and g.params}


def _units(runs: Sequence[RunCurve]) -> Units:
    ref = max(r.schedule.peak for r in runs)
    scale = max(float(np.sum(_eta(r.schedule, int(r.fitted()[0].max(initial=1)), ref))) for r in runs)
    return Units(ref, max(scale, 1e-12))


def _start(spec: LawSpec, hint: dict[str, float], y: np.ndarray, f_all: list[Features]) -> np.ndarray:
    """A starting vector: L0 a fraction of the lowest loss, A so the curve passes the first point."""
    s1 = np.concatenate([f.s1 for f in f_all])
    L0 = hint["L0f"] * float(np.min(y))
    A = max(float(y[np.argmin(s1)]) - L0, 1e-3) * float(np.min(s1)) ** hint["alpha"]
    vals = {"L0": L0, "A": A, "alpha": hint["alpha"], "C": hint.get("C", 0.5), "B": 0.5,
            "beta": 0.5, "gamma": 0.5}
    return np.clip([vals[k] for k in spec.params], spec.lower, spec.upper)


class TooFewPoints(UserError):
    """The runs have too few evaluations after the warm-ups for a law (the schedule-free
    curve families may still answer)."""


def _check_points(runs: Sequence[RunCurve], lengths: list[int]) -> None:
    """Enough fitted points: MIN_POINTS in all, then 2 in each run. The total first: one run
    short of it was told "at least 2 ... in each run" by one command and "at least 6" by
    another (a newcomer's pass). Where the points start is named: "after the warm-up" was
    read as the lr's by a newcomer whose run was still in its short-sequence phase."""
    r = runs[0]
    where = (f"from step {r.start:,} on (past the " + ("switch to full-length sequences)"
             if r.schedule.short_steps > r.schedule.warmup else "lr warm-up)")) if len(runs) == 1 \
        else "past each run's warm-ups (the lr's, and the short-sequence phase)"
    if sum(lengths) < MIN_POINTS:
        raise TooFewPoints(f"a schedule-aware law needs at least {MIN_POINTS} eval points {where} "
                           f"(have {sum(lengths)}); evaluate more often (train.eval_every) or train further")
    short = [r.name for r, n in zip(runs, lengths) if n < 2]
    if short:  # each run needs two fitted points: name the ones that lack them
        raise TooFewPoints(f"a schedule-aware law needs at least 2 eval points {where} in "
                           f"each run; {', '.join(short)} {'has' if len(short) == 1 else 'have'} "
                           "fewer; leave it out, or evaluate more often (train.eval_every) or train "
                           "further")


def fit_law(runs: Sequence[RunCurve], law: str = "lr_annealing", n_boot: int = 0,
            seed: int = 0, anneal: bool = True) -> LawFit:
    """Fit one law to all ``runs`` at once (same model and data; see module docstring);
    ``n_boot`` > 0 adds that many parametric AR(1) bootstrap refits (``LawFit.boot``); with
    the law without annealing gain (``LawFit.no_gain``, half as many refits; ``anneal`` False
    fits that law alone)."""
    if law not in SPECS:
        raise UserError(f"unknown law {law!r}; use one of {', '.join(LAWS)}")
    spec = SPECS[law]
    data = [r.fitted() for r in runs]
    lengths = [len(s) for s, _ in data]
    _check_points(runs, lengths)
    units = _units(runs)
    feats = [features(r.schedule, s, units, law) for r, (s, _) in zip(runs, data)]
    y = np.concatenate([l for _, l in data])
    identifiable = any(float(np.max(f.s2, initial=0)) > 1e-9 for f in feats)
    lower, upper = np.array(spec.lower), np.array(spec.upper)
    ia = spec.params.index(spec.anneal)
    if not identifiable or not anneal:  # pin the annealing term at 0 (least_squares needs lower < upper)
        upper = upper.copy()
        upper[ia] = lower[ia] + 1e-12

    sd = np.concatenate([local_sd(l) for _, l in data])

    def resid(p, phi, target=y):  # in units of each point's noise sd, prewhitened
        pred = np.concatenate([spec.predict(p, f) for f in feats])
        return whiten((pred - target) / sd, lengths, phi)

    best = None
    for hint in spec.starts:
        x0 = np.clip(_start(spec, hint, y, feats), lower, np.maximum(upper, lower))
        res = least_squares(resid, x0, args=(0.0,), bounds=(lower, upper), loss="huber",
                            f_scale=HUBER, max_nfev=400)
        if best is None or res.cost < best.cost:
            best = res
    phi = ar1_reml(best.fun, _jacobian(lambda p: resid(p, 0.0), best.x, spec), lengths)
    phi_w = min(phi, MAX_WHITEN)
    scale = HUBER * math.sqrt(max(1 - phi_w * phi_w, 0.05))
    res = least_squares(resid, best.x, args=(phi_w,), bounds=(lower, upper), loss="huber",
                        f_scale=scale, max_nfev=400)
    fit = _finish(spec, res, phi, phi_w, y, lengths, units, runs, identifiable, resid, data, anneal)
    if law == "multi_power":
        n_boot = min(n_boot, MPL_BOOT)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        refit = lambda target: least_squares(resid, res.x, args=(phi_w, target), bounds=(lower, upper),  # noqa: E731
                                             loss="huber", f_scale=scale, max_nfev=200).x
        boot = _bootstrap(refit, y + fit.resid, fit, lengths, sd, n_boot, rng)
        fit = replace(fit, boot=_unidentified(boot, fit, spec, rng))
    if not (identifiable and anneal):
        return fit
    # the other reading of the lr fall still ahead: no annealing gain (module docstring), when
    # first asked for; its refits stand in for at most half of these: half as many suffice
    return replace(fit, no_gain_fit=functools.partial(fit_law, runs, law, -(-n_boot // 2), seed, False),
                   seen_anneal=max(float(np.max(f.s2, initial=0)) for f in feats))


def _bootstrap(refit, pred: np.ndarray, fit: LawFit, lengths: list[int], sd: np.ndarray,
               n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Parametric AR(1) bootstrap: ``refit`` on the fitted curve plus AR(1) noise of the
    fit's own innovation variance, ``n_boot`` times."""
    rel_sd = math.sqrt(fit.innovation_var / max(1 - fit.phi * fit.phi, 1e-6))
    return np.array([refit(pred + np.concatenate([ar1_noise(n, fit.phi, rel_sd, rng) for n in lengths]) * sd)
                     for _ in range(n_boot)])


def _unidentified(boot: np.ndarray, fit: LawFit, spec: LawSpec, rng: np.random.Generator) -> np.ndarray:
    """Replicates with the annealing coefficient drawn uniformly over its possible range when
    no lr drop was seen (see the module docstring)."""
    if not fit.identifiable:
        ia = spec.params.index(spec.anneal)
        gap = 2 * fit.vector[ia]
        boot[:, ia] = rng.uniform(0.0, gap, len(boot))
    return boot


def _jacobian(fun, x: np.ndarray, spec: LawSpec) -> np.ndarray:
    """Forward-difference Jacobian of the (unweighted) residuals, stepping inside the bounds."""
    f0 = fun(x)
    J = np.empty((len(f0), len(x)))
    for i in range(len(x)):
        h = 1e-6 * max(abs(x[i]), 1e-3)
        if x[i] + h > spec.upper[i]:
            h = -h
        xi = x.copy()
        xi[i] += h
        J[:, i] = (fun(xi) - f0) / h
    return J


def _finish(spec, res, phi, phi_w, y, lengths, units, runs, identifiable, resid, data,
            anneal: bool = True) -> LawFit:
    n, k = len(y), len(spec.params)
    rw = resid(res.x, phi_w)
    var_w = float(rw @ rw) / max(n - k, 1)
    # rw = e_t - phi_w e_(t-1) with e AR(1) at phi: its variance is var(e)(1 + phi_w^2 -
    # 2 phi_w phi), its long-run variance var(e)(1 - phi_w)^2 (1 + phi)/(1 - phi); both
    # ratios are 1 at phi_w = phi. The covariance takes the long-run one, the bootstrap
    # the innovation variance at phi.
    mix = 1 + phi_w * phi_w - 2 * phi_w * phi
    s2u = var_w * (1 - phi * phi) / mix
    lrv = var_w * (1 - phi_w) ** 2 * (1 + phi) / ((1 - phi) * mix)
    J = _jacobian(lambda p: resid(p, phi_w), res.x, spec)
    free = np.ones(k, dtype=bool)
    if not identifiable or not anneal:  # a term pinned at its bound has no variance
        free[spec.params.index(spec.anneal)] = False
    cov = np.zeros((k, k))
    cov[np.ix_(free, free)] = lrv * np.linalg.pinv(J[:, free].T @ J[:, free])
    raw = resid(res.x, 0.0) * np.concatenate([local_sd(l) for _, l in data])
    x = res.x.copy()
    if not identifiable:
        # no lr drop was seen: an anneal may recover anything from none to all of the loss
        # left above L0 at the last fitted point (a full drop is 1 lr unit): uniform on that
        ia = spec.params.index(spec.anneal)
        gap = max(float(np.max(y[-lengths[-1]:].min() - x[0], 0)), 1e-6)
        x[ia] = gap / 2
        cov[ia, ia] = gap ** 2 / 12
    return LawFit(spec.name, dict(zip(spec.params, map(float, x))), cov, units, phi,
                  marginal_sd(raw, lengths, phi), n, tuple(r.name for r in runs),
                  identifiable, raw, tuple(s for s, _ in data), s2u, anneal_fitted=anneal)
