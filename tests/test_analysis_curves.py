"""Curve fits recover generated curves; prediction intervals cover; backtest scores."""

import json
import math
import re

import numpy as np
import pytest

from zhbert.analysis.curves import MODELS, boot_interval, fit_curve
from zhbert.analysis.history import load_history
from zhbert.analysis.backtest import backtest
from zhbert.analysis.predict import Throughput, predict_steps
from zhbert.errors import UserError

T = np.linspace(500, 100_000, 200)


def _power(t, a=0.7, b=0.25, c=0.5, sd=0.005, seed=0):
    return a - b * (t / 1000) ** (-c) + np.random.default_rng(seed).normal(0, sd, len(t))


def test_power_law_parameters_recovered():
    fits = fit_curve(T, _power(T), n_boot=100)
    assert [f.name for f in fits][0] in ("power", "exp")  # saturating models beat the line
    power = next(f for f in fits if f.name == "power")
    assert power.asymptote == pytest.approx(0.7, abs=0.01)
    lo, hi = power.asymptote_ci95
    assert lo <= 0.7 <= hi and hi - lo < 0.05
    assert power.params["c"] == pytest.approx(0.5, abs=0.1)
    np.testing.assert_allclose(power.predict(T), _power(T, sd=0), atol=0.005)
    band = power.band(T, 0.95)
    assert np.all(band[0] <= band[1])
    assert [f.aic for f in fits] == sorted(f.aic for f in fits)
    assert fits[-1].name == "linear"
    json.dumps([f.to_json() for f in fits])


def test_exponential_and_loss_models_recovered():
    t = np.linspace(100, 50_000, 150)
    rng = np.random.default_rng(2)
    y = 0.6 - 0.5 * np.exp(-t / 8000) + rng.normal(0, 0.005, len(t))
    best = fit_curve(t, y, n_boot=50)[0]
    assert best.name == "exp" and best.asymptote == pytest.approx(0.6, abs=0.01)
    assert best.params["tau"] * best.x_scale == pytest.approx(8000, rel=0.1)
    loss = 2.0 + 5.0 * (t / 1000) ** -0.6 + rng.normal(0, 0.01, len(t))
    fits = fit_curve(t, loss, metric="loss", n_boot=50)
    lp = next(f for f in fits if f.name == "loss_power")
    assert lp.asymptote == pytest.approx(2.0, abs=0.1) and lp.params["alpha"] == pytest.approx(0.6, abs=0.1)


