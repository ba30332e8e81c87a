"""The planning commands' metric choices: one rule for a history's accuracy and loss (analyze
and predict), a loss target answered by the law, and the notes on answers that do not hold."""

import json
from pathlib import Path

import pytest

from zhbert.analysis.history import load_history
from zhbert.analysis.plan_runs import load_run
from zhbert.cli import main
from zhbert.report_analysis import analyze

DATA = Path(__file__).parent / "data"
HF = DATA / "hf-tiny-bert" / "trainer_state.json"


def _predict(capsys, *argv):
    assert main(["predict", *map(str, argv)]) == 0
    return capsys.readouterr().out


# --------------------------------------------------------------- 1. one accuracy rule

def test_trainer_eval_accuracy_is_the_accuracy_analyze_and_the_law_use():
    """analyze said "no MLM accuracy recorded; using loss" for a Trainer file whose
    eval_accuracy predict's law forecast: both now read one rule (plan_runs)."""
    h = load_history(HF)
    run = load_run(HF)
    assert h.default_metric == run.acc_metric == "eval_accuracy"
    assert "held-out accuracy (eval_accuracy)" in h.default_reason
    a = analyze(h, n_boot=0)
    assert a.metric == "eval_accuracy"
    assert a.outlook is not None and a.outlook.acc_metric == "eval_accuracy"
    assert not [w for w, _ in a.not_computed if w == "schedule-aware forecast"]


def test_zhbert_run_keeps_its_choices():
    h = load_history(DATA / "tiny-2000")
    run = load_run(DATA / "tiny-2000")
    assert h.default_metric == run.acc_metric == "eval_mlm_acc"
    assert run.loss_metric == "eval_mlm_loss"


# --------------------------------------------------------------- 2. a loss target, by the law

def test_loss_target_is_answered_by_the_law(capsys):
    """--metric eval_mlm_loss --target 3.5 went to the schedule-free families ("not reachable:
    asymptote 3.812") though the law models that loss and tiny-4000 reached 3.358."""
    out = json.loads(_predict(capsys, DATA / "tiny-2000", "--target", 3.5, "--metric",
                              "eval_mlm_loss", "--n-boot", 0, "--json"))
    t = out["target"]
    assert t["reachable"] and t["metric"] == "loss" and "limit_loss" in t
    assert 2_000 < t["steps"] < 10_000   # tiny-2000 ended above 3.5; tiny-4000 passed it
    assert t["steps_interval80"][0] <= t["steps"]  # its upper bound: never (one short run)
    assert "method" in out and "schedule-free" not in json.dumps(out)


def test_loss_target_inverts_the_law_loss():
    """The steps found are where Planner.loss's mean falls to the target (the search grid's
    log interpolation apart), and a lower target takes longer."""
    from zhbert.analysis.forecast import plan
    from zhbert.analysis.planning import reach
    p = plan([DATA / "tiny-2000"], n_boot=0)
    r35, r30 = (reach(p, t, p.base.stretched, "loss") for t in (3.5, 3.0))
    n = int(round(r35.steps))
    assert p.loss(p.base.stretched(n), [n]).mean == pytest.approx(3.5, abs=0.02)
    assert r30.steps > r35.steps
    assert reach(p, 0.4, p.base.stretched).metric == "accuracy"
    assert r35.message.startswith("reaches a loss of 3.5 with a run of")


def test_loss_floor_above_target_is_not_reachable():
    from zhbert.analysis.forecast import plan
    from zhbert.analysis.planning import reach
    p = plan([DATA / "tiny-2000"], n_boot=0)
    r = reach(p, 1e-6, p.base.stretched, "loss")
    assert not r.reachable


# --------------------------------------------------------------- 3. a straight line is no forecast

SEED = Path("/work/shared/reference/seed_training_history_100k.json")  # read only


def _cut(h, until):
    from dataclasses import replace
    return replace(h, series={k: s.select(s.step <= until) for k, s in h.series.items()})


def test_straight_line_answer_is_warned_about_in_predict_and_analyze():
    """tiny-2000's held-out points up to step 1,000 pick the line by AIC: its answer for 0.35,
    at step 1,642 (more than one span of its points past the last), came without a word (the
    run reached 0.35 only at its end, 31.7% at 2,000 steps: never). Just past the points a line
    answers well (0.3 at 1,373; the run reached it at 1,550; hf-tiny-bert cut at 1,000: 0.118 at
    1,091, measured 0.1205 at 1,100): no warning there (a review)."""
    from zhbert.analysis.predict import predict_steps
    from zhbert.analysis.predict_command import prediction_text
    h = _cut(load_history(DATA / "tiny-2000"), 1000)
    p = predict_steps(h, 0.35, n_boot=0)
    assert p.model == "linear" and p.reachable
    assert "straight line through a learning curve's start is no forecast" in p.warning
    assert "warning: the fit is a straight line" in prediction_text(p, h)
    assert p.to_json()["warning"] == p.warning
    a = analyze(h, target=0.35, n_boot=0)
    assert a.prediction.warning == p.warning
    near = predict_steps(h, 0.3, n_boot=0)
    assert near.model == "linear" and near.warning is None
    assert predict_steps(_cut(load_history(HF), 1000), 0.118, n_boot=0).warning is None


