"""Plan a run: held-out loss and accuracy for any length and schedule, from runs that exist.

    from zhbert.analysis.forecast import forecast_final, plan
    f = forecast_final("runs/tiny", 8000)   # accuracy at the end of an 8,000-step run
    f.mean, f.lo80, f.hi80, f.lo95, f.hi95, f.method
    p = plan(["runs/a", "runs/b"])          # one law fitted to several runs
    p.accuracy(p.base.stretched(8000, kind="wsd"), [8000])

``forecast_final(run_dir_or_history, total_steps)`` is the one call the sweep
needs: held-out MLM accuracy at the end of the run's own schedule stretched to
``total_steps`` (default: its planned length), as a ``Forecast``. Where the history
records no learning rate it falls back to the schedule-free curve families
(curves.py) and ``method`` says so.

How (``plan``): each run's held-out MLM loss at its eval steps, with the lr of
every step from its config (zhbert runs) or from the logged lr (the seed's JSON,
a Trainer's trainer_state.json; ``schedule.infer_schedule``), is fitted with one
schedule-aware law (laws.py) after the lr warm-up and, for zhbert's sequence-length
warm-up, after the short-sequence phase (the held-out set is at full length, so
that phase's eval loss follows other dynamics: the ~14% plateau) and the steep fall
right after the switch, where the run has the points to spare (``RunCurve.start``,
``runcurve.settled_from``). The loss -> accuracy map (accmap.py) is fitted on the same points.
Reading the runs (``load_run``, ``RunData``) is plan_runs.py's.

Intervals (normal, delta method): the law's parameter covariance (AR(1)-aware),
the map's, and the noise of the observed accuracy itself: residuals of observed
accuracy around map(law) late in the fitted runs, AR(1) (for a window of several
points, the variance of their mean). ``reach`` (steps to a target) inverts the
band of the expected accuracy, without the observation noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from scipy.stats import norm

from zhbert.analysis.accmap import AccuracyMap, fit_accuracy_map
from zhbert.analysis.consistency import alone_sigmas, disagreement, phase_change_note, setup_warnings
from zhbert.analysis.history import History, load_history
from zhbert.analysis.laws import fit_law
from zhbert.analysis.mixture import mixture_bounds, mixture_moments
from zhbert.analysis.plan_runs import (NoLearningRate, RunData, labelled, load_run, refuse_copies,
                                       refuse_repeats)
from zhbert.errors import UserError
from zhbert.schedule import SCHEDULES, Schedule

Z80, Z95 = (float(norm.ppf(0.5 + level / 2)) for level in (0.80, 0.95))  # two-sided normal quantiles
N_BOOT = 200
FLOOR_EPS = 1e-6  # a loss floor L0 below this (in nats) sits at its bound, 0


@dataclass(frozen=True)
class Forecast:
    mean: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float
    method: str
    sd: float = math.nan
    notes: tuple[str, ...] = ()

    @classmethod
    def normal(cls, mean: float, sd: float, method: str, notes: Sequence[str] = ()) -> "Forecast":
        return cls(float(mean), float(mean - Z80 * sd), float(mean + Z80 * sd),
                   float(mean - Z95 * sd), float(mean + Z95 * sd), method, float(sd), tuple(notes))

    def covers(self, value: float, level: int = 80) -> bool:
        lo, hi = (self.lo80, self.hi80) if level == 80 else (self.lo95, self.hi95)
        return bool(lo <= value <= hi)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "interval80": [self.lo80, self.hi80],
                "interval95": [self.lo95, self.hi95], "sd": self.sd, "method": self.method,
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------- the planner

def _mean_var(sd: float, phi: float, m: int) -> float:
    """Variance of the mean of m consecutive AR(1) points of marginal sd ``sd``."""
    if m <= 1:
        return sd * sd
    k = np.arange(1, m)
    return sd * sd / m * (1 + 2 * float(np.sum((1 - k / m) * phi ** k)))


@dataclass(frozen=True)
class Planner:
    law: Any                          # laws.LawFit
    accmap: AccuracyMap | None
    base: Schedule                    # the longest run's schedule: what "stretched to N" stretches
    acc_sd: float                     # one observed accuracy point around map(law), late in the runs
    acc_phi: float
    runs: tuple[RunData, ...] = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def fitted_from(self) -> int:
        """The first step any run's law was fitted at: below it the law was never checked."""
        return min(int(r.curve.start) for r in self.runs)

    @property
    def method(self) -> str:
        return f"{self.law.law} law on {len(self.runs)} run(s)" + (
            " + loss->accuracy map" if self.accmap else "")

    def loss(self, schedule: Schedule, steps: Any, window: int = 1, noise: bool = True) -> Forecast:
        """Loss at ``steps`` (their mean when several: a window of ``window`` eval points), the
        observation noise included unless ``noise`` is False (then: the expected loss, which
        ``reach`` crosses). Intervals as ``accuracy``'s: the bootstrap refits' percentiles where
        plan took some (n_boot), else the delta method's; the law's own error stretched by the
        small-sample ratio in both. (A loss target had taken the delta band with the noise
        whatever --n-boot said, and a target just above 0 read "uncertain" on its clipped edge.)"""
        steps = np.atleast_1d(steps)
        var_noise = _mean_var(self.law.sigma, self.law.phi, window) if noise else 0.0
        share = self._share(schedule, steps)  # one share for a window, as accuracy's
        ratios = (self.law.small_sample_ratio(0.80), self.law.small_sample_ratio(0.95))
        how = self._boot_loss if len(self.law.boot) else self._delta_loss
        f = how(schedule, steps, var_noise, share, ratios)
        return replace(f, lo80=max(f.lo80, 0.0), lo95=max(f.lo95, 0.0))  # a cross-entropy is >= 0

    def _boot_loss(self, schedule: Schedule, steps: np.ndarray, var_noise: float, share: float,
                   ratios: tuple[float, float]) -> Forecast:
        """``loss`` by the refits' percentiles; its centre the point fits, weighted by ``share``."""
        draws = self.law.loss_draws(schedule, steps, share).mean(axis=1)
        extra = np.random.default_rng(0).normal(0.0, math.sqrt(var_noise), len(draws))
        centre = float(np.median(draws))
        l80, l95 = (centre + (draws - centre) * r + extra for r in ratios)
        fitted, no_gain, _ = self.law.readings(schedule, steps)
        (lo80, hi80), (lo95, hi95) = np.quantile(l80, [0.1, 0.9]), np.quantile(l95, [0.025, 0.975])
        return Forecast(float(np.mean((1 - share) * fitted + share * no_gain)), float(lo80), float(hi80),
                        float(lo95), float(hi95), self.method + f", {len(draws)} bootstrap refits",
                        float(np.std(l80)), self.notes + self._unseen_note(share))

    def _delta_loss(self, schedule: Schedule, steps: np.ndarray, var_noise: float, share: float,
                    ratios: tuple[float, float]) -> Forecast:
        """``loss`` by the delta method: normal, or the two readings' mixture (mixture.py)."""
        def normal(law):  # mean and (80%, 95%) sds of one reading's loss
            m, se = law.band(schedule, steps, mean=True)
            return float(m[0]), [math.sqrt((float(se[0]) * r) ** 2 + var_noise) for r in ratios]
        m, sds = normal(self.law)
        method = self.method + ", delta method"
        if not share:
            return Forecast(m, m - Z80 * sds[0], m + Z80 * sds[0], m - Z95 * sds[1], m + Z95 * sds[1],
                            method, sds[0], self.notes)
        m0, sds0 = normal(self.law.no_gain)  # the mixture's quantiles, as curve's
        (lo80,), (hi80,) = mixture_bounds(m, sds[0], m0, sds0[0], share, 0.80)
        (lo95,), (hi95,) = mixture_bounds(m, sds[1], m0, sds0[1], share, 0.95)
        mean, msd = mixture_moments(m, sds[0], m0, sds0[0], share)
        return Forecast(mean, lo80, hi80, lo95, hi95, method, msd, self.notes + self._unseen_note(share))

    def _mixed_accuracy(self, schedule: Schedule, steps: Any) -> float:
        """The expected accuracy at ``steps`` (their mean) of the two readings' point fits,
        weighted by their shares (laws.LawFit.readings). Not the refits' mean: one run's
        refits scatter the floor widely, and their mean of the map read above the law's own
        limit (a forecast past the floor it was told against)."""
        fitted, no_gain, _ = self.law.readings(schedule, steps)
        w = self._share(schedule, steps)  # one share for a window, as its bounds take
        return float(np.mean((1 - w) * self.accmap(fitted) + w * self.accmap(no_gain)))

    def _share(self, schedule: Schedule, steps: Any) -> float:
        """The largest share of the reading without annealing gain at ``steps`` (laws.LawFit.readings)."""
        return float(np.max(self.law.unseen_share(schedule, steps)))

    @staticmethod
    def _unseen_note(share: float) -> tuple[str, ...]:
        if not share:
            return ()
        return (f"the lr falls further here than in the runs fitted: the forecast weighs {share:.0%} "
                "on the fall still ahead giving no annealing gain, the rest on the law's fitted gain "
                "(from a run still climbing, the fit cannot tell the two apart), and the interval "
                "spans both",)

    def accuracy(self, schedule: Schedule, steps: Any, window: int = 1, noise: bool = True) -> Forecast:
        """Accuracy at ``steps`` (their mean when several), observation noise included unless
        ``noise`` is False (then: the expected accuracy). With bootstrap refits (plan's
        n_boot) the interval is their percentile interval, else the delta method's."""
        if self.accmap is None:
            raise UserError("no accuracy was recorded beside the loss: only the loss can be forecast")
        steps = np.atleast_1d(steps)
        L, se_L = self.law.band(schedule, steps)
        acc, se_map = self.accmap.predict(L)
        var_noise = _mean_var(self.acc_sd, self.acc_phi, window) if noise else 0.0
        var_map = float(np.mean(se_map)) ** 2
        r80, r95 = self.law.small_sample_ratio(0.80), self.law.small_sample_ratio(0.95)
        if len(self.law.boot):  # one share for a window, as its bounds and centre take
            draws = self.law.loss_draws(schedule, steps, self._share(schedule, steps)).mean(axis=1)
            rng = np.random.default_rng(0)
            extra = rng.normal(0.0, math.sqrt(var_map + var_noise), len(draws))
            centre = float(np.median(draws))

            def widened(r):  # the refits' spread stretched by the small-sample ratio
                return self.accmap(centre + (draws - centre) * r) + extra
            a80, a95 = widened(r80), widened(r95)
            # an accuracy: the noise added to the refits must not carry the bounds past 0 or 1
            (lo80, hi80), (lo95, hi95) = (np.clip(np.quantile(a80, [0.1, 0.9]), 0.0, 1.0),
                                          np.clip(np.quantile(a95, [0.025, 0.975]), 0.0, 1.0))
            share = self._share(schedule, steps)
            mean = self._mixed_accuracy(schedule, steps) if share else float(np.mean(acc))
            return Forecast(mean, lo80, hi80, lo95, hi95, self.method + f", {len(draws)} bootstrap "
                            "refits", float(np.std(a80)), self.notes + self._unseen_note(share))
        return self._delta_accuracy(schedule, steps, var_noise, (r80, r95))

    def _delta_accuracy(self, schedule: Schedule, steps: np.ndarray, var_noise: float,
                        ratios: tuple[float, float]) -> Forecast:
        """``accuracy`` by the delta method: normal, or where the two readings of the anneal
        mix, their weighted mixture of normals (mixture.py)."""
        def normal(law):  # mean and (80%, 95%) sds of one reading's accuracy
            acc, e_law, se_map = self._acc_parts(law, schedule, steps)
            # the law's error is shared by all steps of a window (one curve): average, then square
            var = float(np.mean(se_map)) ** 2 + var_noise
            return float(np.mean(acc)), [math.sqrt((float(np.mean(e_law)) * r) ** 2 + var) for r in ratios]
        m, sds = normal(self.law)
        share = self._share(schedule, steps)
        if share:
            m0, sds0 = normal(self.law.no_gain)
            (lo80,), (hi80,) = mixture_bounds(m, sds[0], m0, sds0[0], share, 0.80)
            (lo95,), (hi95,) = mixture_bounds(m, sds[1], m0, sds0[1], share, 0.95)
            m = self._mixed_accuracy(schedule, steps)
        else:
            lo80, hi80, lo95, hi95 = m - Z80 * sds[0], m + Z80 * sds[0], m - Z95 * sds[1], m + Z95 * sds[1]
        clip = lambda v: min(max(float(v), 0.0), 1.0)  # noqa: E731  (an accuracy)
        return Forecast(m, clip(lo80), clip(hi80), clip(lo95), clip(hi95), self.method + ", delta method",
                        (hi80 - lo80) / (2 * Z80), self.notes + self._unseen_note(share))

    def curve(self, schedule: Schedule, steps: Any) -> dict[str, np.ndarray]:
        """Loss and expected accuracy along a run, with 80% bands (for tables and plots), each
        band inside what its metric can be, as ``loss`` and ``accuracy`` keep theirs (predict
        --json's curve of tiny-1000 + tiny-2000 over 8,000 steps read an accuracy band from
        -41% to 125% and a loss down to -1.44). The accuracy band is the one ``accuracy``
        gives without the observation noise (the one ``reach`` inverts): the delta method's
        band here beside the bootstrap's final accuracy read 49-65% at 64,000 steps for
        tiny-4000 against 51-58% with the noise, as if the noise narrowed it."""
        steps = np.asarray(steps)
        L, se = self.law.band(schedule, steps)
        lo, hi = L - Z80 * se, L + Z80 * se
        w, L0 = self.law.unseen_share(schedule, steps), L
        if w.any():  # the two readings of the anneal weighed together (laws.LawFit.readings)
            L0, se0 = self.law.no_gain.band(schedule, steps)
            lo, hi = mixture_bounds(L, se, L0, se0, w, 0.80)
        out = {"step": steps, "loss": (1 - w) * L + w * L0, "loss_lo80": np.maximum(lo, 0.0), "loss_hi80": hi}
        if self.accmap is not None:
            lo, hi = self._acc_band80(schedule, steps)
            out.update(acc=(1 - w) * self.accmap(L) + w * self.accmap(L0), acc_lo80=lo, acc_hi80=hi)
        return out

    def _acc_band80(self, schedule: Schedule, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """80% band of the expected accuracy at each of ``steps``, by ``accuracy``'s method
        (bootstrap refits where there are some, else the delta method; the small-sample ratio
        and the map's error included, the observation noise not; the two readings of the
        anneal mixed where they are)."""
        r80 = self.law.small_sample_ratio(0.80)
        if len(self.law.boot):
            _, se_map = self.accmap.predict(self.law.predict(schedule, steps))
            draws = self.law.loss_draws(schedule, steps)  # (D, n)
            centre = np.median(draws, axis=0)
            # the same normal draws as ``accuracy``'s, scaled without the observation noise
            extra = np.random.default_rng(0).normal(0.0, 1.0, len(draws))[:, None] * se_map
            a = self.accmap(centre + (draws - centre) * r80) + extra
            lo, hi = np.quantile(a, [0.1, 0.9], axis=0)
            return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
        def normal(law):  # one reading's expected accuracy and its sd at each step
            acc, e_law, se_map = self._acc_parts(law, schedule, steps)
            return acc, np.sqrt((e_law * r80) ** 2 + se_map ** 2)
        acc, sd = normal(self.law)
        w = self.law.unseen_share(schedule, steps)
        if w.any():
            lo, hi = mixture_bounds(acc, sd, *normal(self.law.no_gain), w, 0.80)
        else:
            lo, hi = acc - Z80 * sd, acc + Z80 * sd
        return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)

    def _acc_parts(self, law: Any, schedule: Schedule, steps: np.ndarray) -> tuple[np.ndarray, ...]:
        """One reading's expected accuracy at each of ``steps``, the law's error carried through
        the map (slope times the loss's standard error) and the map's own error."""
        L, se_L = law.band(schedule, steps)
        acc, se_map = self.accmap.predict(L)
        return acc, self.accmap.slope(L) * se_L, se_map

    def climb_warning(self, forecast: float, target: bool = False, loss: float | None = None) -> str | None:
        """A warning when ``forecast`` lies further above the runs' best measured accuracy
        than the runs climbed over the points the law was fitted on. The law has no plateau
        term: a run still on one (two Trainer histories at ~14-16% after 2,000 steps) is
        forecast as if it kept descending, 16-20 points too high; runs that had left it
        (tiny-*, demo-*) were forecast within 1-3 points and climbed more than that.
        ``loss``: the loss target ``forecast`` is the accuracy of (plateau._target_accuracy)."""
        climbs, tops = [], []
        for r in self.runs:  # from the switch on, its fall included: a run that fell off a plateau left it
            keep = r.curve.steps >= r.curve.fit_from
            if r.acc is not None and keep.sum() >= 2:
                a = r.acc[keep]
                climbs.append(float(np.max(a) - a[0]))
                tops.append(float(np.max(a)))
        if not climbs or forecast - max(tops) <= max(climbs):
            return None
        # differences of two accuracies are percentage points, not percent ("18.3% above 32%")
        # a target reached is no forecast ("the forecast (50.0%)" beside a forecast of 31%)
        what = f"the target {forecast:.1%}" if target else f"the forecast ({forecast:.1%})"
        if loss is not None:  # a loss target, by the accuracy the map reads at it
            what = f"the accuracy a loss of {loss:g} maps to ({forecast:.1%})"
        read = "read the steps to it as a lower estimate" if target else "read it as an upper estimate"
        return (f"{what} is {(forecast - max(tops)) * 100:.1f} percentage points above the best accuracy "
                f"measured ({max(tops):.1%}), more than the run(s) climbed while fitted "
                f"({max(climbs) * 100:.1f} points): a run still on a plateau is forecast as if it leaves "
                f"it; {read}")

    def floor(self) -> float:
        """The lowest loss the law allows: L0 less a full anneal (the annealing term is at
        most its coefficient times the drop from the peak, 1 lr unit), and never below 0: a
        cross-entropy is not, and the answers stop where the law forecasts one (tiny-4000's
        L0 0 less C 0.199 read "the law's floor -0.199 maps to accuracy 0.7853")."""
        return max(self.raw_floor(), 0.0)

    def raw_floor(self) -> float:
        """L0 less a full anneal as fitted, below 0 where the law runs past what a loss can be."""
        return self.law.params["L0"] - self.law.params[self.law.spec.anneal]

    def limit(self) -> float | None:
        """The accuracy the law's floor maps to: the most any length can reach. Where a full
        anneal goes past what the runs showed, the floors of both readings (``floor_share``:
        the law's, and L0 of the law without annealing gain), weighted as the forecasts mix
        them; without, the mixed forecasts of a 1,000-step run rose past the floor they were
        told against ("not reachable" beside a central forecast that reached it)."""
        return None if self.accmap is None else self.mixed_floor(self.accmap)

    def mixed_floor(self, scale: Any = None) -> float:
        """The floors of both readings weighted by ``floor_share``, on ``scale`` (the accuracy
        map for ``limit``; none: the least loss, for a loss target)."""
        f = (lambda v: v) if scale is None else (lambda v: float(scale(v)))  # noqa: E731
        w = self.floor_share()
        return f(self.floor()) if not w else (1 - w) * f(self.floor()) + w * f(self.no_gain_floor())

    def no_gain_floor(self) -> float:
        """The loss floor of the reading without annealing gain: its L0 (never below 0)."""
        return max(self.law.no_gain.params["L0"], 0.0)

    def floor_share(self) -> float:
        """The share of the no-gain reading after a full anneal (an annealing area of 1 lr unit)."""
        return float(self.law.unseen_share_at(1.0))

    def floor_pinned(self) -> bool:
        """Whether the fit put the loss floor L0 off its bound, 0. On the seed's 100K steps,
        tiny-*, demo-2000 and a Trainer's history it came out at 0 (the power term, with a
        small alpha, takes its place), and the floor's accuracy (``limit``) is then the law's
        extrapolation, not something the runs show; on demo-1000 it is 3.31."""
        return self.law.params["L0"] > FLOOR_EPS

    def compare_schedules(self, steps: int, warmup: int | None = None,
                          peak: float | None = None) -> dict[str, Forecast]:
        return {k: self.accuracy(self.base.stretched(steps, kind=k, warmup=warmup, peak=peak), [steps])
                for k in SCHEDULES}


