"""Acceptance on the seed's own published data (skips when the shared data is absent)."""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from zhbert.analysis import backtest, correlate, detect, load_history, predict_steps, smooth, summary
from zhbert.analysis import cli as backtest_cli
from zhbert.analysis import predict_command as predict_cli
from zhbert.errors import UserError

_ROOT = Path(os.environ.get("ZHBERT_SHARED") or Path(__file__).resolve().parents[1] / "../shared")
SEED = _ROOT / "reference" / "seed_training_history_100k.json"
RESULT = _ROOT / "reference" / "seed_analysis_100k_result.json"
pytestmark = pytest.mark.skipif(not SEED.exists(), reason=f"seed data not found at {SEED}")


@pytest.fixture(scope="module")
def history():
    return load_history(SEED)


def test_reproduces_published_figures(history):
    published = json.loads(RESULT.read_text())
    acc = history.metric()
    assert history.default_metric == "mlm_acc" and "optimistic" in history.default_reason
    r = correlate(acc.step, acc.y, n_boot=500)
    assert r.statistic == pytest.approx(0.7869, abs=5e-4)
    assert r.statistic == pytest.approx(published["pearson_correlation"], abs=1e-9)
    assert r.r2 == pytest.approx(0.6193, abs=5e-4)
    assert r.pearson.confidence_interval() == pytest.approx((0.76, 0.81), abs=5e-3)
    s = summary(acc)
    assert s["mean"] == pytest.approx(0.5053, abs=5e-5) and s["max"] == pytest.approx(0.6635, abs=5e-5)
    for k in ("mean", "max", "min", "std"):
        assert s[k] == pytest.approx(published["mlm_stats"][k], abs=1e-9)
    loss = summary(history.metric("loss"))
    assert (round(loss["first"], 2), round(loss["last"], 2)) == (8.96, 2.97)
    # what the seed missed: strongly autocorrelated residuals, ~7x fewer effective points
    assert r.rho1 > 0.7 and r.durbin_watson < 0.6 and r.n_eff < 200
    lo, hi = r.confidence_interval()
    assert hi - lo > 2 * (0.81 - 0.76)


def test_nsp_flagged_at_chance(history):
    chance = [a for a in detect(history) if a.kind == "chance"]
    assert [a.metric for a in chance] == ["nsp_acc"]


def test_backtest_straight_line_overshoots(history):
    r = backtest(history, 50_000, at=95_000)
    rows = {row.model: row for row in r.rows}
    assert rows["linear"].pred_at == pytest.approx(0.91, abs=0.01)
    assert r.actual_at == pytest.approx(0.58, abs=0.01)
    best = min((row for row in r.rows if row.model != "linear"), key=lambda row: abs(row.mean_error_window))
    assert abs(best.mean_error_window) < 0.03
    assert smooth(history.metric().y).max() == pytest.approx(0.586, abs=0.002)


def test_sixty_percent_not_reachable(history):
    p = predict_steps(history, 0.60, n_boot=100)
    assert not p.reachable and p.message.startswith("not reachable with this setup: asymptote 0.57")


def _cli(module, argv):
    """Run a command module the way zhbert.cli does (add_arguments, then run)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_cli_predict_and_backtest(capsys):
    # the schedule-free families (--law none) see the cosine flatten and call 0.6 unreachable
    assert _cli(predict_cli, [str(SEED), "--target", "0.6", "--n-boot", "50", "--json", "--law", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reachable"] is False and out["asymptote"] < 0.6 and out["steps"] is None
    assert "schedule-free" in out["method"]
    # the schedule-aware law knows the lr reached 0: a longer run gets there
    assert _cli(predict_cli, [str(SEED), "--target", "0.6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["reachable"] is True and out["target"]["steps"] > 100_000
    assert _cli(backtest_cli, [str(SEED), "--fit-until", "50000", "--at", "95000"]) == 0
    text = capsys.readouterr().out
    assert "linear" in text and "0.911" in text
    assert "mean err, last 10% (steps 90,010-100,000)" in text  # the window in its unit (it read "last 9,990")
    # --law none as text: no backtest ran, so none is named ("backtest winner None")
    assert _cli(predict_cli, [str(SEED), "--target", "0.6", "--n-boot", "20", "--law", "none"]) == 0
    assert "None" not in capsys.readouterr().out
    with pytest.raises(UserError, match="metric 'nope'"):
        _cli(predict_cli, [str(SEED), "--target", "0.6", "--metric", "nope"])