def test_answer_far_past_the_points_is_warned_about():
    from zhbert.analysis.predict import predict_steps
    h = _cut(load_history(DATA / "tiny-2000", "mlm_acc"), 560)  # 15 points after the switch
    p = predict_steps(h, 0.6, metric="mlm_acc", n_boot=0)
    assert p.model != "linear" and p.reachable
    assert "extrapolated far past its points" in p.warning


@pytest.mark.skipif(not SEED.exists(), reason="the seed's history is not here")
@pytest.mark.parametrize("until,target", [(20_000, 0.5), (50_000, 0.55), (None, 0.5)])
def test_good_answers_carry_no_straight_line_warning(until, target):
    from zhbert.analysis.predict import predict_steps
    h = load_history(SEED)
    p = predict_steps(h if until is None else _cut(h, until), target, n_boot=0)
    assert p.reachable and p.warning is None


def test_tiny_4000_answer_carries_no_straight_line_warning():
    from zhbert.analysis.predict import predict_steps
    p = predict_steps(load_history(DATA / "tiny-4000"), 0.4, n_boot=0)
    assert p.reachable and p.warning is None


# --------------------------------------------------------------- 4. a phase change a file omits

def _as_csv(tmp_path):
    """tiny-2000's held-out history as a CSV (no config: no length warm-up recorded)."""
    import numpy as np
    h = load_history(DATA / "tiny-2000")
    lr, loss, acc = h.series["lr"], h.series["eval_mlm_loss"], h.series["eval_mlm_acc"]
    rows = ["step,learning_rate,eval_loss,eval_accuracy"]
    rows += [f"{s},{float(np.interp(s, lr.step, lr.y))!r},{float(l)!r},{float(a)!r}"
             for s, l, a in zip(loss.step.astype(int), loss.y, acc.y)]
    path = tmp_path / "t2000.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_foreign_history_fitted_across_a_phase_change_says_so(tmp_path, capsys):
    """The CSV forecast 49.3% with residual sd 0.588 where the run folder said 41.1% (sd
    0.109), silently: the fit began inside the short-sequence phase the CSV does not record."""
    out = _predict(capsys, _as_csv(tmp_path), "--steps", 4000, "--n-boot", 0)
    assert "the fit may span a phase change the file does not record" in out
    assert "drop the rows before the change" in out


@pytest.mark.parametrize("source", [HF, DATA / "hf-small-bert", SEED])  # foreign: a zhbert run is never judged
def test_phase_change_note_stays_quiet_on_good_fits(source, capsys):
    if not Path(source).exists():
        pytest.skip("not here")
    out = _predict(capsys, source, "--steps", 4000, "--n-boot", 0)
    assert "phase change" not in out


def test_the_accuracy_chart_draws_a_trainers_held_out_accuracy():
    """analyze forecast a Trainer's eval_accuracy, while its accuracy chart said "no MLM
    accuracy recorded" (metrics.HELD_OUT_ACC: one list for both)."""
    import matplotlib
    matplotlib.use("Agg")
    from zhbert.analysis import load_history
    from zhbert.plots import plot_accuracy
    ax = plot_accuracy(load_history(Path(__file__).parent / "data" / "hf-tiny-bert" / "trainer_state.json"))
    assert [t.get_text() for t in ax.texts] == [] and ax.get_legend_handles_labels()[1] == ["held-out"]


def test_a_foreign_run_beside_another_is_judged_by_its_own_fit(capsys):
    """hf-small-bert fitted beside tiny-2000 read "31x the noise ... may span a phase change":
    the joint fit's residuals measured how the two runs disagree, not the file (1.0x alone;
    a review)."""
    out = _predict(capsys, DATA / "tiny-2000", DATA / "hf-small-bert", "--steps", 4000, "--n-boot", 0)
    assert "phase change" not in out and "disagree" in out


def test_a_run_beside_its_own_csv_export_is_one_run(tmp_path, capsys):
    """The equal-loss test ran only when neither history had a header: tiny-2000 beside its CSV
    export was fitted twice (a review)."""
    assert main(["predict", str(DATA / "tiny-2000"), str(_as_csv(tmp_path)), "--steps", "4000",
                 "--n-boot", "0"]) == 2
    assert "are one run (the same loss at all" in capsys.readouterr().err


def test_a_run_branched_from_anothers_checkpoint_is_not_a_copy(tmp_path, capsys):
    """A Trainer run branched at step 1,000 shares its first evals with the run it came from
    and evaluates at its own steps after: "one run (the same loss at all 10 eval steps they
    share)" refused it (a review). A snapshot's steps are all among the later state's."""
    d = json.loads(HF.read_text())
    logs = [e for e in d["log_history"] if e["step"] <= 1000]
    for e in d["log_history"]:
        if e["step"] > 1000:
            e = {**e, "step": e["step"] + 50}
            for k in ("loss", "eval_loss"):
                if k in e:
                    e[k] = e[k] * 0.97
            logs.append(e)
    (tmp_path / "branch").mkdir()
    (tmp_path / "branch" / "trainer_state.json").write_text(json.dumps({**d, "log_history": logs}))
    out = _predict(capsys, HF, tmp_path / "branch", "--steps", 3000, "--n-boot", 0)
    assert "final accuracy" in out


