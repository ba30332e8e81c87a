"""A run still climbing, cut early: the law alone credits the climb to its annealing term and
forecasts the lr fall still ahead as a gain it never brings (laws.LawFit.loss_draws mixes in
refits without annealing gain there). Measured before the mix: tiny-2000's first 800 steps
forecast its last tenth at 84.8-98.2% (80%) where it ended at 31.6%; tiny-4000's first 1,600
at 43.3-63.2% for 40.5%."""

from pathlib import Path

import numpy as np
import pytest

from zhbert.analysis.forecast import plan
from zhbert.analysis.plan_runs import load_run, truncated
from zhbert.analysis.run_backtest import backtest_runs

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("run, until, widest", [("tiny-2000", 1200, 0.50), ("tiny-2000", 1400, 0.25),
                                                ("tiny-4000", 1600, 0.35), ("tiny-4000", 2000, 0.10)])
def test_an_early_cut_interval_covers_the_end(run, until, widest):
    """Covered, and by an interval that says something: measured (40 refits) 20-64%, 27-46%,
    36-64% and 38-44% (at 800 steps of tiny-2000 it is 0-98%: nothing is known yet)."""
    b = backtest_runs(load_run(DATA / run), [], until=until, n_boot=40)
    (lo, hi), row = b.rows[0]["interval80"], b.rows[0]
    assert row["covered80"] and hi - lo < widest, (lo, hi, b.actual_last_tenth)


def test_no_mix_where_the_runs_saw_the_anneal():
    """Inside the annealing area the fitted points had, and for a run fitted to its end, the
    forecast is the law's alone: its own points, and tiny-4000's own length."""
    p = plan([DATA / "tiny-4000"], n_boot=20)
    s = p.base
    assert not p.law.unseen_share(s, [1000, 2000, 4000]).any()
    f = p.accuracy(s, [4000])
    assert not any("annealing gain" in n for n in f.notes)


def test_the_mix_grows_with_the_anneal_unseen():
    """Cut at 800 of 2,000 steps: almost none of the fall seen, near half the refits take no gain;
    later cuts saw more of it and mix less; the forecast says so in a note."""
    r = load_run(DATA / "tiny-2000")
    shares = []
    for until in (800, 1200, 1600):
        p = plan([truncated(r, until)], n_boot=20)
        shares.append(float(p.law.unseen_share(r.curve.schedule, [2000])[0]))
    assert 0.4 < shares[0] <= 0.5 and shares[0] > shares[1] > shares[2] > 0, shares
    p = plan([truncated(r, 800)], n_boot=20)
    f = p.accuracy(r.curve.schedule, [2000])
    assert any("annealing gain" in n for n in f.notes)
    assert f.lo80 < 0.30 < 0.90 < f.hi80  # both readings: no gain (~20%) and the law's (~94%)


def test_the_delta_method_weighs_the_two_readings_too():
    """The dashboard and compare answer by the delta method (n_boot 0): the same two readings,
    as a mixture of two normals, so they do not show the law alone where predict mixes."""
    r = load_run(DATA / "tiny-2000")
    p = plan([truncated(r, 800)], n_boot=0)
    assert p.law.no_gain is not None and len(p.law.no_gain.boot) == 0
    f = p.accuracy(r.curve.schedule, [2000])
    assert "delta method" in f.method and any("annealing gain" in n for n in f.notes)
    assert f.lo80 < 0.316 < f.hi80, (f.lo80, f.hi80)
    c = p.curve(r.curve.schedule, [800, 2000])
    assert c["acc_lo80"][1] < 0.316 < c["acc_hi80"][1]
    assert abs(c["acc"][1] - f.mean) < 1e-9  # one central value for the curve and the answer


def test_mixture_bounds_are_the_normal_ones_without_a_second_reading():
    from scipy.stats import norm
    from zhbert.analysis.mixture import mixture_bounds, mixture_moments
    lo, hi = mixture_bounds([1.0, 1.0], [0.5, 0.5], [5.0, 5.0], [0.5, 0.5], [0.0, 0.5], 0.80)
    z = norm.ppf(0.9)
    assert abs(lo[0] - (1 - z * 0.5)) < 1e-12 and abs(hi[0] - (1 + z * 0.5)) < 1e-12
    assert lo[1] < 1.0 and hi[1] > 5.0  # half and half: the interval spans both
    assert mixture_moments(1.0, 0.5, 5.0, 0.5, 0.5) == (3.0, (0.25 + 4.0) ** 0.5)


def test_the_reading_without_gain_has_no_variance_in_the_term_it_pins():
    """It holds the annealing term at 0; its covariance had given that term an sd larger than
    the full fit's (0.89 against 0.55 on tiny-2000), widening every band that mixed it in
    (tiny-4000 cut at 1,600, delta method: 26.1-63.8% where 32.9-62.6% without; a review)."""
    r = load_run(DATA / "tiny-2000")
    p = plan([truncated(r, 800)], n_boot=0)
    g = p.law.no_gain
    ia = g.spec.params.index(g.spec.anneal)
    assert g.cov[ia, ia] == 0 and g.to_json()["params_sd"]["C"] == 0 and not g.anneal_fitted


def test_predict_json_reports_the_second_reading_it_used(capsys):
    """The law's JSON was built before the answers fitted the lazy second reading: it said
    without_annealing_gain null beside a note that the forecast weighed it (a review)."""
    import json

    from zhbert.cli import main
    assert main(["predict", str(DATA / "tiny-4000"), "--steps", "8000", "--n-boot", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("annealing gain" in n for n in out["forecast"]["final_accuracy"]["notes"])
    assert set(out["law"]["without_annealing_gain"]) == {"L0", "A", "alpha", "C"}


def test_one_step_in_gives_one_value_out():
    """law.predict of one step returns one value, and loss_draws of one step one column (it
    raised an IndexError; a review)."""
    p = plan([DATA / "tiny-4000"], n_boot=20)
    assert np.ndim(p.law.predict(p.base, 2000)) == 0
    assert p.law.loss_draws(p.base.stretched(8000), 8000).shape == (20, 1)