def test_fit_bad_inputs():
    with pytest.raises(UserError, match="at least 5"):
        fit_curve([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(UserError, match="unknown model"):
        fit_curve(T, _power(T), ["cubic"])


def test_predict_reachable_with_throughput_and_cost():
    fits = fit_curve(T[T <= 50_000], _power(T)[T <= 50_000], ["power"], n_boot=100)
    true = 1000 * (0.25 / (0.7 - 0.66)) ** 2  # solve 0.7 - 0.25 u^-0.5 = 0.66 -> 39,062
    p = predict_steps(fits, 0.66, throughput=Throughput(tokens_per_step=1000, seconds_per_step=0.36),
                      price_per_hour=2.0)
    assert p.reachable and p.steps.value == pytest.approx(true, rel=0.1)
    assert p.interval95[0] <= p.interval80[0] <= p.steps.value <= p.interval80[1] <= p.interval95[1]
    assert p.tokens.value == pytest.approx(p.steps.value * 1000)
    assert p.hours.value == pytest.approx(p.steps.value * 0.36 / 3600)
    assert p.cost.value == pytest.approx(p.hours.value * 2.0)
    js = p.to_json()
    assert {"reachable", "steps", "interval80", "interval95", "asymptote"} <= set(js)


def test_predict_unreachable_says_so():
    fits = fit_curve(T, _power(T), ["power"], n_boot=100)
    p = predict_steps(fits, 0.75)
    assert not p.reachable and p.steps is None
    assert re.match(r"not reachable with this setup: asymptote 0\.(69|70)\d* \[0\.\d+, 0\.\d+\]", p.message)
    assert p.unreachable_fraction > 0.9
    assert json.loads(json.dumps(p.to_json()))["steps"] is None


def test_unreachable_without_refits_names_no_interval():
    """`analyze --n-boot 0` printed "asymptote 0.371 [nan, nan]": no refits, no interval."""
    fits = fit_curve(T, _power(T), ["power"], n_boot=0)
    p = predict_steps(fits, 0.75)
    assert not p.reachable
    assert "nan" not in p.message and re.match(r"not reachable with this setup: asymptote 0\.\d+ \(power fit\)",
                                               p.message)


def test_predict_infinite_upper_bound_when_bootstrap_curves_stall():
    fits = fit_curve(T[:60], _power(T, sd=0.02)[:60], ["power"], n_boot=100, seed=1)
    target = fits[0].asymptote - 0.003  # just under a poorly determined ceiling
    p = predict_steps(fits, target)
    assert p.reachable and math.isinf(p.interval95[1])
    assert any("never reach" in n for n in p.notes)
    assert p.to_json()["interval95"][1] == "inf"


def _ar1(rng, n, phi=0.7, sd=0.01):
    """Stationary AR(1) noise with marginal sd ``sd`` (real training curves: lag-1 ~0.75)."""
    e = np.empty(n)
    e[0] = rng.normal(0, sd)
    innovations = rng.normal(0, sd * math.sqrt(1 - phi * phi), n)
    for t in range(1, n):
        e[t] = phi * e[t - 1] + innovations[t]
    return e


def _coverage(n_curves, n_boot, noise="iid", seed=1):
    """Fit a power law on t <= 50K of generated curves whose truth reaches the target at
    75K; the fraction of 80% and 95% intervals that contain 75K."""
    rng = np.random.default_rng(seed)
    hits80 = hits95 = 0
    for i in range(n_curves):
        a, c = rng.uniform(0.6, 0.8), rng.uniform(0.3, 0.7)
        b = (a - 0.2) * 0.5 ** c
        e = rng.normal(0, 0.01, len(T)) if noise == "iid" else _ar1(rng, len(T))
        y = a - b * (T / 1000) ** (-c) + e
        target = a - b * 75.0 ** (-c)  # the true curve reaches it at step 75,000
        first = T <= 50_000
        p = predict_steps(fit_curve(T[first], y[first], ["power"], n_boot=n_boot, seed=i), target)
        hits80 += p.reachable and p.interval80[0] <= 75_000 <= p.interval80[1]
        hits95 += p.reachable and p.interval95[0] <= 75_000 <= p.interval95[1]
    return hits80 / n_curves, hits95 / n_curves


@pytest.mark.parametrize("noise", ["iid", "ar1"])
def test_interval_coverage_fast(noise):
    # 12 curves: binomial sd of the rate ~0.12; this only catches broken intervals
    c80, c95 = _coverage(12, 40, noise)
    assert 0.5 <= c80 <= c95 <= 1.0


def test_autocorrelated_noise_widens_the_bootstrap():
    """Same curve, same marginal noise sd: AR(1) noise (phi 0.7) has a long-run variance
    (1 + phi)/(1 - phi) = 5.7 times iid noise's, so the band of the fitted curve must be
    ~sqrt(5.7) = 2.4 times wider (measured 2.0 to 2.35 over four seeds), and the
    bias-corrected AR coefficient must be near the truth."""
    t = np.linspace(500, 100_000, 400)
    curve = 0.7 - 0.25 * (t / 1000) ** -0.5
    rng = np.random.default_rng(3)
    iid = fit_curve(t, curve + rng.normal(0, 0.01, len(t)), ["power"], n_boot=60)[0]
    ar = fit_curve(t, curve + _ar1(rng, len(t)), ["power"], n_boot=60)[0]
    assert iid.ar == () and "iid" in iid.bootstrap
    assert ar.ar[0] == pytest.approx(0.7, abs=0.12) and ar.bootstrap.startswith("AR(")
    width = lambda f: np.mean(np.subtract(*f.band(t, 0.8)[::-1]))  # noqa: E731
    assert 1.7 < width(ar) / width(iid) < 3.5
    assert json.loads(json.dumps(ar.to_json()))["ar"][0] == pytest.approx(ar.ar[0])


def test_boot_interval_order_statistics():
    s = np.arange(1, 200)  # B = 199: (B + 1) * 0.025 = 5 -> the 5th and 195th values
    assert boot_interval(s, 0.95) == (5.0, 195.0)
    assert boot_interval(s, 0.80) == (20.0, 180.0)
    lo, hi = boot_interval(np.r_[np.arange(1, 190), [np.inf] * 10], 0.95)
    assert lo == 5.0 and math.isinf(hi)
    assert boot_interval(np.array([3.0]), 0.95) == (3.0, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["iid", "ar1"])
def test_interval_coverage_200_curves(noise):
    # 200 curves (~4 min each here): binomial sd 0.028 at 80%, 0.015 at 95%; the bands are
    # ~2.7 sd either side of the nominal rate. Measured (B = 199): iid 0.765 / 0.930,
    # AR(1) phi 0.7 0.850 / 0.940. The earlier moving-block percentile bootstrap gave
    # iid 0.735 / 0.930 and AR(1) 0.615 / 0.825 (B = 150).
    c80, c95 = _coverage(200, 199, noise)
    print(f"coverage with {noise} noise: 80% interval {c80:.3f}, 95% interval {c95:.3f}")
    assert 0.72 <= c80 <= 0.88
    assert 0.91 <= c95 <= 0.99


def _history_csv(tmp_path, y):
    p = tmp_path / "h.csv"
    p.write_text("step,mlm_acc\n" + "".join(f"{s:.0f},{v}\n" for s, v in zip(T, y)))
    return load_history(p)


def test_backtest_line_overshoots_and_saturating_model_wins(tmp_path):
    h = _history_csv(tmp_path, _power(T))
    r = backtest(h, 50_000, at=95_000)
    rows = {row.model: row for row in r.rows}
    assert set(rows) == set(("power", "exp", "loglinear", "linear"))
    assert rows["linear"].error_last > 0.05 and rows["linear"].mae > rows["power"].mae
    assert abs(rows["power"].error_last) < 0.02
    assert r.winner in ("power", "exp") and r.n_fit + r.n_test == len(T)
    assert rows["power"].pred_at == pytest.approx(0.7 - 0.25 * 95 ** -0.5, abs=0.01)
    with pytest.raises(UserError, match="nothing is left"):
        backtest(h, 200_000)
    with pytest.raises(UserError, match="at least 5"):
        backtest(h, 600)


def test_predict_from_history_already_reached(tmp_path):
    h = _history_csv(tmp_path, _power(T))
    p = predict_steps(h, 0.6, n_boot=30)
    assert p.reachable and p.already_reached_at is not None
    assert p.already_reached_at == pytest.approx(1000 * (0.25 / 0.1) ** 2, rel=0.15)
    assert p.backtest_winner in MODELS and p.metric == "mlm_acc"


def test_predict_refuses_a_target_outside_the_metric_range(tmp_path):
    h = _history_csv(tmp_path, _power(T))
    for bad in (-1.0, 0.0, 1.0, 1.5, 30.0):
        with pytest.raises(UserError, match="between 0 and 1"):
            predict_steps(h, bad, n_boot=10)
    assert predict_steps(h, 0.6, n_boot=10).reachable
    loss = tmp_path / "loss.csv"
    loss.write_text("step,mlm_loss\n" + "".join(f"{s:.0f},{2 + 8 * s ** -0.3}\n" for s in T))
    with pytest.raises(UserError, match="give a target above 0"):
        predict_steps(load_history(loss), 0.0, n_boot=10)


def test_huge_step_counts_print_in_scientific_notation():
    from zhbert.analysis.predict import _fmt

    assert _fmt(6.6654e17) == "6.67e+17"
    assert _fmt(123_456.4) == "123,456"
    assert _fmt(float("inf")) == "inf (never)"


def test_backtest_window_is_the_last_tenth_of_a_short_history(tmp_path):
    p = tmp_path / "short.csv"
    steps = np.arange(5, 105, 5)
    p.write_text("step,mlm_acc\n" + "".join(f"{s},{0.5 - 0.4 / s ** 0.5}\n" for s in steps))
    r = backtest(load_history(p), 50)
    assert r.window == pytest.approx(0.1 * (100 - 5))
    assert backtest(_history_csv(tmp_path, _power(T)), 50_000).window == min(10_000, 0.1 * (T[-1] - T[0]))


def test_a_perplexity_floor_is_never_fitted_below_1():
    """zhbert.metrics bounds a perplexity below by 1; the demo's eval_ppl floor came out at
    3.8e-20 [2.7e-25, 53.8]. A falling curve whose data point to a floor under 1 is fitted
    at 1 or above for a perplexity, and free for a name without that bound."""
    steps = np.arange(50, 1201, 50, dtype=float)
    y = 200 * np.exp(-steps / 400) + np.random.default_rng(0).normal(0, 0.5, len(steps))
    free = [f for f in fit_curve(steps, y, n_boot=10, metric="some_loss") if f.name == "loss_exp"][0]
    assert free.asymptote < 1
    ppl = [f for f in fit_curve(steps, y, n_boot=10, metric="eval_ppl") if f.name == "loss_exp"][0]
    assert ppl.ok and ppl.asymptote >= 1 and ppl.asymptote_ci95[0] >= 1