def plan(paths_or_runs: Sequence[Any], law: str = "lr_annealing", n_boot: int = N_BOOT,
         seed: int = 0) -> Planner:
    """Fit one law (and the accuracy map) to the given runs (paths or RunData); ``n_boot``
    parametric AR(1) bootstrap refits give the accuracy intervals (0: delta method), drawn
    from ``seed`` (predict --seed was ignored by the law before it reached fit_law)."""
    refuse_repeats([r for r in paths_or_runs if not isinstance(r, RunData)])
    runs = [r if isinstance(r, RunData) else load_run(r) for r in paths_or_runs]
    if not runs:
        raise UserError("give at least one run")
    refuse_copies(runs)
    runs = labelled(runs)
    notes = setup_warnings(runs)
    fit = fit_law([r.curve for r in runs], law, n_boot=n_boot, seed=seed)
    alone = alone_sigmas(fit, runs)
    notes += disagreement(fit, runs, alone)
    notes += [n for n in (phase_change_note(runs, alone),) if n]  # every surface: predict, analyze, compare
    if not fit.identifiable:
        notes.append("the lr never falls in these runs (constant lr): the annealing term "
                     f"({fit.spec.anneal}) cannot be identified; it is taken as anywhere from no "
                     "gain to all of the remaining loss above L0, so intervals are wide")
    accmap, acc_sd, acc_phi = None, 0.0, 0.0
    with_acc = [r for r in runs if r.acc is not None]
    if with_acc:
        # on the fitted points: where the law forecasts (the plateau before them pairs loss
        # and accuracy differently: on tiny-*, a map fitted on every point put the 4,000-step
        # run's final loss at 41.5% accuracy for 40.5% observed; on the fitted ones, 40.5%)
        fitted = [r.curve.steps >= r.curve.start for r in with_acc]
        accmap = fit_accuracy_map(np.concatenate([r.curve.loss[k] for r, k in zip(with_acc, fitted)]),
                                  np.concatenate([r.acc[k] for r, k in zip(with_acc, fitted)]),
                                  [int(k.sum()) for k in fitted])
        acc_sd, acc_phi = _acc_noise(fit, accmap, with_acc)
    base = max(runs, key=lambda r: r.curve.schedule.steps).curve.schedule
    return Planner(fit, accmap, base, acc_sd, acc_phi, tuple(runs), tuple(notes))


