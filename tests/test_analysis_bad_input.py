"""Bad values for the analysis commands (predict, backtest, analyze, compare): one line and
exit 2, nothing written; and the law's answers refused where they are impossible."""

import json
from pathlib import Path

import pytest

from test_predict_plan import write_run
from cli_helpers import HUGE, parse, refused
from zhbert.cli import main
from zhbert.errors import UserError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {n: write_run(root / f"r{n}", n, seed=n) for n in (1000, 2000)}


@pytest.mark.parametrize("command, argv", [
    ("predict", ["--steps", HUGE]), ("predict", ["--steps", "1000000001"]),
    ("predict", ["--warmup", HUGE]), ("predict", ["--warmup", "-1"]),
    ("predict", ["--lr", "nan"]), ("predict", ["--lr", "inf"]), ("predict", ["--lr", "1e400"]),
    ("predict", ["--price-per-hour", "inf"]), ("predict", ["--tokens-per-step", "inf"]),
    ("predict", ["--seconds-per-step", "1e400"]),
    ("predict", ["--n-boot", "-1"]), ("predict", ["--n-boot", "100001"]),
    ("backtest", ["--n-boot", "-1"]), ("backtest", ["--n-boot", HUGE]),
    ("backtest", ["--fit-until", "inf"]), ("backtest", ["--fit-until", "0"]),
    ("backtest", ["--at", "-1"]), ("backtest", ["--at", "nan"]),
    ("analyze", ["--n-boot", "100001"]), ("analyze", ["--n-boot", "-1"]),
])
def test_option_values_out_of_range_are_refused_by_the_parser(command, argv):
    """--n-boot 10^20 fitted without end, --price-per-hour inf printed "inf USD", --fit-until
    inf was a traceback, backtest --n-boot -1 and --at -1 were taken."""
    with pytest.raises(SystemExit) as exc:
        parse(command, ["RUN", *argv])
    assert exc.value.code == 2


@pytest.mark.parametrize("command, argv", [
    ("predict", ["--n-boot", "0"]), ("predict", ["--n-boot", "1e5"]), ("predict", ["--warmup", "0"]),
    ("backtest", ["--n-boot", "0"]), ("analyze", ["--n-boot", "0"]), ("predict", ["--steps", "1e9"]),
])
def test_the_ends_of_the_ranges_are_taken(command, argv):
    """0 refits is the delta method's interval (predict, backtest --predict), not an error (a
    refusal is argparse's SystemExit, which fails this test)."""
    assert parse(command, ["RUN", *argv]) is not None


def test_steps_past_int64_are_one_line_not_an_overflow(runs, capsys):
    err = refused(["predict", str(runs[2000]), "--steps", HUGE], capsys)
    assert "--steps" in err and "1,000,000,000" in err


def test_the_law_refuses_steps_past_int64_by_itself():
    """Reached from a history's own schedule too (a config's train.steps has no ceiling)."""
    from zhbert.analysis.laws import Units, features
    from zhbert.schedule import Schedule
    sched = Schedule("cosine", 1e-3, 1000, 100)
    for top in (10 ** 20, 9_999_999_999_999_999_999):  # an OverflowError; an IndexError (wrapped)
        with pytest.raises(UserError, match="past what the law can sum"):
            features(sched, [10, top], Units(1e-3, 1.0), "lr_annealing")


@pytest.mark.parametrize("argv", [["--steps", "4000", "--lr", "1e30"], ["--steps", "4000", "--lr", "0.01"],
                                  ["--compare-schedules", "--lr", "0.01"], ["--target", "0.95", "--lr", "0.01"]])
def test_a_negative_loss_forecast_is_refused_naming_the_lr(runs, capsys, argv):
    """--lr 1e30 printed a final loss of -6.8e32 and 100% accuracy; 0.01 (10x the runs'
    peak) one of -4.4."""
    err = refused(["predict", str(runs[2000]), "--n-boot", "0", *argv], capsys)
    assert err.startswith("zhbert: error: --lr ") and "below 0" in err and "0.001" in err


def test_a_negative_loss_from_the_length_alone_blames_the_length():
    """tiny-2000's floor (L0 less a full anneal) is below 0: at 10^12 steps it forecast -0.45."""
    from zhbert.analysis.extrapolation import check_loss
    from zhbert.analysis.forecast import plan
    p = plan([DATA / "tiny-2000"], n_boot=0)
    check_loss(p, p.base.stretched(10 ** 6), [10 ** 6], "--steps 1,000,000")  # positive there
    with pytest.raises(UserError, match=r"^--steps 10\^12: .*500,000,000x the longest fitted.* below 0"):
        check_loss(p, p.base.stretched(10 ** 12), [10 ** 12], "--steps 10^12")


