"""Where a run stands when its directory is unusual: a sweep trial the sweep pruned, and a
history that is empty or garbage. `zhbert status` and the dashboard say it the same way
(both ask zhbert.runstate)."""

import json
import os
import random
import socket

from starlette.testclient import TestClient

from test_monitor import write_run
from zhbert.cli import main
from zhbert.monitor.server import create_app
from zhbert.runstate import collect
from zhbert.sweep.pruner import Decision

REASON = "forecast eval_mlm_acc at step 800: 0.3100 (80%: 0.2900 to 0.3300); best finished 0.5500"


def _trial(tmp_path, pruned: dict | str | None):
    """runs/sw/trials/0001, stopped at step 200 of 800, with its pruned.json."""
    sweep = tmp_path / "runs" / "sw"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"objective": "acc"}))
    trial = write_run(sweep / "trials" / "0001", n=20)
    if pruned is not None:
        text = pruned if isinstance(pruned, str) else json.dumps(pruned)
        (trial / "pruned.json").write_text(text)
    return trial


def _forecast_pruned() -> dict:
    """pruned.json as zhbert.sweep.worker._record_prune writes it for a ForecastPruner."""
    return {"pruner": "ForecastPruner", "step": 150, "value": 0.2} | Decision(True, REASON, 0.55).to_json()


def test_status_of_a_pruned_trial_says_pruned_when_and_why(tmp_path, capsys):
    """It said `[stopped (continue with --resume)]`."""
    trial = _trial(tmp_path, _forecast_pruned())
    state = collect(trial)["state"]
    assert state == f"pruned by the sweep at step 150: {REASON}"
    assert main(["status", str(trial)]) == 0
    out = capsys.readouterr().out
    assert f"[pruned by the sweep at step 150: {REASON}]" in out and "--resume" not in out
    # the dashboard: the same state, from the same code
    runs = TestClient(create_app([tmp_path / "runs"])).get("/api/runs").json()["runs"]
    (row,) = runs
    assert row["state"] == state and row["pruned"] is True


def test_a_pruned_trial_without_a_reason_or_with_a_corrupt_file_is_still_pruned(tmp_path):
    trial = _trial(tmp_path, {"pruner": "MedianPruner", "step": 150, "value": 0.2})
    assert collect(trial)["state"] == "pruned by the sweep at step 150: MedianPruner, value 0.2"
    (trial / "pruned.json").write_text('{"pruner": "Med')  # torn
    assert collect(trial)["state"] == "pruned by the sweep"


