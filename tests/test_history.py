"""zhbert.history's reader: one bad-line policy for every reader of a run's JSONL files."""

import json

import pytest

from zhbert.errors import UserError
from zhbert.history import HistoryReader, iter_records, positions_per_step, read_history, tokens_per_step
from zhbert.runstate import collect


def _lines(*steps):
    return "".join(json.dumps({"type": "train", "step": s, "loss": 1.0}) + "\n" for s in steps)


def test_partial_last_line_is_left_silently(tmp_path, capsys):
    p = tmp_path / "history.jsonl"
    p.write_text(_lines(1, 2) + '{"type": "train", "st')
    chunk = read_history(p)
    assert [r["step"] for r in chunk.records] == [1, 2] and chunk.partial and not chunk.bad_lines
    assert capsys.readouterr().err == ""


def test_corrupt_middle_line_is_warned_with_its_number_and_skipped(tmp_path, capsys):
    p = tmp_path / "history.jsonl"
    p.write_bytes(_lines(1).encode() + b'{"type": "train", "step": 2, "lo\n[1, 2]\n\xff\xfe\n'
                  + _lines(3).encode())
    chunk = read_history(p)
    assert [r["step"] for r in chunk.records] == [1, 3] and chunk.bad_lines == (2, 3, 4)
    err = capsys.readouterr().err
    assert f"{p}: skipped 3 corrupt lines that are not JSON records (lines 2, 3, 4)" in err
    assert [r["step"] for r in iter_records(p)] == [1, 3]  # the old name, the same policy


def test_many_corrupt_lines_are_counted_not_listed(tmp_path, capsys):
    p = tmp_path / "h.jsonl"
    p.write_text("x\n" * 25 + _lines(1))
    assert len(read_history(p).bad_lines) == 25
    err = capsys.readouterr().err
    # one warning for the read, naming the first ten (once one warning a line: thousands)
    assert err.count("\n") == 1 and "skipped 25 corrupt lines" in err
    assert "(lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...)" in err


def test_reader_follows_a_growing_file(tmp_path, capsys):
    p = tmp_path / "history.jsonl"
    p.write_text(_lines(1) + '{"type": "train", "step": 2,')
    r = HistoryReader(p)
    first = r.read()
    assert [x["step"] for x in first.records] == [1] and first.partial
    with open(p, "a") as f:
        f.write(' "loss": 1.0}\nbad\n' + _lines(3))
    nxt = r.read()  # only the new bytes, line numbers counted from the start of the file
    assert [x["step"] for x in nxt.records] == [2, 3] and nxt.bad_lines == (3,) and not nxt.reset
    line2 = len('{"type": "train", "step": 2, "loss": 1.0}\n')
    assert nxt.starts == [first.offset, first.offset + line2 + len("bad\n")]
    assert r.read().records == [] and "line 3" in capsys.readouterr().err
    assert r.read(max_bytes=1).records == []


def test_reader_starts_again_when_the_file_shrinks_or_is_replaced(tmp_path):
    p = tmp_path / "history.jsonl"
    p.write_text(_lines(1, 2, 3))
    r = HistoryReader(p)
    assert len(r.read().records) == 3
    p.write_text(_lines(1))  # truncated in place
    again = r.read()
    assert again.reset and [x["step"] for x in again.records] == [1]
    new = tmp_path / "new.jsonl"
    new.write_text(_lines(1, 2, 3, 4))
    new.replace(p)  # rewritten atomically (rewrite_for_resume on resume): same or larger size
    third = r.read()
    assert third.reset and [x["step"] for x in third.records] == [1, 2, 3, 4]


def test_max_bytes_reads_in_pieces(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text(_lines(*range(1, 11)))
    r, got = HistoryReader(p), []
    while True:
        c = r.read(max_bytes=100)
        got += [x["step"] for x in c.records]
        if not c.more:
            break
    assert got == list(range(1, 11)) and c.offset == p.stat().st_size


def test_status_keeps_going_past_a_corrupt_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text('{"type": "header", "total_steps": 10}\n' + _lines(1)
                                       + "garbage\n" + _lines(5))
    assert collect(run)["step"] == 5  # it used to stop with "corrupt history"
    assert "line 3" in capsys.readouterr().err
    with pytest.raises(UserError, match="not found"):
        read_history(tmp_path / "nope.jsonl")


def test_tokens_are_real_tokens_and_positions_are_padded_ones():
    header = {"type": "header", "tokens_per_step": 4096}  # as train.py names it: positions
    assert positions_per_step(header) == 4096.0
    assert positions_per_step({"positions_per_step": 512}) == 512.0 and positions_per_step({}) is None
    recs = [header] + [{"type": "train", "step": s, "tokens": 100 + 3000 * s} for s in (10, 20, 40)]
    recs.append({"type": "eval", "step": 40, "tokens": 0})  # only train records count
    assert tokens_per_step(recs) == 3000.0
    assert tokens_per_step(recs[:2]) == pytest.approx(3010.0)  # one record: tokens / step
    assert tokens_per_step([header]) is None


def test_a_corrupt_line_is_warned_about_once_per_process(tmp_path, capsys):
    """analyze reads a history three times (the study, the planner, the run's state) and
    said each corrupt line three times."""
    from zhbert.history import read_history

    path = tmp_path / "history.jsonl"
    path.write_text('{"type": "header"}\nnot json\n{"type": "train", "step": 1}\n')
    for _ in range(3):
        assert len(read_history(path).records) == 2
    assert capsys.readouterr().err.count("line 2: not a JSON record") == 1


def test_eval_points_are_finite_by_step_the_later_of_a_repeated_step_kept():
    from zhbert.history import eval_points
    records = [{"type": "header"}, {"type": "train", "step": 10, "eval_mlm_acc": 0.9},
               {"type": "eval", "step": 20, "eval_mlm_acc": 0.2},
               {"type": "eval", "step": 10, "eval_mlm_acc": 0.1},
               {"type": "eval", "step": 30, "eval_mlm_acc": float("nan")},
               {"type": "eval", "step": 40, "eval_mlm_acc": float("inf")},
               {"type": "eval", "step": 50, "eval_mlm_acc": True},
               {"type": "eval", "step": 20, "eval_mlm_acc": 0.25}]  # evaluated again after a resume
    assert eval_points(records, "eval_mlm_acc") == [(10, 0.1), (20, 0.25)]
    assert eval_points(records, "eval_mlm_loss") == []
