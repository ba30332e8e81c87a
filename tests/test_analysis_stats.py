"""Statistics against scipy on known data, and hand-checkable AR(1) facts."""

import math

import numpy as np
import pytest
from scipy import stats

from zhbert.analysis.stats import (block_indices, correlate, durbin_watson, effective_n,
                                   lag1_autocorrelation, smooth, summary)
from zhbert.errors import UserError


def _ar1(n, rho, seed=0):
    rng = np.random.default_rng(seed)
    e = np.empty(n)
    e[0] = rng.normal() / math.sqrt(1 - rho ** 2)
    for t in range(1, n):
        e[t] = rho * e[t - 1] + rng.normal()
    return e


def test_correlate_matches_scipy():
    rng = np.random.default_rng(1)
    x = np.arange(1, 201) * 100.0
    y = 0.3 + 1e-5 * x + rng.normal(0, 0.05, 200)
    r = correlate(x, y, n_boot=200)
    pr, lr = stats.pearsonr(x, y), stats.linregress(x, y)
    assert r.statistic == pytest.approx(pr.statistic, abs=1e-12)
    assert r.pearson.pvalue == pytest.approx(pr.pvalue, rel=1e-9)
    assert r.pearson.confidence_interval() == pytest.approx(tuple(pr.confidence_interval()), abs=1e-12)
    assert r.r2 == pytest.approx(pr.statistic ** 2)
    assert r.spearman.statistic == pytest.approx(stats.spearmanr(x, y).statistic)
    assert r.kendall.statistic == pytest.approx(stats.kendalltau(x, y).statistic)
    assert r.slope.statistic == pytest.approx(lr.slope * 10_000)
    q = stats.t.ppf(0.975, 198)
    assert r.slope.ci95[1] - r.slope.statistic == pytest.approx(q * lr.stderr * 10_000)
    assert r.slope_log.statistic == pytest.approx(stats.linregress(np.log2(x), y).slope)
    # independent noise: little autocorrelation, n_eff close to n, DW near 2
    assert abs(r.rho1) < 0.2 and r.n_eff > 130 and 1.6 < r.durbin_watson < 2.4
    assert set(r.to_json()) >= {"pearson", "pearson_neff", "pearson_block", "n_eff", "durbin_watson"}


def test_ar1_autocorrelation_neff_and_durbin_watson():
    e = _ar1(20_000, 0.6)
    rho = lag1_autocorrelation(e)
    assert rho == pytest.approx(0.6, abs=0.02)
    assert durbin_watson(e) == pytest.approx(2 * (1 - 0.6), abs=0.05)
    assert effective_n(1000, 0.6) == pytest.approx(1000 * 0.4 / 1.6)  # = 250
    assert effective_n(1000, -0.3) == 1000  # never inflated


def test_hand_checked_small_series():
    e = np.array([1.0, -1.0, 1.0, -1.0])
    assert durbin_watson(e) == pytest.approx(12 / 4)  # diffs: 2,-2,2 -> 12; sum e^2 = 4
    assert lag1_autocorrelation(e) == pytest.approx(-3 / 4)


def test_autocorrelated_residuals_widen_intervals():
    x = np.arange(1, 501, dtype=float)
    y = 0.001 * x + 0.3 * _ar1(500, 0.9, seed=3)
    r = correlate(x, y, n_boot=500)
    naive = np.diff(r.pearson.confidence_interval())[0]
    assert r.rho1 > 0.8 and r.n_eff < 0.1 * r.n and r.durbin_watson < 0.4
    assert np.diff(r.confidence_interval())[0] > 2 * naive
    assert np.diff(r.pearson_block.confidence_interval())[0] > 2 * naive
    assert r.pvalue > r.pearson.pvalue
    assert np.diff(r.slope_neff.ci95)[0] > 2 * np.diff(r.slope.ci95)[0]
    assert r.block >= 10  # 2 / -ln(0.9) ~ 19


def test_block_indices_are_contiguous_blocks():
    idx = block_indices(100, 10, 50, np.random.default_rng(0))
    assert idx.shape == (50, 100) and idx.min() >= 0 and idx.max() < 100
    assert np.all(np.diff(idx[:, :10], axis=1) == 1)


def test_bad_inputs_and_summary():
    with pytest.raises(UserError, match="at least 3"):
        correlate([1, 2], [0.1, 0.2])
    with pytest.raises(UserError, match="constant"):
        correlate([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5])
    r = correlate([1, 2, 3, 4, 5], [0.1, np.nan, 0.3, 0.35, 0.5], n_boot=50)
    assert r.n == 4
    s = summary(np.array([0.2, 0.4, np.nan, 0.9]))
    assert s == {"mean": pytest.approx(0.5), "max": 0.9, "min": 0.2, "std": pytest.approx(np.std([0.2, 0.4, 0.9])),
                 "first": 0.2, "last": 0.9, "n": 3}
    assert summary([])["n"] == 0
    with pytest.raises(ValueError, match="no confidence interval"):
        r.spearman.confidence_interval(0.9)


def test_confidence_interval_at_any_level():
    """Every interval of a correlation is available at any level (only 0.95 used to be),
    by the same method as its stored 95% one, and nests as the level grows."""
    from scipy import stats
    rng = np.random.default_rng(1)
    x = np.arange(1.0, 201.0)
    y = 0.002 * x + rng.normal(0, 0.1, 200)
    r = correlate(x, y, n_boot=500)
    pr = stats.pearsonr(x, y)
    assert r.pearson.confidence_interval(0.9) == pytest.approx(tuple(pr.confidence_interval(0.9)), abs=1e-12)
    for est in (r.pearson, r.pearson_neff, r.pearson_block, r.slope, r.slope_neff, r.slope_log):
        assert tuple(est.confidence_interval(0.95)) == est.ci95
        lo80, hi80 = est.confidence_interval(0.8)
        lo99, hi99 = est.confidence_interval(0.99)
        assert lo99 < est.ci95[0] < lo80 < hi80 < est.ci95[1] < hi99, est.name
    assert r.confidence_interval(0.5) == r.pearson_neff.confidence_interval(0.5)
    b, dof = r.slope.statistic, r.n - 2
    se = (r.slope.ci95[1] - b) / stats.t.ppf(0.975, dof)
    q80 = stats.t.ppf(0.9, dof)
    assert r.slope.confidence_interval(0.8) == pytest.approx((b - q80 * se, b + q80 * se))
    with pytest.raises(ValueError, match="between 0 and 1"):
        r.pearson.confidence_interval(95)


def test_smooth():
    y = np.arange(100, dtype=float)
    np.testing.assert_allclose(smooth(y)[10:-10], y[10:-10])  # linear data is unchanged inside
    assert smooth(np.array([1.0, 5.0, 1.0]), window=3)[1] == pytest.approx(7 / 3)


def test_statistics_write_infinity_the_one_way():
    """NaN -> None and an infinity -> "inf" (fileio.json_safe), as predictions already
    wrote them; a failed fit's AIC used to become None here and "inf" in a prediction."""
    import json

    from zhbert.analysis.curves import MODELS, _failed
    from zhbert.analysis.stats import _f
    assert (_f(float("inf")), _f(-float("inf")), _f(float("nan")), _f(None)) == ("inf", "-inf", None, None)
    assert _f(np.float32(1.5)) == 1.5 and type(_f(np.float64(2.0))) is float
    j = _failed(MODELS["exp"], 5, 1.0, (1.0, 5.0), "did not converge").to_json()
    assert j["aic"] == "inf" and j["params"]["a"] is None
    json.dumps(j, allow_nan=False)  # strict JSON
