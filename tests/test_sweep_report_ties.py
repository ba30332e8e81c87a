"""A sweep report over trials that tied: three trials that never left their lr warm-up
ended at one value, and the report still named a "Best" and printed importances of 0.1667
each without a word of the tie."""

import json

import optuna

from test_monitor import write_run
from test_sweep import SPACE, _args, _space, _study
from zhbert.cli import main as cli_main
from zhbert.sweep import command
from zhbert.sweep.worker import claim


def _sweep(tmp_path, data, values, steps=4, text=SPACE):
    """A sweep (no training) whose trials completed at ``values``."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path, text), data, tmp_path / "s",
                                            trials=len(values), steps=steps))
    _, study = _study(sweep_dir)
    for n, v in enumerate(values):
        trial = claim(study, spec, sweep_dir)
        trial.set_user_attr("trial_dir", f"trials/{n:04d}")
        write_run(sweep_dir / "trials" / f"{n:04d}", n=2, total=4)
        trial.report(v, 1)
        study.tell(trial, v, state=optuna.trial.TrialState.COMPLETE)
    return sweep_dir


def test_a_report_whose_trials_all_tied_says_so_and_shows_no_importances(tmp_path, synthetic_data, capsys):
    text = SPACE.replace("warmup_steps = 2\n", "warmup_steps = 4\n")  # = the steps: never left
    sweep_dir = _sweep(tmp_path, synthetic_data, [0.0607] * 3, text=text)
    capsys.readouterr()
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "but all 3 complete trials ended at 0.0607: the space made no difference at these steps" in out
    assert "the likely cause: train.warmup_steps = 4 (the space's) >= train.steps 4" in out
    rep = json.loads((sweep_dir / "report" / "sweep_report.json").read_text())
    assert rep["importances"] == {} and rep["importance_note"].startswith("uninformative")
    md = (sweep_dir / "report" / "report.md").read_text()
    assert "**Tie:** all 3 complete trials ended at 0.0607" in md
    assert "Not shown: uninformative: all 3 complete trials ended at the same value" in md
    assert "| parameter | importance |" not in md and "importances.png" not in md


def test_a_report_names_the_trials_tied_with_the_best(tmp_path, synthetic_data, capsys):
    sweep_dir = _sweep(tmp_path, synthetic_data, [0.2, 0.1, 0.2])
    capsys.readouterr()
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "best: trials/0000" in out and "trials/0000 tied with trials/0002 at 0.2000" in out
    rep = json.loads((sweep_dir / "report" / "sweep_report.json").read_text())
    assert not rep["importance_note"].startswith("uninformative")
    assert "all 3" not in rep["tie_note"]


def test_a_report_without_a_tie_says_nothing_of_one(tmp_path, synthetic_data, capsys):
    sweep_dir = _sweep(tmp_path, synthetic_data, [0.2, 0.1, 0.3])
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    assert "tied" not in capsys.readouterr().out
    assert "**Tie:**" not in (sweep_dir / "report" / "report.md").read_text()