def test_an_lr_outside_the_fitted_peaks_is_flagged_as_an_extrapolation(runs, capsys):
    def notes(lr):
        assert main(["predict", str(runs[2000]), "--n-boot", "0", "--steps", "4000", "--json",
                     "--lr", lr]) == 0
        return [n for n in json.loads(capsys.readouterr().out)["notes"] if "extrapolation" in n]
    assert notes("0.001") == []                          # the run's own peak
    assert "2x the highest peak lr fitted (0.001)" in notes("0.002")[0]
    assert "1/2 of the lowest" in notes("0.0005")[0]


def test_a_warmup_past_every_run_searched_is_refused(runs, capsys):
    """--target with a --warmup past the 200,000 steps searched read "forecast at that length
    0.0000"; --compare-schedules without --steps compares the longest run's length."""
    err = refused(["predict", str(runs[2000]), "--n-boot", "0", "--target", "0.5", "--warmup",
                   "300000"], capsys)
    assert "--warmup 300,000" in err and "200,000" in err
    err = refused(["predict", str(runs[2000]), "--n-boot", "0", "--compare-schedules", "--warmup",
                   "2000"], capsys)
    assert "--warmup 2,000 is not shorter than the 2,000 steps" in err


def test_the_curve_bands_stay_inside_what_the_metrics_can_be(capsys):
    """predict --json's curve read an accuracy band of -41% to 125% and a loss of -1.44."""
    assert main(["predict", str(DATA / "tiny-1000"), str(DATA / "tiny-2000"), "--steps", "8000",
                 "--n-boot", "0", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["forecast"]["curve"]
    assert min(c["acc_lo80"]) >= 0 and max(c["acc_hi80"]) <= 1 and min(c["loss_lo80"]) >= 0


def test_backtest_fit_until_past_the_run_names_the_option(runs, capsys):
    err = refused(["backtest", "--predict", str(runs[2000]), "--from", str(runs[1000]),
                   "--fit-until", "1e20", "--n-boot", "0"], capsys)
    assert "--fit-until 1e+20 is at or after the last step of r2000 (2,000)" in err


def test_backtest_at_outside_the_run_measures_nothing_there(runs):
    """--at 5000 on a 2,000-step run read "at 5,000: 0.5361", the last value, as if measured."""
    from zhbert.analysis.backtest import backtest, backtest_table
    from zhbert.analysis.history import load_history
    h = load_history(runs[2000])
    r = backtest(h, 1000, at=5000)
    assert r.actual_at is None and all(row.pred_at is not None for row in r.rows if row.ok)
    assert "at 5,000: not measured" in backtest_table(r)
    assert backtest(h, 1000, at=1500).actual_at == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("targets, msg", [("-1", "between 0 and 1"), ("0.3,nan", "finite"),
                                          ("inf", "finite"), ("0.3,1.5", "between 0 and 1")])
def test_compare_targets_are_shares_and_nothing_is_written(runs, tmp_path, capsys, targets, msg):
    out = tmp_path / "cmp"
    err = refused(["compare", str(runs[2000]), str(runs[1000]), f"--targets={targets}", "--out",
                   str(out)], capsys)
    assert err.startswith("zhbert: error: --targets: ") and msg in err
    assert not out.exists()


def test_a_target_must_be_finite_for_any_metric():
    """analyze --metric eval_mlm_loss --target nan wrote a report (a loss's bound let nan by)."""
    from zhbert.analysis.predict import check_target
    for t in (float("nan"), float("inf")):
        with pytest.raises(UserError, match="finite"):
            check_target(t, "eval_mlm_loss")
    check_target(2.5, "eval_mlm_loss")


def test_an_unreached_target_searches_only_as_far_as_the_law_holds(monkeypatch):
    """reach() refused a whole outlook (analyze, the dashboard, compare) when the target was
    never reached and some length deep in its search grid forecast a loss below 0: the
    search now stops there and says the target is not reached (a review)."""
    import numpy as np
    from zhbert.analysis.forecast import plan
    from zhbert.analysis.planning import reach
    p = plan([DATA / "tiny-2000"], n_boot=0)
    real = type(p.law).predict
    monkeypatch.setattr(type(p.law), "predict", lambda law, s, steps: np.where(
        np.asarray(steps) > 50_000, -1.0, real(law, s, steps)))
    r = reach(p, 0.99, p.base.stretched)
    assert not r.reachable and "below 0" not in r.message  # an answer, not a refusal
