import json

from zhbert.cli import main as cli_main
from zhbert.runstate import collect


def test_status_of_a_stopped_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"type": "header", "total_steps": 100, "tokens_per_step": 4096, "precision": "fp32",
             "machine": "m"},
            {"type": "train", "step": 40, "elapsed": 20.0, "tokens_per_s": 1000.0, "loss": 3.0,
             "mlm_acc": 0.2, "nsp_acc": 0.6, "lr": 1e-3},
            {"type": "eval", "step": 40, "eval_mlm_acc": 0.25, "eval_nsp_acc": 0.7}]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    # a stale marker from a killed process (pid that cannot exist)
    (run / "running.json").write_text(json.dumps({"pid": 2**22 + 7, "host": __import__("socket").gethostname()}))
    s = collect(run)
    assert s["state"].startswith("stopped") and s["step"] == 40 and s["percent"] == 40.0
    assert s["eta_seconds"] == 30.0  # 60 steps left at 0.5 s/step
    assert cli_main(["status", str(run)]) == 0
    assert "25.00%" in capsys.readouterr().out
    assert cli_main(["status", str(tmp_path / "nope")]) == 2


def test_status_gives_the_last_interval_and_the_run_average_speed(tmp_path, capsys):
    """A newcomer read status's 20,124 tokens/s (the last log interval) against the train
    summary's 11,783 (the run); both are now shown, each named."""
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"type": "header", "total_steps": 100},
            {"type": "train", "step": 50, "elapsed": 10.0, "tokens": 50_000, "tokens_per_s": 8000.0},
            {"type": "train", "step": 100, "elapsed": 40.0, "tokens": 100_000, "tokens_per_s": 2000.0}]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    s = collect(run)
    assert s["tokens_per_s"] == 2000.0 and s["average_tokens_per_s"] == 2500.0
    assert cli_main(["status", str(run)]) == 0
    assert "2,000 tokens/s in the last log interval, 2,500 over the run" in capsys.readouterr().out


def _run_with(tmp_path, recs, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return run


def test_the_machine_line_says_1_thread(monkeypatch):
    """describe_machine (written into each history's header, shown by status) said "1 threads"."""
    import torch
    from zhbert.machine import describe_machine
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert " · 1 thread · " in describe_machine()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert " · 2 threads · " in describe_machine()


def test_status_of_a_missing_path_or_a_sweep_says_what_it_is(tmp_path, capsys):
    """A missing path was called "not a zhbert run (no history.jsonl)", and a sweep folder
    was told to `zhbert train`; each is now named, with one line and exit code 2."""
    assert cli_main(["status", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope does not exist" in err and "no history.jsonl" not in err and err.count("\n") == 1
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    assert cli_main(["status", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "is a sweep" in err and f"zhbert sweep report {sweep}" in err and "zhbert train" not in err
    assert err.count("\n") == 1
    assert cli_main(["status", str(tmp_path)]) == 2  # a plain folder: as before
    assert "not a zhbert run (no history.jsonl)" in capsys.readouterr().err


def test_status_after_a_stop_between_logs_gives_the_checkpointed_step(tmp_path, capsys):
    """SIGTERM at step 61 (logs every 10): the trainer finishes step 61, saves checkpoint 61
    and an event; no train record after 60. status said "step 60 / 300" beside
    "checkpoint 61"; the run got to 61 (--resume goes on at 62)."""
    run = _run_with(tmp_path, [{"type": "header", "total_steps": 300},
                               {"type": "train", "step": 60, "elapsed": 30.0, "tokens": 60_000,
                                "tokens_per_s": 2000.0, "loss": 3.0},
                               {"type": "event", "step": 61, "kind": "stop",
                                "message": "checkpoint step_00000061"}])
    (run / "checkpoints" / "step_00000061").mkdir(parents=True)
    s = collect(run)
    assert s["step"] == 61 and s["last_checkpoint"] == 61 and s["train"]["step"] == 60
    assert s["eta_seconds"] == 239 * 0.5  # 239 steps left at the logged 0.5 s/step
    assert cli_main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "step       61 / 300" in out and "checkpoint 61" in out and "(logged at step 60)" in out


def test_status_says_when_the_newest_checkpoint_is_corrupt(tmp_path, capsys, monkeypatch):
    """status named a corrupt newest checkpoint as the run's checkpoint, while --resume and
    fill-mask skip it for the one before; it now says so, and which one they use, reading
    each checkpoint's bytes once (it hashed a corrupt newest one twice)."""
    import torch
    from zhbert import checkpoint
    from zhbert.checkpoint import save_checkpoint

    reads = []
    verify = checkpoint.verify_checkpoint
    monkeypatch.setattr(checkpoint, "verify_checkpoint", lambda p: reads.append(p.name) or verify(p))

    run = _run_with(tmp_path, [{"type": "header", "total_steps": 10},
                               {"type": "train", "step": 4, "elapsed": 1.0, "tokens_per_s": 1.0}])
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(run, 2, model, opt, {})
    newest = save_checkpoint(run, 4, model, opt, {})
    assert cli_main(["status", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[-2] == "checkpoint 4"  # it verifies: plain
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(data))
    assert cli_main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert ("checkpoint 4 is corrupt (model.safetensors does not match its checksum); "
            "--resume and fill-mask use step 2") in out
    assert reads == ["step_00000004", "step_00000004", "step_00000002"]  # plain, then corrupt
    assert cli_main(["status", "--json", str(run)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["last_checkpoint"] == 4 and s["last_valid_checkpoint"] == 2
    # retention removing the newest while status reads it is no corruption ("missing meta.json")
    import shutil

    from zhbert.status import newest_checkpoint_check
    monkeypatch.setattr(checkpoint, "verify_checkpoint",
                        lambda p: (shutil.rmtree(p) if p == newest else None) or verify(p))
    assert newest_checkpoint_check(run, 4) == {"checkpoint_problem": None, "last_valid_checkpoint": 2}
    monkeypatch.setattr(checkpoint, "verify_checkpoint", lambda p: "broken")  # none verifies
    newest.mkdir(exist_ok=True)
    assert cli_main(["status", str(run)]) == 0
    assert ("is corrupt (broken); no checkpoint verifies: --resume starts over at step 0, "
            "fill-mask has none to load") in capsys.readouterr().out


def test_status_of_a_file_names_the_run_it_is_in(tmp_path, capsys):
    """`zhbert status RUN/history.jsonl` said "RUN/history.jsonl is not a zhbert run (no
    history.jsonl)"."""
    run = _run_with(tmp_path, [{"type": "header", "total_steps": 10}])
    assert cli_main(["status", str(run / "history.jsonl")]) == 2
    assert f"is a file, not a run directory: give the run it is in, {run}" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert cli_main(["status", str(tmp_path / "notes.txt")]) == 2
    assert "is a file, not a run directory: give the folder" in capsys.readouterr().err


def test_a_run_whose_final_checkpoint_failed_is_not_finished(tmp_path, capsys):
    """A full disk at the final save left checkpoints/ empty: status said "finished" while
    --resume started over at step 0. A history without a checkpoints/ folder (kept or
    copied alone) still goes by its last log."""
    run = _run_with(tmp_path, [{"type": "header", "total_steps": 10},
                               {"type": "train", "step": 10, "tokens": 100, "elapsed": 1.0}])
    (run / "config.json").write_text(json.dumps({"config_hash": "x"}))
    assert collect(run)["state"] == "finished"
    (run / "checkpoints").mkdir()
    assert collect(run)["state"] != "finished"
