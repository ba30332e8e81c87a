"""The README's planning figures from the runs shipped in tests/data, pinned: a forecast for a
schedule kind no fitted run had, and a straight line read far past its points, each with the
warning that says so (README "Planning a run")."""

import json
from pathlib import Path

from zhbert.cli import main

DATA = Path(__file__).parent / "data"


def test_a_wsd_run_forecast_from_a_cosine_run_is_warned_about_and_the_wsd_run_shows_why(capsys):
    assert main(["predict", str(DATA / "cos-2000"), "--steps", "1500", "--schedule", "wsd",
                 "--n-boot", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    text = json.dumps(out)
    assert "no fitted run has a wsd schedule (fitted: cosine)" in text
    ended = [json.loads(line) for line in (DATA / "wsd-1500" / "history.jsonl").read_text().splitlines()]
    last = [r for r in ended if r.get("type") == "eval"][-1]
    assert last["step"] == 1500 and abs(last["eval_mlm_acc"] - 0.169) < 0.001
    # the law carried the cosine run's way off its plateau over: its forecast lies far above
    assert out["forecast"]["final_accuracy"]["mean"] > last["eval_mlm_acc"] + 0.05


def test_a_straight_line_far_past_a_short_runs_points_is_warned_about(capsys):
    assert main(["predict", str(DATA / "noeval-150"), "--target", "0.6", "--law", "none"]) == 0
    out = capsys.readouterr().out
    assert "reaches 0.6 at step 6,998" in out
    assert "warning: the fit is a straight line (linear)" in out
