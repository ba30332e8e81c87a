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
