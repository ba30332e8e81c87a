"""The forecast pruner on a plateau with one glitch, and forecasts kept within a metric's
bounds. The newcomer's sweep: a 150-step trial flat at 0.0486 whose eval at step 63 read
0.0 (0.0486 again at step 70) was pruned at 63 by a linear fit through the glitch that
forecast an accuracy of -0.0040 (80%: -0.0372 to 0.0452) against a best of 0.0789."""

import json

import optuna
import pytest

from zhbert.analysis.forecast import Forecast
from zhbert.sweep.forecast import forecast_final, within_bounds
from zhbert.sweep.pruner import ForecastPruner, on_plateau, steady_evals

P = 0.0486  # the demo corpus's unigram plateau
BEST = 0.0789
GLITCHED = [P] * 8 + [0.0]  # evals at steps 7..63, the last one a glitch


def _history(run_dir, steps, values, total):
    """A trial's history.jsonl, each eval with the Wilson interval the trainer records."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [{"type": "header", "schema": "zhbert-history", "version": 1, "run": run_dir.name,
              "total_steps": total, "tokens_per_step": 4096}]
    lines += [{"type": "eval", "step": s, "tokens": s * 4096, "elapsed": float(s),
               "eval_mlm_acc": v, "eval_mlm_loss": 8.0 - 15.0 * v,
               "eval_mlm_acc_ci95": [max(0.0, v - 0.03), v + 0.03]} for s, v in zip(steps, values)]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _trial(sweep_dir, values, total=150, every=7, best=BEST, finished=None):
    """A study with one finished trial (``best``, its curve ``finished``) and a running one
    that reported ``values`` every ``every`` steps, its history written under sweep_dir."""
    study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
    study.add_trial(optuna.create_trial(value=best, params={}, distributions={},
                                        intermediate_values=finished or {}))
    trial = study.ask()
    trial.set_user_attr("trial_dir", "t")
    trial.set_user_attr("total_steps", total)
    steps = [every * (i + 1) for i in range(len(values))]
    _history(sweep_dir / "t", steps, values, total)
    for s, v in zip(steps, values):
        trial.report(v, s)
    return study, study._storage.get_trial(trial._trial_id)


def test_one_glitch_is_not_movement():
    assert on_plateau(GLITCHED)                            # the newest eval fell to 0.0
    assert on_plateau([P] * 7 + [0.0, P])                  # ... and came back at step 70
    assert on_plateau([0.03] + [P] * 5 + [0.09, P])        # one eval up and back
    assert on_plateau([5.0] + [4.0] * 5 + [9.0], sign=-1)  # a loss that jumped once
    assert steady_evals(GLITCHED) == [P] * 3
    # a move that persists for two evals still moves; so does a steady climb or fall
    assert not on_plateau([P] * 7 + [0.0, 0.0])
    assert not on_plateau([0.03, 0.05, 0.07, 0.09, 0.11])
    assert not on_plateau([0.11, 0.09, 0.07, 0.05, 0.03])
    # the newest eval better than the rest may be the trial leaving its plateau: not set
    # aside (``accelerating`` judges it), as before
    assert not on_plateau([0.0041] + [P] * 5 + [0.061])
    assert steady_evals([0.0041] + [P] * 5 + [0.061]) == [P, P, 0.061]


def test_a_plateau_with_one_glitch_is_not_pruned_by_its_forecast(tmp_path):
    """The newcomer's trial, with the real forecaster: kept at step 63, and at step 70."""
    for values in (GLITCHED, GLITCHED + [P]):
        study, frozen = _trial(tmp_path, values)
        pruner = ForecastPruner(tmp_path)
        assert not pruner.prune(study, frozen)
        d = pruner.decisions[frozen.number]
        assert d.forecast is None and "on a plateau" in d.reason and "one outlying eval" in d.reason


def test_a_trial_that_falls_and_stays_down_is_still_forecast_and_pruned(tmp_path):
    study, frozen = _trial(tmp_path, [P] * 7 + [0.0, 0.0])
    pruner = ForecastPruner(tmp_path)
    assert pruner.prune(study, frozen)
    fc = pruner.decisions[frozen.number].forecast
    assert fc is not None and fc.hi80 < BEST and fc.mean >= 0.0


def test_a_plateau_with_one_glitch_still_meets_the_climb_bound(tmp_path):
    """Past half its steps a plateau trial with a glitch meets the climb bound, from where it
    sits (0.14), not from the glitch: the steepest 300 steps seen from 0.14 gained 0.18,
    which cannot reach 0.34."""
    escaped = {100: 0.14, 200: 0.14, 300: 0.14, 400: 0.20, 500: 0.26, 600: 0.32, 1000: 0.34}
    values = [0.05] + [0.14] * 11 + [0.0, 0.14]  # steps 50..700 of 1,000, a glitch at 650
    study, frozen = _trial(tmp_path, values, total=1000, every=50, best=0.34, finished=escaped)
    pruner = ForecastPruner(tmp_path, forecaster=lambda *a: pytest.fail("no forecast on a plateau"))
    assert pruner.prune(study, frozen)
    assert "on a plateau at step 700 at 0.1400" in pruner.decisions[frozen.number].reason


def test_the_forecast_of_an_accuracy_stays_within_its_bounds(tmp_path):
    _history(tmp_path / "t", [7 * (i + 1) for i in range(9)], GLITCHED, 150)
    fc = forecast_final(tmp_path / "t", 150)  # a linear fit through the glitch: below 0
    assert 0.0 == fc.mean == fc.lo80 == fc.lo95 < fc.hi80 <= fc.hi95 <= 1.0
    assert "clipped to eval_mlm_acc's bounds [0, 1]" in fc.notes


def test_the_pruner_compares_and_prints_the_clipped_forecast(tmp_path):
    """The forecast the newcomer saw, from any forecaster, on a trial that moves: clipped
    before it is compared and printed."""
    raw = Forecast(-0.0040, -0.0372, 0.0452, -0.06, 1.2, "linear fit")
    study, frozen = _trial(tmp_path, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    pruner = ForecastPruner(tmp_path, forecaster=lambda *a: raw)
    assert pruner.prune(study, frozen)
    d = pruner.decisions[frozen.number]
    assert (d.forecast.mean, d.forecast.lo80, d.forecast.hi80, d.forecast.lo95,
            d.forecast.hi95) == (0.0, 0.0, 0.0452, 0.0, 1.0)
    assert "0.0000 (80%: 0.0000 to 0.0452)" in d.reason and "-" not in d.reason


def test_within_bounds_clips_only_the_bounded_sides():
    """A loss is clipped at 0 only; a forecast within bounds is left as it is."""
    loss = within_bounds(Forecast(0.5, -0.1, 9.0, -0.2, 12.0, "curve"), "eval_mlm_loss")
    assert (loss.mean, loss.lo80, loss.hi80, loss.lo95, loss.hi95) == (0.5, 0.0, 9.0, 0.0, 12.0)
    inside = Forecast(0.3, 0.2, 0.4, 0.1, 0.5, "curve")
    assert within_bounds(inside, "eval_mlm_acc") is inside