def _acc_noise(fit: Any, accmap: AccuracyMap, runs: Sequence[RunData]) -> tuple[float, float]:
    """sd and AR(1) of observed accuracy around map(law) on each run's fitted points
    (the estimators of laws.py)."""
    from zhbert.analysis.ar import ar1_estimate, marginal_sd
    resid = []
    for r in runs:
        keep = r.curve.steps >= r.curve.start
        if keep.sum() >= 3:
            resid.append(r.acc[keep] - accmap(fit.predict(r.curve.schedule, r.curve.steps[keep])))
    if not resid:
        return 0.0, 0.0
    lengths = [len(x) for x in resid]
    stacked = np.concatenate(resid)
    phi = ar1_estimate(stacked, lengths)
    return marginal_sd(stacked, lengths, phi), phi


def forecast_final(run_dir_or_history: Any, total_steps: int | None = None,
                   law: str = "lr_annealing", n_boot: int = N_BOOT) -> Forecast:
    """Held-out MLM accuracy at the end of the run's own schedule stretched to
    ``total_steps`` (default: the run's planned length). Schedule-free fallback (with
    ``method`` saying so) where the history records no learning rate."""
    try:
        p = plan([run_dir_or_history], law, n_boot)
    except NoLearningRate as why:
        return _fallback(run_dir_or_history, total_steps, str(why), n_boot)
    n = int(total_steps or p.base.steps)
    if n <= 0:
        raise UserError(f"total_steps must be > 0 (got {n})")
    return p.accuracy(p.base.stretched(n), [n])


def _fallback(source: Any, total_steps: int | None, why: str, n_boot: int) -> Forecast:
    from zhbert.analysis.curves import boot_interval, fit_curve
    h = source if isinstance(source, History) else load_history(source)
    s = h.curve_part(h.metric().finite()[0])
    n = float(total_steps or s.step[-1])
    fit = fit_curve(s.step, s.y, n_boot=n_boot, metric=s.name)[0]
    if not fit.ok:
        raise UserError(f"no curve could be fitted to {h.meta.path}: {fit.error}")
    boot = fit.boot_curves([n])[:, 0] if len(fit.boot) else np.array([])  # inside the metric's range
    mean = float(fit.predict([n])[0])
    lo80, hi80 = boot_interval(boot, 0.8) if len(boot) else (mean, mean)
    lo95, hi95 = boot_interval(boot, 0.95) if len(boot) else (mean, mean)
    return Forecast(mean, lo80, hi80, lo95, hi95,
                    f"schedule-free {fit.name} fit of {s.name} (fallback: {why})")
