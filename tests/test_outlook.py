"""The schedule-aware outlook (analysis.outlook) where the study shows a forecast: analyze's
report and prediction.png, the dashboard's steps to target."""

import json
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from zhbert.analysis.outlook import outlook
from zhbert.cli import main
from zhbert.monitor.server import create_app

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny2000():
    return DATA / "tiny-2000"


def test_outlook_knows_the_schedule(tiny2000):
    o = outlook(tiny2000, target=0.40)
    last = o.observed["acc"][-1]
    # where its own (cosine to zero) schedule ends: near what it measured, inside the 95% band
    assert o.final.lo95 <= last <= o.final.hi95 and abs(o.final.mean - last) < 0.03
    # a longer run of the same schedule ends higher; 0.40 costs more than this run, finitely many steps
    assert o.final_longer.mean > o.final.mean + 0.03
    assert o.reach.reachable and 2000 < o.reach.steps < 8000 and o.longer >= 4000
    assert o.current["step"][0] > 400  # drawn where the law holds: after the short-sequence phase
    assert all(0 <= v <= 1 for v in o.stretched["acc_lo80"] + o.stretched["acc_hi80"])
    j = json.loads(json.dumps(o.to_json()))
    assert j["reach"]["steps"] == pytest.approx(o.reach.steps) and j["planned_steps"] == 2000


def test_analyze_reports_and_draws_the_outlook(tiny2000, tmp_path, capsys):
    out = tmp_path / "an"
    assert main(["analyze", str(tiny2000), "--out", str(out), "--target", "0.4", "--n-boot", "50"]) == 0
    said = capsys.readouterr().out
    assert "schedule-aware: lr_annealing law" in said
    # two answers to "when 0.4?": the schedule-aware one first; the one that ignores the lr
    # schedule says so (a finished cosine run's blind fit said 0.6 at step 4,032 above a
    # law that said 0.6 was out of reach)
    blind = "target 0.4 (the curve fit, blind to the lr schedule; the schedule-aware line above is not):"
    assert blind in said and said.index("schedule-aware: lr_annealing") < said.index(blind)
    md = (out / "report.md").read_text()
    assert "### Schedule-aware forecast" in md and "stretched to" in md
    assert json.loads((out / "analysis.json").read_text())["outlook"]["reach"]["reachable"]
    assert (out / "prediction.png").stat().st_size > 10_000


