"""What the planning and analysis commands print, checked as a reader checks it: forecasts of
a bounded metric inside its range, runs named apart, the model choice said as it was made,
numbers and windows worded as the README words them."""

import json
from pathlib import Path

import numpy as np

from zhbert.analysis.curves import fit_curve
from zhbert.analysis.history import load_history
from zhbert.cli import main

DATA = Path(__file__).parent / "data"


def _run(argv: list[str], capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_backtest_clips_a_forecast_of_an_accuracy_to_its_range_and_says_so(capsys):
    """A straight line fitted on tiny-2000's first 1,000 steps read 9.3324 (933% accuracy)
    at step 50,000, in the table and in --json."""
    argv = ["backtest", str(DATA / "tiny-2000"), "--fit-until", "1000", "--at", "50000"]
    rows = {m["model"]: m for m in json.loads(_run(argv + ["--json"], capsys))["models"]}
    assert all(0.0 <= m["pred_at"] <= 1.0 for m in rows.values())
    assert rows["linear"]["pred_at_clipped"] and rows["linear"]["pred_at_unclipped"] > 1.0
    text = _run(argv, capsys)
    assert "9.3324" not in text and "1.0000*" in text
    assert "* linear's curve reads 9.332 at 50,000, outside eval_mlm_acc's range [0, 1]" in text


def test_curve_family_predictions_and_bands_stay_in_the_metric_range():
    """The families' curves everywhere they are drawn or read (analyze, predict --law none,
    backtest --predict's rows, the sweep's fallback): an accuracy's inside [0, 1]."""
    s = load_history(DATA / "tiny-2000").metric("eval_mlm_acc").finite()[0]
    (line,) = fit_curve(s.step, s.y, ["linear"], n_boot=20, metric=s.name)
    far = np.array([50_000.0, 1e6])
    assert line.predict(far).max() <= 1.0 and max(b.max() for b in line.band(far)) <= 1.0
    assert line.boot_curves(far).max() <= 1.0
    assert line.raw(far).max() > 1.0  # the formula itself runs past 100%


def test_predict_names_runs_of_one_header_name_apart(capsys):
    """demo-1000 and demo-2000 both say "run" in their headers: predict read "runs: run, run"."""
    argv = ["predict", str(DATA / "demo-1000"), str(DATA / "demo-2000"), "--steps", "8000", "--n-boot", "0"]
    first = _run(argv, capsys).splitlines()[0]
    assert first.startswith(f"runs: run ({DATA / 'demo-1000'}), run (2) ({DATA / 'demo-2000'}); ")
    j = json.loads(_run(argv + ["--json"], capsys))
    assert j["runs"] == ["run", "run (2)"]
    assert j["paths"] == {"run": str(DATA / "demo-1000"), "run (2)": str(DATA / "demo-2000")}


def test_backtest_predict_names_the_runs_apart(capsys):
    """It read "backtest: fit on run; predict run's eval_mlm_acc"."""
    argv = ["backtest", "--predict", str(DATA / "demo-2000"), "--from", str(DATA / "demo-1000"),
            "--n-boot", "0"]
    head = _run(argv, capsys).splitlines()[0]
    assert head.startswith(f"backtest: fit on run ({DATA / 'demo-1000'}); predict eval_mlm_acc of "
                           f"run (2) ({DATA / 'demo-2000'}) at ")
    j = json.loads(_run(argv + ["--json"], capsys))
    assert j["from"] == ["run"] and j["predict"] == "run (2)"
    assert j["paths"]["run (2)"] == str(DATA / "demo-2000")


def test_predict_says_a_model_chosen_with_model_is_not_the_aic_choice(capsys):
    """--model linear read "the backtest favours loglinear over the AIC choice linear" where
    the AIC choice was exp."""
    argv = ["predict", str(DATA / "tiny-2000"), "--target", "0.3", "--law", "none", "--model", "linear",
            "--n-boot", "20"]
    text = _run(argv, capsys)
    assert "model: linear (chosen with --model; best AIC exp; backtest winner loglinear)" in text
    assert "the AIC choice linear" not in text
    assert "favours loglinear over linear (chosen with --model; the AIC choice is exp)" in text
    j = json.loads(_run(argv + ["--json"], capsys))
    assert j["model"] == "linear" and j["model_chosen_by"] == "--model" and j["aic_best"] == "exp"
    assert not any("AIC choice linear" in n for n in j["notes"])


def test_compare_writes_every_token_speed_in_whole_tokens(tmp_path, capsys):
    """tiny-1000's run average read 824.8841 beside demo-1000's 14,321 in one column."""
    out = _run(["compare", str(DATA / "demo-1000"), str(DATA / "tiny-1000"), "--out", str(tmp_path / "c")],
               capsys)
    row = next(line for line in out.splitlines() if line.startswith("| tiny-1000 |"))
    assert row.split(" | ")[4:6] == ["3,650", "825"]


def test_the_plateau_warning_counts_percentage_points(capsys):
    """A difference of two accuracies read "is 18.3% above the best accuracy measured"."""
    text = _run(["predict", str(DATA / "hf-tiny-bert"), "--target", "0.30", "--n-boot", "0"], capsys)
    warning = next(line for line in text.splitlines() if "warning: the target 30.0%" in line)
    assert "percentage points above the best accuracy measured (" in warning
    assert "% above" not in warning and "points): a run still on a plateau" in warning


def test_backtest_window_is_named_as_the_readme_names_it(capsys):
    """It read "mean err, last 155 steps" on tiny-2000 (the README: "the last 10K steps")."""
    text = _run(["backtest", str(DATA / "tiny-2000"), "--fit-until", "1000"], capsys)
    assert "mean err, last 10% (steps 1,845-2,000)" in text and "last 155 steps" not in text
    j = json.loads(_run(["backtest", str(DATA / "tiny-2000"), "--fit-until", "1000", "--json"], capsys))
    assert j["window_from"] == 1845 and j["last_x"] == 2000


def test_a_run_cut_before_the_law_has_points_names_a_later_fit_until(capsys):
    """demo-2000 cut at its switch to full length: "evaluate more often or train further" was
    no fix; a later --fit-until is."""
    from zhbert.cli import main
    assert main(["backtest", "--predict", str(DATA / "demo-2000"), "--fit-until", "1000"]) == 2
    err = capsys.readouterr().err
    assert "--fit-until 1000: a schedule-aware law needs at least 6 eval points" in err
    assert "give a later --fit-until (the law's points start at step 1,001)" in err
