"""Progress off a terminal is plain lines, not carriage-return redraws (issue 20)."""

import io

from zhbert.progress import LineProgress, progress_bar


def test_log_gets_one_plain_line_every_few_percent():
    out = io.StringIO()
    bar = progress_bar(200, desc="train", unit="step", file=out)
    assert isinstance(bar, LineProgress)
    for i in range(200):
        bar.update(1)
        bar.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 20  # every 5% of 200 steps, the last one at 200/200
    assert lines[0].startswith("train 10/200 steps (5%")
    assert lines[-1].startswith("train 200/200 steps (100%") and "loss=0.005" in lines[-1]


def test_resumed_run_counts_from_its_step_and_a_stop_prints_its_last_line():
    out = io.StringIO()
    bar = LineProgress(1000, initial=400, desc="train", unit="step", file=out)
    for _ in range(37):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("train 437/1000 steps (44%")


def test_a_terminal_gets_tqdm():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    bar = progress_bar(10, file=Tty())
    assert type(bar).__name__ == "tqdm"
    bar.close()


def test_lines_fall_where_the_metrics_are_new():
    """A 50-step run logging every 10 steps printed a line every 2-3 steps (5%), four of
    five repeating the last metrics; lines now come at multiples of the log interval."""
    out = io.StringIO()
    bar = progress_bar(50, desc="train", unit="step", file=out, every=10)
    for _ in range(50):
        bar.update(1)
    bar.close()
    steps = [int(line.split()[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert steps == [10, 20, 30, 40, 50]
    out = io.StringIO()
    bar = progress_bar(1200, desc="train", unit="step", file=out, every=10)
    for _ in range(1200):
        bar.update(1)
    assert len(out.getvalue().splitlines()) == 20  # 5% of 1,200 is already a multiple of 10


def test_a_trainings_plain_lines_carry_the_figures_of_the_step_they_name(synthetic_data, tmp_path, capsys):
    """`make demo > demo.log` printed each line with the last log's figures under the next
    step ("train 140/2783 ... loss=6.949" was step 130's): the loop updated the count
    before the log set the new figures. Off a terminal, stderr here, each line's loss and
    accuracy are now its own step's history record's."""
    import json

    from zhbert.cli import main
    small = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=128",
             "data.max_len=32", "data.eval_sequences=32", "train.batch_size=8", "train.steps=20",
             "train.log_every=5", "train.eval_every=20", "train.warmup_steps=2", "train.precision=fp32"]
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data), "--out", str(run), "--config", "tiny",
                 "--threads", "1", *[a for s in small for a in ("--set", s)]]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train ") and "loss=" in ln]
    records = {r["step"]: r for r in map(json.loads, (run / "history.jsonl").read_text().splitlines())
               if r.get("type") == "train"}
    assert len(lines) >= 3
    for line in lines:
        step = int(line.split()[1].split("/")[0])
        fields = dict(f.split("=") for f in line.split() if "=" in f)
        assert fields["loss"] == f"{records[step]['loss']:.3f}", (line, records[step])
        assert fields["mlm"] == f"{records[step]['mlm_acc'] or 0:.3f}"
