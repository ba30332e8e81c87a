"""`zhbert train --minutes`: the steps that fit a time budget, chosen from measured costs."""

import json
from pathlib import Path

import pytest

from zhbert import budget
from zhbert.budget import StepCosts, steps_within
from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert.history import iter_records

SMALL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
         "model.intermediate_size=128", "data.max_len=64", "data.eval_sequences=64",
         "train.batch_size=8", "train.lr=2e-3", "train.warmup_steps=5", "train.precision=fp32"]
WARMUP = ["data.warmup_len=16", "data.warmup_len_fraction=0.5"]
TIMING = {"elapsed", "tokens_per_s", "data_wait"}


def test_predicted_seconds_count_each_length_and_the_evaluations():
    cfg = load_config("tiny", SMALL + WARMUP + ["train.eval_every=100",
                                                "train.checkpoint_every=500"])
    costs = StepCosts({16: 0.1, 64: 0.3}, eval_s=2.0, checkpoint_s=4.0)
    # 1,000 steps: 500 at length 16, 500 at 64, 10 evaluations, 2 checkpoints
    assert costs.seconds(cfg, 1000) == pytest.approx(500 * 0.1 + 500 * 0.3 + 10 * 2.0 + 2 * 4.0)
    # 1,050 steps: 525 + 525, and an 11th evaluation and a 3rd checkpoint at the end
    assert costs.seconds(cfg, 1050) == pytest.approx(525 * 0.1 + 525 * 0.3 + 11 * 2.0 + 3 * 4.0)
    plain = load_config("tiny", SMALL + ["data.warmup_len=0", "train.eval_every=100"])
    assert StepCosts({64: 0.3}, 0.0).seconds(plain, 1000) == pytest.approx(300.0)


def test_steps_within_is_the_last_count_that_fits():
    cfg = load_config("tiny", SMALL + WARMUP + ["train.eval_every=50"])
    costs = StepCosts({16: 0.05, 64: 0.2}, eval_s=1.5)
    for seconds in (30.0, 61.0, 240.0, 1000.0):
        n = steps_within(seconds, cfg, costs)
        assert costs.seconds(cfg, n) <= seconds < costs.seconds(cfg, n + 1)


def test_a_budget_inside_the_lr_warmup_is_refused_with_the_measured_costs():
    cfg = load_config("tiny", SMALL + ["data.warmup_len=0", "train.warmup_steps=100"])
    with pytest.raises(UserError, match=r"fits \d+ steps here \(0\.500 s a step at length 64.*"
                                        r"train\.warmup_steps"):
        steps_within(30.0, cfg, StepCosts({64: 0.5}, 0.0))


def test_a_budget_mostly_inside_the_lr_warmup_is_warned_about():
    """`--minutes 1` on `tiny` chose 107 steps, 100 of them warm-up, without a word: the lr
    then fell to 0 in 7 steps. budgeted prints this once, for the steps the ranks agreed."""
    from zhbert.budget import warmup_warning
    cfg = load_config("tiny", SMALL + ["data.warmup_len=0", "train.warmup_steps=100"])
    costs = StepCosts({64: 0.5}, 0.0)
    assert steps_within(75.0, cfg, costs) == 150
    said = warmup_warning(cfg, 150, 1.25, costs)
    assert "fits 150 steps, 100 of them the lr warm-up" in said and "50 steps of cosine" in said
    assert warmup_warning(cfg, 200, 1.25, costs) is None


def _train(data, run, *args):
    return cli_main(["train", "--data", str(data), "--out", str(run), "--config", "tiny",
                     "--no-progress", "--threads", "1",
                     *[a for s in SMALL + WARMUP for a in ("--set", s)], *args])


def _records(run):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in iter_records(Path(run) / "history.jsonl") if r["type"] in ("train", "eval")]


