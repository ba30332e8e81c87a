"""Schedule-aware laws (analysis/laws.py) and the loss->accuracy map (accmap.py) on generated curves."""

from dataclasses import replace

import numpy as np
import pytest

from zhbert.analysis.accmap import fit_accuracy_map
from zhbert.analysis.laws import SPECS, Units, features, fit_law
from zhbert.analysis.runcurve import RunCurve
from zhbert.errors import UserError
from zhbert.schedule import Schedule

UNITS = Units(1e-3, 1000.0)          # truth is written in these units
TRUE = {"lr_annealing": np.array([2.0, 1.5, 0.5, 0.8]),
        "multi_power": np.array([2.0, 1.5, 0.5, 0.6, 2.0, 0.6, 0.4])}


def ar1(n, phi, sd, rng):
    e = np.zeros(n)
    e[0] = rng.normal(0, sd)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi * phi))
    return e


def make_run(law, n_steps, kind="cosine", sd=0.01, phi=0.7, seed=0, every=50, fit_from=200):
    sched = Schedule(kind, 1e-3, n_steps, 100)
    steps = np.arange(every, n_steps + 1, every)
    y = SPECS[law].predict(TRUE[law], features(sched, steps, UNITS, law))
    y = y + ar1(len(steps), phi, sd, np.random.default_rng(seed)) if sd else y
    return RunCurve(f"r{n_steps}{kind}", steps, y, sched, fit_from)


def truth(law, sched, steps):
    return SPECS[law].predict(TRUE[law], features(sched, steps, UNITS, law))


def test_annealing_law_recovers_the_curve_it_was_made_from():
    runs = [make_run("lr_annealing", 1000, sd=0), make_run("lr_annealing", 2000, "wsd", sd=0)]
    fit = fit_law(runs)
    # parameters come back in the fit's own units: compare what they predict, and alpha (unit-free)
    assert fit.params["alpha"] == pytest.approx(0.5, abs=0.01)
    long = Schedule("cosine", 1e-3, 8000, 100)
    np.testing.assert_allclose(fit.predict(long, [2000, 4000, 8000]), truth("lr_annealing", long, [2000, 4000, 8000]),
                               atol=2e-3)
    assert fit.identifiable


def test_annealing_law_with_ar1_noise_predicts_a_longer_run():
    runs = [make_run("lr_annealing", 1000, seed=1), make_run("lr_annealing", 2000, seed=2)]
    fit = fit_law(runs)
    long = Schedule("cosine", 1e-3, 4000, 100)
    m, se = fit.band(long, [4000])
    t = truth("lr_annealing", long, [4000])[0]
    assert abs(m[0] - t) < 4 * se[0] + 0.01 and abs(m[0] - t) < 0.05
    assert 0.4 < fit.phi < 0.98          # it saw the autocorrelation
    assert se[0] > 0


def test_reml_reads_the_autocorrelation_a_fitted_curve_soaks_up():
    """48 points of AR(1) noise around a fitted 4-parameter curve (a cubic): the residuals'
    own lag-1 correlation reads well below the truth (the fit took the slow part; ~0.49 for
    0.7), the restricted likelihood's mean does not (~0.66), and white noise reads low."""
    from zhbert.analysis.ar import ar1_reml
    rng = np.random.default_rng(0)
    X = np.vander(np.linspace(-1, 1, 48), 4)

    def estimates(phi):
        raw, reml = [], []
        for _ in range(60):
            y = X @ rng.normal(size=4) + ar1(48, phi, 1.0, rng)
            r = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
            raw.append(float(r[1:] @ r[:-1] / (r @ r)))
            reml.append(ar1_reml(r, X, [48]))
        return np.mean(raw), np.mean(reml)

    raw, reml = estimates(0.7)
    assert raw < 0.6 and abs(reml - 0.7) < 0.1
    assert estimates(0.0)[1] < 0.25


def test_multi_power_law_recovers_a_noise_free_curve():
    runs = [make_run("multi_power", 1000, sd=0), make_run("multi_power", 2000, "wsd", sd=0)]
    fit = fit_law(runs, "multi_power")
    long = Schedule("cosine", 1e-3, 4000, 100)
    np.testing.assert_allclose(fit.predict(long, [3000, 4000]), truth("multi_power", long, [3000, 4000]),
                               atol=0.02)


def test_constant_lr_cannot_identify_the_annealing_term():
    fit = fit_law([make_run("lr_annealing", 2000, "constant", sd=0.005)])
    assert not fit.identifiable
    cos = Schedule("cosine", 1e-3, 4000, 100)
    _, se = fit.band(cos, [4000])
    _, se_const = fit.band(Schedule("constant", 1e-3, 4000, 100), [4000])
    assert se[0] > 5 * se_const[0]       # the anneal's gain is a guess: a wide interval