def test_the_phase_change_note_is_the_planners_own(tmp_path):
    """It was added by predict and analyze's outlook only, so compare, backtest and the sweep's
    forecasts of the same history never carried it (a review): plan() notes it now."""
    from zhbert.analysis.forecast import plan
    assert any("phase change the file does not record" in n for n in plan([_as_csv(tmp_path)], n_boot=0).notes)


def test_a_loss_forecast_takes_the_refits_where_plan_has_some():
    """Planner.loss took the delta band whatever --n-boot said: far past one short run that
    band read 0.000-6.644 at 7,635 steps of tiny-2000, where the refits read 2.7-4.2."""
    from zhbert.analysis.forecast import plan
    boot, delta = plan([DATA / "tiny-2000"], n_boot=40), plan([DATA / "tiny-2000"], n_boot=0)
    n = 7_635
    fb, fd = (p.loss(p.base.stretched(n), [n]) for p in (boot, delta))
    assert "40 bootstrap refits" in fb.method and "delta method" in fd.method
    assert fb.mean == pytest.approx(fd.mean)          # one centre: the point fits
    assert 0.5 < fb.lo80 < fb.mean < fb.hi80 < 8.0 and fb.lo95 <= fb.lo80
    # the expected loss (reach's) is narrower than a single eval's, noise and all
    quiet = boot.loss(boot.base.stretched(n), [n], noise=False)
    assert quiet.hi80 - quiet.lo80 < fb.hi80 - fb.lo80


def test_a_loss_target_past_the_climb_is_warned_about_by_the_accuracy_it_maps_to(capsys):
    """A loss target was never set beside the best accuracy measured: tiny-2000 (31.7% at
    best) reached a loss of 2.5 without a word, which the map reads as 58.7%."""
    out = _predict(capsys, DATA / "tiny-2000", "--target", 2.5, "--metric", "eval_mlm_loss", "--n-boot", 0)
    assert "reaches a loss of 2.5" in out
    assert "warning: the accuracy a loss of 2.5 maps to (" in out and "lower estimate" in out


def test_analyze_answers_a_loss_target_by_the_law():
    """`analyze --metric eval_mlm_loss --target 2.5` answered from the curve families only
    ("asymptote 3.812 is above the target") where predict's law reaches it."""
    a = analyze(load_history(DATA / "tiny-2000", "eval_mlm_loss"), target=2.5, n_boot=0)
    assert a.outlook is not None and a.outlook.reach.metric == "loss" and a.outlook.reach.reachable
    assert "reaches a loss of 2.5" in a.outlook.summary()
    # the training batches' loss is no loss the law is fitted to: said, not answered
    b = analyze(load_history(DATA / "tiny-2000", "loss"), target=2.5, n_boot=0)
    assert b.outlook is None
    assert any("fitted to eval_mlm_loss, not loss" in why for w, why in b.not_computed)


def test_a_target_not_reached_from_a_stalled_run_is_warned_about(capsys):
    """From tiny-1000, which never left its plateau, an accuracy target "not reached" said
    nothing of it (the plateau warnings read only answers reached), though the law extends
    the plateau that a longer run left (tiny-2000: 31.7%)."""
    out = _predict(capsys, DATA / "tiny-1000", "--target", 0.6, "--n-boot", 0)
    assert "not reached within" in out and "no fitted run has left its plateau" in out


def test_analyze_answers_no_training_batch_target_by_the_held_out_law():
    """`analyze --metric mlm_acc --target 0.35` answered with the law of eval_mlm_acc (the
    held-out accuracy), where predict refuses: the training batches' accuracy is no target
    the law forecasts."""
    a = analyze(load_history(DATA / "tiny-2000", "mlm_acc"), target=0.35, n_boot=0)
    assert a.outlook is None
    assert any("the law forecasts eval_mlm_acc, not mlm_acc" in why for w, why in a.not_computed)


def test_a_curve_answer_without_refits_names_no_interval(capsys):
    """--n-boot 0 printed "reaches 0.35 at step 2,902 (80%: 2,902 to 2,902; 95%: 2,902 to
    2,902)": no refits, no interval, and none is printed."""
    out = _predict(capsys, DATA / "tiny-2000", "--metric", "mlm_acc", "--target", 0.35, "--n-boot", 0,
                   "--law", "none")
    assert "(no interval without refits), exp fit" in out and "80%" not in out
    assert "80%: " in _predict(capsys, DATA / "tiny-2000", "--metric", "mlm_acc", "--target", 0.35,
                               "--n-boot", 20, "--law", "none")