def test_a_pruned_trial_that_runs_again_or_finished_says_so(tmp_path):
    trial = _trial(tmp_path, _forecast_pruned())
    (trial / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    from zhbert.runlock import WriterLock, lock_path
    with WriterLock(lock_path(trial / "train"), "zhbert train"):  # its trainer: this process
        assert collect(trial)["state"] == "running"
    (trial / "running.json").unlink()
    with open(trial / "history.jsonl", "a") as f:  # resumed by hand to its last step (400)
        f.write(json.dumps({"type": "train", "step": 400, "loss": 3.0}) + "\n")
    assert collect(trial)["state"] == "finished"  # no checkpoint at all: its history says
    (trial / "checkpoints" / "step_00000100").mkdir(parents=True)
    assert collect(trial)["state"] != "finished"  # --resume would retrain from step 100
    (trial / "checkpoints" / "step_00000400").mkdir(parents=True)
    assert collect(trial)["state"] == "finished"
    other = _trial(tmp_path / "other", None)
    (other / "config.json").write_text("{}")  # train wrote it: --resume takes the run
    assert collect(other)["state"] == "stopped (continue with --resume)"


def _empty_run(tmp_path, checkpoint: int | None, steps: int | None):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_bytes(b"")
    if checkpoint is not None:
        (run / "checkpoints" / f"step_{checkpoint:08d}").mkdir(parents=True)
    if steps is not None:
        (run / "config.json").write_text(json.dumps({"config": {"train": {"steps": steps}}}))
    return run


def test_status_of_an_empty_history_says_so_and_goes_by_the_checkpoints(tmp_path, capsys):
    """It printed `step 300 / 0` and `precision None on None`, rc 0."""
    run = _empty_run(tmp_path, checkpoint=300, steps=1000)
    s = collect(run)
    assert s["step"] == 300 and s["total_steps"] == 1000 and s["last_checkpoint"] == 300
    assert "is empty (0 bytes)" in s["history_note"] and "last checkpoint is step 300" in s["history_note"]
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "history    " in out and "is empty (0 bytes)" in out and "step       300 / 1,000 (30.0%)" in out
    assert "None" not in out and "/ 0" not in out
    row = TestClient(create_app([run])).get("/api/runs").json()["runs"][0]
    assert "is empty" in row["history_note"] and row["step"] == 300


def test_status_of_an_empty_history_without_checkpoints_or_config(tmp_path, capsys):
    run = _empty_run(tmp_path, checkpoint=None, steps=None)
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "is empty (0 bytes)" in out and "no checkpoint either" in out
    assert "step       0 (total steps unknown)" in out and "None" not in out and "/ 0" not in out


def test_a_history_without_its_header_prints_no_none(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text(json.dumps({"type": "train", "step": 5, "loss": 3.0}) + "\n")
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "precision  - on -" in out and "(total steps unknown)" in out


def test_a_garbage_history_is_one_warning_not_one_per_line(tmp_path, capsys):
    run = _empty_run(tmp_path, checkpoint=30, steps=30)
    rng = random.Random(0)
    lines = [bytes(rng.randrange(11, 256) for _ in range(50)) for _ in range(400)]  # no b"\n" (10)
    (run / "history.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert main(["status", str(run)]) == 0
    cap = capsys.readouterr()
    warnings = cap.err.splitlines()
    assert len(warnings) == 1 and "skipped 400 corrupt lines" in warnings[0] and "lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ..." in warnings[0]
    assert "has no readable record (only 400 corrupt lines)" in cap.out and "None" not in cap.out
    assert "step       30 / 30" in cap.out  # from the checkpoint and config.json
    # not finished: that (empty) final checkpoint does not verify, --resume would retrain
    assert "[stopped (continue with --resume)]" in cap.out and "checkpoint 30 is corrupt" in cap.out
    # the dashboard follows the file: one warning per read, too (in its own process: a
    # warning already said in this one is not said again, history.warn_stderr)
    from zhbert import history
    history._SAID.clear()
    TestClient(create_app([run])).get("/api/runs")
    assert len(capsys.readouterr().err.splitlines()) == 1


def _starving_train(n: int = 20) -> list[dict]:
    """Train records at 10,000 tokens/s, the last few at 2,000: starved."""
    return [{"type": "train", "step": 10 * i, "tokens_per_s": 10000.0 if i <= n - 5 else 2000.0}
            for i in range(1, n + 1)]


def test_a_starved_1_thread_run_is_not_told_to_take_more_threads():
    """A 1-thread run on a loaded 2-core machine was told "continue it with fewer threads:
    zhbert train ... --resume --threads 2" (the share, blind to the run's own count)."""
    from zhbert.runstate import Competition, starvation
    header = {"machine": "AMD EPYC (AVX512; avx512_bf16) · 1 thread · torch 2.13.0"}
    advice = starvation(_starving_train(), header, Competition(load=5.0, cores=2, other_trainings=0)).advice()
    assert "--threads" not in advice and "continue it with --resume once the load is gone" in advice


def test_a_starved_run_with_more_threads_than_its_share_is_told_its_share():
    from zhbert.runstate import Competition, starvation
    header = {"machine": "AMD EPYC (AVX2; no avx512_bf16/amx) · 4 threads · torch 2.13.0", "world_size": 2}
    # 8 cores, one other training process, this run's 2 processes: 8 // 3 = 2 each
    advice = starvation(_starving_train(), header, Competition(load=12.0, cores=8, other_trainings=1)).advice()
    assert "--resume --threads 2" in advice


def test_the_thread_count_is_read_from_what_describe_machine_writes():
    import torch

    from zhbert.machine import describe_machine
    from zhbert.threads import recorded_threads
    assert recorded_threads(describe_machine()) == torch.get_num_threads()
    assert recorded_threads("cpu · 1 thread · torch 2") == 1 and recorded_threads(None) is None


def test_status_of_a_run_killed_before_its_history_says_how_to_go_on(tmp_path, capsys):
    """A training killed 0.3 s after it wrote config.json: status said "not a zhbert run (no
    history.jsonl); start one with zhbert train --data DATA --out RUN", which then refused
    ("already holds this run; pass --resume")."""
    import json
    from zhbert.cli import main
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "config_hash": "0123456789abcdef"}))
    assert main(["status", str(run)]) == 2
    err = capsys.readouterr().err
    assert "stopped before its first step" in err and f"--out {run} --resume" in err


def test_status_of_a_history_cut_before_its_checkpoints_warns(tmp_path, capsys):
    """A finished run whose history.jsonl was cut short read "[finished]", held-out "-",
    without a word: a checkpoint is saved only after the records before it, so a history
    ending more than a log interval before the newest checkpoint lost records."""
    import shutil
    from trained_run import build_trained_run
    base = build_trained_run(tmp_path / "base")          # 30 steps, logs and checkpoints every 10
    run = tmp_path / "run"
    shutil.copytree(base, run)
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= 10]
    (run / "history.jsonl").write_text("".join(kept))
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "ends at step 10, yet the run was checkpointed at step 30" in out
    assert main(["status", str(base)]) == 0 and "were lost" not in capsys.readouterr().out


def test_the_history_gap_rule_reads_events_and_the_largest_log_interval(tmp_path):
    """Two healthy runs the first rule called cut: one resumed with train.log_every 10 -> 1
    (stopped at 65, last log 60: the rule read the new interval, 1), and one whose step 10
    was skipped as non-finite (no train record there; its events are at step 10)."""
    from zhbert.runstate import history_gap, last_step
    header = {"type": "header", "config": {"train": {"log_every": 10}}}
    assert history_gap(tmp_path, 60, 65, [header, {"type": "header", "config": {"train": {"log_every": 1}}}]) is None
    assert history_gap(tmp_path, 40, 65, [header]) is not None  # more than an interval: cut
    skipped = [header, {"type": "event", "event": "nonfinite_loss", "step": 10},
               {"type": "event", "event": "checkpoint", "step": 10}]
    assert last_step(skipped) == 10 and history_gap(tmp_path, last_step(skipped), 10, [header]) is None