def test_minutes_sets_the_steps_and_trains_as_that_many_steps_would(synthetic_data, tmp_path,
                                                                     monkeypatch, capsys):
    # the timing itself is the machine's: fixed here, so that the choice is known
    monkeypatch.setattr(budget, "step_seconds", lambda step: [step(i) for i in (1, 2)] and 0.5)
    assert _train(synthetic_data, tmp_path / "a", "--minutes", "0.2",
                  "--set", "train.eval_every=10") == 0
    err = capsys.readouterr().err
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["config"]["train"]
    # 12 s at 0.5 s a step, less the evaluations' measured time
    assert 5 < saved["steps"] <= 24 and f"train.steps = {saved['steps']}" in err
    assert "0.500 s a step at length 16, 0.500 s at 64" in err and "s a checkpoint" in err
    assert "slower than measured" not in err  # it ran well inside its minutes
    # the timing steps ran on a throwaway model and rewound the loaders: the run is the one
    # that --set train.steps gives, bit for bit
    assert _train(synthetic_data, tmp_path / "b", "--set", f"train.steps={saved['steps']}",
                  "--set", "train.eval_every=10") == 0
    assert _records(tmp_path / "a") == _records(tmp_path / "b")


@pytest.mark.parametrize("args, says", [
    (["--minutes", "0"], "above 0 and at most 100,000"),
    (["--minutes", "nan"], "above 0 and at most 100,000"),
    (["--minutes", "inf"], "above 0 and at most 100,000"),
    (["--minutes", "1", "--set", "train.steps=50"], "give one of --minutes and --set train.steps"),
    (["--minutes", "1", "--resume"], "a resumed run keeps its own"),
    (["--minutes", "1e9"], "above 0 and at most 100,000"),
])
def test_minutes_refuses_what_it_cannot_mean(synthetic_data, tmp_path, capsys, args, says):
    assert _train(synthetic_data, tmp_path / "run", *args) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run" / "history.jsonl").exists()


def test_minutes_into_an_existing_run_is_refused_before_any_timing(synthetic_data, tmp_path,
                                                                   monkeypatch, capsys):
    """Repeating a --minutes command (after Ctrl-C, say) timed steps, chose another count,
    and then called the run "other settings" and pointed at --force, which deletes it."""
    monkeypatch.setattr(budget, "step_seconds", lambda step: [step(i) for i in (1, 2)] and 0.5)
    assert _train(synthetic_data, tmp_path / "run", "--minutes", "0.1") == 0
    capsys.readouterr()
    timed = []
    monkeypatch.setattr(budget, "measure", lambda *a: timed.append(a))
    assert _train(synthetic_data, tmp_path / "run", "--minutes", "0.1") == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume without --minutes" in err
    assert timed == []  # refused before timing anything
    # refused before its settings are read: it printed "resuming with the settings in ..." first
    assert cli_main(["train", "--data", str(synthetic_data), "--out", str(tmp_path / "run"),
                     "--minutes", "0.1", "--resume"]) == 2  # no --config: the run's own is read
    err = capsys.readouterr().err
    assert "a resumed run keeps its own" in err and "resuming with" not in err


def test_a_run_far_past_its_minutes_is_told_why():
    """A demo trained 4.0 minutes of its 3.5 (its steps ran slower than measured at the
    start) and said nothing; past 10% it says so, and why it could be."""
    note = budget.budget_note(3.5, 240.0)
    assert note.startswith("zhbert: note: the run trained 4.00 minutes of the 3.5 asked: its steps "
                           "ran 14% slower than measured at its start")
    assert budget.budget_note(3.5, 225.0) is None  # within 10%
    # a small budget: "0.4 minutes of the 0.4 asked: 12% slower" read as a contradiction
    assert "trained 0.45 minutes of the 0.4 asked: its steps ran 12% slower" in budget.budget_note(0.4, 26.9)
    assert "trained 35.0 minutes of the 30 asked" in budget.budget_note(30, 2100.0)


def test_a_run_far_short_of_its_minutes_is_told_too():
    """A tester's demo trained 2.4 minutes of its 3.25 (its steps timed on a busier machine)
    without a word, where the README says a budget holds to about 10%."""
    note = budget.budget_note(3.25, 144.0)
    assert note.startswith("zhbert: note: the run trained 2.40 minutes of the 3.25 asked: its "
                           "steps ran 35% faster than measured at its start")
    assert budget.budget_note(3.25, 180.0) is None  # within 10%
