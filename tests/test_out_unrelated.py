"""`zhbert train --out DIR` refuses a DIR of unrelated files (someone's notes and photos): the
run was written beside them, where a later --force or checkpoint retention works. An empty
folder, a run's own, a sweep trial's (train.log before its trainer starts) and hidden files
(.DS_Store) are still taken (rundir.unrelated_files)."""

import json

import pytest

from cli_helpers import refused
from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert import rundir

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "data.max_len=32", "data.eval_sequences=16",
        "data.warmup_len=0", "train.batch_size=4", "train.steps=2", "train.warmup_steps=1",
        "train.eval_every=2", "train.checkpoint_every=2", "train.precision=fp32",
        "train.device=cpu"]


def _train(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--no-progress", "--threads", "1",
            *sum((["--set", s] for s in TINY), []), *extra]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _someones_folder(tmp_path):
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "notes.txt").write_text("keep me")
    (home / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    return home


@pytest.mark.parametrize("extra", [[], ["--force"], ["--resume"]])
def test_a_folder_of_unrelated_files_is_refused_in_one_line(synthetic_data, tmp_path, capsys, extra):
    home = _someones_folder(tmp_path)
    before = _tree(home)
    err = refused(_train(synthetic_data, home, *extra), capsys)
    assert f"--out {home} holds files that are not a zhbert run's (notes.txt, photos)" in err
    assert "choose an empty or new folder" in err and "the run's own folder to resume" in err
    assert _tree(home) == before  # no config.json, no lock, nothing written beside them


def test_the_rule_takes_empty_run_sweep_and_data_folders(tmp_path):
    assert rundir.unrelated_files(tmp_path / "missing") == []
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\0")  # a file manager's, not the user's
    assert rundir.unrelated_files(empty) == []
    trial = tmp_path / "trial"  # what the sweep writes before the trial's trainer starts
    trial.mkdir()
    (trial / "train.log").write_text("")
    assert rundir.unrelated_files(trial) == []
    (trial / "pruned.json").write_text("{}")
    assert rundir.unrelated_files(trial) == []
    (trial / "notes.txt").write_text("x")
    assert rundir.unrelated_files(trial) == ["notes.txt", "pruned.json", "train.log"]
    run = tmp_path / "run"  # a run's own folder, whatever else its owner keeps there
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "config_hash": "x"}))
    (run / "notes.txt").write_text("x")
    assert rundir.unrelated_files(run) == []
    lost = tmp_path / "lost"  # a run that lost its config.json: its own, clearer refusal
    lost.mkdir()
    (lost / "history.jsonl").write_text("")
    (lost / "notes.txt").write_text("x")
    assert rundir.unrelated_files(lost) == []
    model = tmp_path / "model"  # another program's config.json is no run's
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    assert rundir.unrelated_files(model) == ["config.json"]
    with pytest.raises(UserError, match="holds files that are not a zhbert run's"):
        rundir.check_run_folder(model)


def test_train_main_refuses_it_too(tmp_path):
    """build_trainer's path (train.main, used without the CLI) meets the same rule."""
    home = _someones_folder(tmp_path)
    with pytest.raises(UserError, match="not a zhbert run's"):
        rundir.prepare_run_dir(home, load_config("tiny", TINY), {}, resume=False, force=False)
    assert not (home / "config.json").exists()


def test_hidden_files_and_a_sweep_trials_log_do_not_stop_a_run(synthetic_data, tmp_path, capsys):
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "train.log").write_text("sweep: started\n")
    (trial / ".DS_Store").write_bytes(b"\0")
    assert cli_main(_train(synthetic_data, trial)) == 0
    assert (trial / "history.jsonl").exists()
    assert (trial / "train.log").read_text() == "sweep: started\n"
    assert cli_main(_train(synthetic_data, trial, "--force")) == 0  # its own run now