def test_analyze_and_predict_give_one_answer(tiny2000, tmp_path, capsys):
    """`analyze --n-boot N` and `predict --n-boot N` ask the same planner the same question:
    the same steps to the target, not two bands from two methods."""
    assert main(["predict", str(tiny2000), "--target", "0.43", "--n-boot", "30", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["target"]
    assert main(["analyze", str(tiny2000), "--out", str(tmp_path / "an"), "--target", "0.43",
                 "--n-boot", "30"]) == 0
    capsys.readouterr()
    got = json.loads((tmp_path / "an" / "analysis.json").read_text())["outlook"]["reach"]
    assert got["steps"] == pytest.approx(said["steps"])
    assert got["steps_interval80"] == pytest.approx(said["steps_interval80"])


def test_analyze_without_lr_says_why(tmp_path, capsys):
    run = tmp_path / "nolr"
    run.mkdir()
    rows = [{"type": "eval", "step": s, "eval_mlm_acc": 0.5 - 0.4 * 0.99 ** s, "eval_mlm_loss": 2 + 0.99 ** s}
            for s in range(10, 410, 10)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["analyze", str(run), "--out", str(tmp_path / "o"), "--n-boot", "20"]) == 0
    said = capsys.readouterr().out
    assert "not computed: schedule-aware forecast" in said and "no learning rate" in said


def test_dashboard_steps_to_target_uses_the_law(tiny2000, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(tiny2000, root / "r")
    s = TestClient(create_app([root])).get("/api/runs/r/study?target=0.4").json()
    ref = outlook(root / "r", 0.4)
    assert s["outlook"]["reach"]["steps"] == pytest.approx(ref.reach.steps)
    assert s["outlook"]["summary"] == ref.summary()


def test_compare_adds_each_runs_forecast(tiny2000, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(DATA / "tiny-1000"), str(tiny2000), "--out", str(out), "--targets", "0.3,0.4"]) == 0
    j = json.loads((out / "comparison.json").read_text())
    f = {r["name"]: r["forecast"] for r in j["runs"]}
    assert f["tiny-2000"]["reach"]["0.4"]["steps"] == pytest.approx(outlook(tiny2000, 0.4).reach.steps)
    assert not f["tiny-1000"]["reach"]["0.4"]["reachable"]  # its own law: it never left the plateau
    assert "## Forecast by the schedule-aware law" in (out / "comparison.md").read_text()


def test_a_forecast_that_climbs_past_the_data_is_flagged(capsys):
    """The law has no plateau term: a Trainer run still at ~14% after 1,000 of its 2,000 steps
    is forecast ~20 points too high. That forecast says so; one from runs that had left
    the plateau (tiny-2000 -> a 4,000-step run: within 1 point) does not."""
    from zhbert.analysis.forecast import plan
    from zhbert.analysis.plan_runs import load_run, truncated
    hf = load_run(DATA / "hf-tiny-bert")
    p = plan([truncated(hf, 1000)], n_boot=0)
    f = p.accuracy(hf.curve.schedule, [2000])
    assert f.mean > hf.acc[-1] + 0.1 and "upper estimate" in p.climb_warning(f.mean)
    assert main(["predict", str(DATA / "tiny-2000"), "--steps", "4000", "--json", "--n-boot", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["forecast"]["warning"] is None
    assert outlook(DATA / "tiny-2000", 0.4).summary().count("warning") == 0


def test_the_curve_fit_is_called_blind_to_the_schedule_where_the_law_cannot_run(tmp_path, capsys):
    """A run with an lr schedule but no loss to fit the law on: its only answer, the curve
    fit's, still says that it ignores the schedule (it went unlabelled)."""
    from zhbert.config import load_config
    from zhbert.schedule import Schedule
    cfg = load_config("tiny", ["train.steps=1000"])
    sched = Schedule.from_config(cfg)
    recs = [{"type": "header", "run": "r", "config": cfg.to_dict(), "total_steps": 1000}]
    for s in range(50, 1001, 50):
        acc = 0.35 * (1 - (1 - s / 1000) ** 2)
        recs.append({"type": "train", "step": s, "tokens": s * 3000, "elapsed": s * 0.2,
                     "lr": sched.at(s), "mlm_acc": acc})
        recs.append({"type": "eval", "step": s, "tokens": s * 3000, "elapsed": s * 0.2,
                     "eval_mlm_acc": acc + 0.01})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["analyze", str(tmp_path / "r"), "--out", str(tmp_path / "an"), "--target", "0.4",
                 "--n-boot", "20"]) == 0
    said = capsys.readouterr().out
    assert "target 0.4 (the curve fit, blind to the lr schedule):" in said
    assert "schedule-aware" not in said.replace("schedule-aware forecast:", "")


def test_the_blind_curve_fits_start_after_the_length_switch(tiny2000, tmp_path, capsys):
    """analyze's best curve, its target answer and backtest, predict --law none and the
    dashboard's fit took the short-sequence phase and the fall after the switch as one curve
    (the demo: 0.4 "at step 1,825" beside the law's 5,998-step run); they fit the 32 of 40
    evaluations after the switch at step 400."""
    from zhbert.analysis import load_history, predict_steps

    out = tmp_path / "an"
    assert main(["analyze", str(tiny2000), "--out", str(out), "--target", "0.4", "--n-boot", "20"]) == 0
    j = json.loads((out / "analysis.json").read_text())
    fit = j["summary"]["eval_mlm_acc"]["best_fit"]
    assert fit["n"] == 32 and fit["x_range"][0] > 400
    assert j["backtest"]["n_fit"] + j["backtest"]["n_test"] == 32
    h = load_history(tiny2000)
    assert any("fitted after the switch to full-length sequences at step 400" in n
               for n in predict_steps(h, 0.4, n_boot=10).notes)
    root = tmp_path / "runs"
    shutil.copytree(tiny2000, root / "r")
    s = TestClient(create_app([root])).get("/api/runs/r/study").json()
    assert s["fit"]["best"]["n"] == 32 and min(s["fit"]["grid"]) > 400
