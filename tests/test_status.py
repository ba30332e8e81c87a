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
