"""A run stopped, edited or cut, and what train and --resume say of it (from a newcomer's
and a fault-injection tester's passes): the next command to run, an edited config.json
named, a history gap told, --force clearing what the old run left."""

from test_train import SMALL
from zhbert.cli import main as cli_main


def test_a_run_stopped_early_is_told_to_resume_first(synthetic_data, tmp_path, capsys):
    """A run stopped by a signal at step 121 of 500 ended on "Next: zhbert status RUN;
    zhbert analyze RUN", as a finished one does: its next step is its resume."""
    from zhbert.config import load_config
    from zhbert.train import summary_line
    from zhbert.trainloop import Progress
    sets = sum((["--set", s] for s in SMALL + ["train.steps=3"]), [])
    run = tmp_path / "my run"
    assert cli_main(["train", "--data", str(synthetic_data), "--no-progress", "--out", str(run)] + sets) == 0
    capsys.readouterr()
    cfg = load_config(str(run / "config.json"), ["train.steps=500"])
    line = summary_line(run, cfg, Progress(step=121, tokens=1000, elapsed=60.0), str(synthetic_data))
    assert line.endswith(f". Next: zhbert train --data {synthetic_data} --out '{run}' --resume"), line
    done = summary_line(run, load_config(str(run / "config.json")), Progress(step=3, tokens=10, elapsed=1.0))
    assert done.endswith(f"Next: zhbert status {run}; zhbert analyze {run}")


def test_a_resume_of_a_run_whose_config_json_was_edited_names_the_edit(synthetic_data, tmp_path, capsys):
    """train.steps 60 -> 90 edited into config.json: --resume read it, refused every
    checkpoint as "another config" and advised moving them aside, which restarted the run at
    step 0. The edit is named, against the history's first header, and nothing is touched."""
    import json
    sets = sum((["--set", s] for s in SMALL + ["train.steps=4", "train.checkpoint_every=2"]), [])
    run = tmp_path / "run"
    base = ["train", "--data", str(synthetic_data), "--no-progress", "--out", str(run)]
    assert cli_main(base + sets) == 0
    capsys.readouterr()
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["train"]["steps"] = 9
    (run / "config.json").write_text(json.dumps(cfg))
    before = (run / "history.jsonl").read_text()
    assert cli_main(base + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'} was edited after the run started (train.steps: 4 -> 9)" in err
    assert (run / "history.jsonl").read_text() == before and "Traceback" not in err


def test_a_resume_past_a_cut_history_says_it_leaves_a_gap(synthetic_data, tmp_path, capsys):
    """A history cut to its first records before a resume from a later checkpoint: "0
    history records after it dropped", and a gap in the history for good, without a word."""
    import json
    sets = sum((["--set", s] for s in SMALL + ["train.steps=6", "train.checkpoint_every=6",
                                                "train.log_every=1"]), [])
    run = tmp_path / "run"
    base = ["train", "--data", str(synthetic_data), "--no-progress", "--out", str(run)]
    assert cli_main(base + sets) == 0
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    (run / "history.jsonl").write_text("".join(ln for ln in lines if json.loads(ln).get("step", 0) <= 2))
    capsys.readouterr()
    assert cli_main(base + ["--resume"]) == 0
    assert "ends at step 2, yet the run was checkpointed at step 6" in capsys.readouterr().err


def test_force_clears_an_edited_run_and_the_history_copies_of_resumes(synthetic_data, tmp_path, capsys):
    """--force on a run whose config.json was edited was refused by the edit check, which is
    a resume's; and the history copies a resume kept (history.jsonl.dropped-*) stayed beside
    the new run."""
    import json
    sets = sum((["--set", s] for s in SMALL + ["train.steps=4", "train.checkpoint_every=2"]), [])
    run = tmp_path / "run"
    base = ["train", "--data", str(synthetic_data), "--no-progress", "--out", str(run)]
    assert cli_main(base + sets) == 0
    (run / "history.jsonl.dropped-20260101T000000Z").write_text("{}\n")
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["train"]["steps"] = 9
    (run / "config.json").write_text(json.dumps(cfg))
    assert cli_main(base + sets + ["--force"]) == 0
    assert not list(run.glob("history.jsonl.*")), capsys.readouterr().err
