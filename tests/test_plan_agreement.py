"""Commands that answer the same question about the same run give one answer:
``backtest --predict``'s schedule-free rows fit the points ``predict --law none`` fits, and
the plateau warning of a target answer is decided once for predict, analyze and compare."""

import json
from pathlib import Path

import pytest

from zhbert.analysis.curves import fit_curve
from zhbert.analysis.plan_runs import load_run
from zhbert.analysis.history import load_history
from zhbert.analysis.outlook import outlook
from zhbert.analysis.run_backtest import backtest_runs
from zhbert.cli import main

DATA = Path(__file__).parent / "data"


def _after_switch_fits(run: Path) -> dict:
    """The families as predict --law none and analyze fit them: after the length switch."""
    h = load_history(run)
    s = h.curve_part(h.metric().finite()[0])
    assert h.meta.regimes and s.step[0] > h.meta.regimes[-1]  # demo-* switch length mid-run
    return {f.name: f for f in fit_curve(s.step, s.y, n_boot=0, metric=s.name) if f.ok}


def test_backtest_predict_fits_the_families_after_the_length_switch():
    """demo-1000 -> demo-2000: fitted across the switch, exp read the plateau and the fall
    after it as one curve and put demo-2000 at 56%; after it, 31.5%, what predict says."""
    b = backtest_runs(load_run(DATA / "demo-2000"), [load_run(DATA / "demo-1000")], n_boot=0)
    rows = {r["method"].split(" ")[0]: r for r in b.rows if "schedule-free" in r["method"]}
    fits = _after_switch_fits(DATA / "demo-1000")
    assert rows["exp"]["pred_final"] == pytest.approx(fits["exp"].predict([2000])[0], abs=1e-6)
    assert rows["power"]["pred_final"] == pytest.approx(fits["power"].predict([2000])[0], abs=1e-6)
    # scored where the law and the families hold: after demo-2000's own switch (step 1,000)
    assert b.n_points == 20 and all(r["mae"] < 0.2 for r in b.rows)
    assert any("after the switch to full-length sequences at step 500" in n for n in b.notes)


def test_backtest_predict_with_too_few_points_after_the_switch_keeps_the_law(capsys):
    """Cut just past its switch (step 1,000), demo-2000 is the longest run fitted and has too
    few points for the families: the law's rows stand and a note says why the others are missing."""
    assert main(["backtest", "--predict", str(DATA / "demo-2000"), "--from", str(DATA / "demo-1000"),
                 "--fit-until", "1150", "--n-boot", "0", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in j["methods"]] == ["lr_annealing"]
    assert j["notes"] and j["notes"][0].startswith("no schedule-free rows: a learning curve of")


@pytest.mark.parametrize("run", ["hf-tiny-bert", "hf-small-bert"])
def test_a_target_on_a_plateau_is_warned_about_everywhere(run, tmp_path, capsys):
    """Both Trainer runs end on the ~14% plateau; the law says 0.3 is reached. analyze warned,
    predict --target and compare's "steps to 0.3" did not."""
    path = DATA / run
    assert "above the best accuracy measured" in outlook(path, 0.30).summary()
    assert main(["predict", str(path), "--target", "0.30", "--n-boot", "0", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["target"]
    # a target reached is worded as one, in predict as in compare (it read "the forecast (30.0%)")
    assert said["reachable"] and "lower estimate" in (said.get("warning") or "")
    assert main(["predict", str(path), "--target", "0.30", "--n-boot", "0"]) == 0
    assert "  warning: the target 30.0% is" in capsys.readouterr().out
    other = DATA / ("hf-small-bert" if run == "hf-tiny-bert" else "hf-tiny-bert")
    assert main(["compare", str(path), str(other), "--metric", "eval_accuracy", "--targets", "0.3",
                 "--out", str(tmp_path / "cmp")]) == 0
    j = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert any(w.startswith(f"{run}: the target 30.0% ") for w in j["warnings"])
    assert j["runs"][0]["forecast"]["reach"]["0.3"]["reachable"]


def test_a_target_runs_that_left_the_plateau_reach_is_not_warned_about(tmp_path, capsys):
    assert main(["predict", str(DATA / "tiny-2000"), "--target", "0.40", "--n-boot", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"].get("warning", "absent") is None
    assert "warning" not in outlook(DATA / "tiny-2000", 0.40).summary()
    assert main(["compare", str(DATA / "tiny-2000"), str(DATA / "demo-2000"), "--targets", "0.3,0.35",
                 "--out", str(tmp_path / "cmp")]) == 0
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["warnings"] == []