def test_too_few_points_and_unknown_law_are_user_errors():
    short = RunCurve("s", np.array([50, 100, 150]), np.array([5.0, 4.0, 3.5]), Schedule("cosine", 1e-3, 150, 10), 0)
    with pytest.raises(UserError, match="at least"):
        fit_law([short])
    with pytest.raises(UserError, match="unknown law"):
        fit_law([make_run("lr_annealing", 1000)], "nope")


def test_features_of_a_long_schedule_are_strided_but_close():
    s = Schedule("cosine", 1e-3, 1_000_000, 1000)
    f = features(s, [500_000, 1_000_000], UNITS, "lr_annealing")
    exact = np.cumsum(s.curve(np.arange(0, 1_000_001)) / 1e-3)[[500_000, 1_000_000]] / UNITS.scale
    np.testing.assert_allclose(f.s1, exact, rtol=1e-4)
    assert f.s2[-1] == pytest.approx(1.0, abs=1e-3)   # the whole drop, peak -> 0, has been seen


def test_accuracy_map_recovers_a_logistic_map_and_is_monotone():
    rng = np.random.default_rng(3)
    loss = np.linspace(6.5, 3.0, 120)
    acc = 1 / (1 + np.exp(-(1.7 - 0.48 * loss))) + rng.normal(0, 0.005, loss.size)
    m = fit_accuracy_map(loss, acc)
    assert m.a == pytest.approx(1.7, abs=0.1) and m.b == pytest.approx(-0.48, abs=0.03)
    grid = np.linspace(2, 8, 50)
    assert np.all(np.diff(m(grid)) < 0)              # lower loss, higher accuracy
    p, se = m.predict([2.5, 4.0])
    assert np.all(se > 0) and se[0] > se[1]          # less sure outside the data
    with pytest.raises(UserError, match="at least 4"):
        fit_accuracy_map([5.0, 4.0], [0.1, 0.2])


def test_accuracy_map_takes_its_ar1_within_each_run():
    """Two runs whose accuracy sits 0.03 apart at the same loss, white noise within each:
    stacked, the jump between them looked like slow noise (phi 0.98, intervals inflated
    ~100x); per run it is not. Lengths that do not add up are a programming error."""
    rng = np.random.default_rng(5)
    loss = np.tile(np.linspace(6.0, 3.5, 30), 2)
    offset = np.repeat([0.015, -0.015], 30)
    acc = 1 / (1 + np.exp(-(1.7 - 0.48 * loss))) + offset + rng.normal(0, 0.004, loss.size)
    assert fit_accuracy_map(loss, acc, [30, 30]).phi < 0.4
    assert fit_accuracy_map(loss, acc).phi > 0.8      # one run: the offset is slow noise
    with pytest.raises(ValueError, match="add up"):
        fit_accuracy_map(loss, acc, [30, 20])


@pytest.mark.slow
def test_interval_coverage_on_generated_ar1_curves():
    """Law-generated curves with AR(1) phi 0.7 noise: two runs (1,000 and 2,000 steps) -> a
    4,000-step run's final accuracy, and a 2,000-step run's first half -> its end. Measured
    (benchmarks/RESULTS.md, "Interval coverage across noise"): two runs cover 87-90% / 95-97%
    at 80% / 95% (conservative: the noise's AR(1) is taken as the larger of two estimates, and
    with ~50 points its upper excursions widen some intervals 2x), the first half 77-80% /
    86-92%. A forecast's misleading side is an interval narrower than its level says; the
    other is one too wide to plan with. 100 curves: a coverage figure moves by ~4 points (80%)
    and ~2-3 (95%) from sampling alone, so the bounds sit 2-3 such errors off the measured."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.prediction_accuracy import coverage_figure
    c = coverage_figure(100, n_boot=60)
    two, half = c["two_runs_to_longer"], c["first_half_to_end"]
    assert 0.70 <= two["coverage80"] <= 0.97 and two["coverage95"] >= 0.88, two
    assert 0.66 <= half["coverage80"] <= 0.95 and half["coverage95"] >= 0.88, half


def test_small_sample_ratio_widens_few_autocorrelated_points():
    """Student-t over normal for the law's error: > 1, more at 95% than 80%, more with fewer
    or more autocorrelated points, -> 1 with many independent ones."""
    fit = fit_law([make_run("lr_annealing", 4000, seed=1)], n_boot=0)
    r = lambda n, phi, level=0.8: replace(fit, n=n, phi=phi).small_sample_ratio(level)  # noqa: E731
    assert r(36, 0.7) > r(100, 0.7) > r(10_000, 0.0) > 1.0
    assert abs(r(10_000, 0.0) - 1.0) < 0.01
    assert r(36, 0.7, 0.95) > r(36, 0.7, 0.8)
    assert r(36, 0.9) > r(36, 0.5)
