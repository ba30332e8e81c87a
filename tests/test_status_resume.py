"""What `zhbert status` advises for a stopped run: --resume only where `zhbert train
--resume` takes the run, and an ETA only for a run that is running."""

import json
import os
import socket

from test_reliability_training import _train_args
from test_status_states import _forecast_pruned, _trial
from zhbert.cli import main
from zhbert.runlock import WriterLock, lock_path
from zhbert.runstate import STOPPED, collect


def test_status_of_a_run_without_config_json_says_resume_refuses_it(tmp_path, synthetic_data, capsys):
    """`mkdir g1; : > g1/history.jsonl; zhbert status g1` said `[stopped (continue with
    --resume)]`, and `zhbert train --resume` exited 2: config.json is missing."""
    run = tmp_path / "g1"
    run.mkdir()
    (run / "history.jsonl").write_bytes(b"")
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "continue with --resume" not in out and "[stopped, and `zhbert train --resume` refuses it: " in out
    assert main(_train_args(synthetic_data, run) + ["--resume"]) == 2
    refusal = capsys.readouterr().err.strip().removeprefix("zhbert: error: --resume: ")
    assert "config.json is missing" in refusal and refusal in out  # train's own words
    state = collect(run)["state"]  # the dashboard's and --json's too
    assert state.startswith("stopped") and state.endswith(": " + refusal)
    (run / "config.json").write_text(json.dumps({"config": {"train": {"steps": 100}}}))
    assert collect(run)["state"] == STOPPED  # train takes it: --resume it is


def test_eta_is_shown_for_a_running_run_only(tmp_path, capsys):
    """A sweep's pruned trial showed `ETA 0.6 min`, and so did a stopped run."""
    trial = _trial(tmp_path, _forecast_pruned())  # step 200 of 400, 0.1 s a step
    (trial / "config.json").write_text(json.dumps({"config": {"train": {"steps": 400}}}))
    assert main(["status", str(trial)]) == 0
    out = capsys.readouterr().out
    assert "[pruned by the sweep" in out and "tokens/s" in out and "ETA" not in out
    (trial / "pruned.json").unlink()
    assert main(["status", str(trial)]) == 0
    out = capsys.readouterr().out
    assert f"[{STOPPED}]" in out and "ETA" not in out
    (trial / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with WriterLock(lock_path(trial / "train"), "zhbert train"):  # its trainer: this process
        assert main(["status", str(trial)]) == 0
    out = capsys.readouterr().out
    assert "[running]" in out and "ETA 0.3 min" in out
