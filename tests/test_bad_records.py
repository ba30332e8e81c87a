"""A history line that is JSON but not a valid record (a field of the wrong type) is
skipped by the one reader, zhbert.history, like a line that is not JSON: status, the
dashboard, analyze and --resume's rewrite never see it (they crashed: int("x"), a 500
for every run of the dashboard)."""

import json
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from zhbert.cli import main
from zhbert.history import read_history, rewrite_for_resume
from zhbert.monitor.server import create_app

HEADER = {"type": "header", "schema": "zhbert-history", "version": 1, "run": "r",
          "total_steps": 100, "tokens_per_step": 1000, "config": {}, "machine": "cpu · 1 thread · torch 2"}


def _train(step, **extra):
    return {"type": "train", "step": step, "tokens": 900 * step, "elapsed": 0.1 * step, "lr": 1e-3,
            "loss": 5.0, "mlm_acc": 0.1, "tokens_per_s": 9000.0, **extra}


def _write(path: Path, records, raw_lines=()) -> Path:
    """``records`` as JSON lines, then ``raw_lines`` as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(l + "\n" for l in raw_lines))
    return path


# each: a JSON line every reader relied on being typed, and what the warning names
BAD = [
    ('{"type": "train", "step": "x", "loss": "y"}', 'its step is "x"'),
    ('{"type": "train", "step": null}', "its step is null"),
    ('{"type": "train", "step": 1e400, "loss": 1}', "its step is Infinity"),
    ('{"type": "train", "step": -1}', "its step is -1"),
    ('{"type": "train", "step": true}', "its step is true"),
    ('{"type": "train", "step": 30.0}', "its step is 30.0"),
    ('{"type": "train", "loss": 1}', "a train record without a step"),
    ('{"type": "eval", "step": null, "eval_mlm_acc": "high"}', "its step is null"),
    ('{"type": "eval", "step": 30, "eval_mlm_acc": "high"}', 'its eval_mlm_acc is "high"'),
    ('{"type": "eval", "step": 30, "eval_mlm_acc_ci95": "wide"}', "its eval_mlm_acc_ci95"),
    ('{"type": "train", "step": 30, "tokens_per_s": "fast"}', "its tokens_per_s"),
    ('{"type": 5, "step": 30}', "its type is 5"),
    ('{"type": ["train"], "step": 30}', "its type is"),
    ('{"type": "event", "step": 30, "kind": 7}', "its event kind is 7"),
    ('{"type": "header", "total_steps": "100"}', "the header's total_steps is \"100\""),
    ('{"type": "header", "config": "tiny"}', "the header's config is \"tiny\""),
    ('{"type": "header", "world_size": 0}', "the header's world_size is 0"),
    ('{"step": "x", "split": "validation"}', 'its step is "x"'),  # checkpoint_eval.jsonl's shape
]


@pytest.mark.parametrize("line, why", BAD)
def test_a_wrongly_typed_record_is_skipped_with_the_line_and_why(tmp_path, capsys, line, why):
    p = _write(tmp_path / "history.jsonl", [HEADER, _train(10)], [line, json.dumps(_train(20))])
    chunk = read_history(p)
    assert [r.get("step") for r in chunk.records] == [None, 10, 20]  # the records around it kept
    assert chunk.bad_lines == (3,)
    err = capsys.readouterr().err
    assert f"{p}, line 3: not a valid record ({why}" in err and "skipped it" in err


def test_what_the_writers_write_is_valid(tmp_path, capsys):
    """NaN losses (a diverging run), null metrics, checkpoint_eval's and probe's typeless
    records with strings of their own, a field a newer writer adds: all kept."""
    lines = [HEADER, {**HEADER, "resumed_from": 20, "masking": None, "world_size": 2},
             _train(10, loss=float("nan"), nsp_acc=None, phase="short"),
             {"type": "eval", "step": 10, "eval_mlm_acc": 0.2, "eval_mlm_acc_ci95": [0.1, 0.3]},
             {"type": "event", "step": 10, "kind": "checkpoint", "message": "checkpoint step_00000010"},
             {"step": 10, "tokens": None, "split": "validation", "max_sequences": 64, "eval_mlm_acc": 0.2},
             {"step": 10, "task": "cloze", "mode": "linear", "accuracy": 0.5, "ci95": [0.4, 0.6]},
             {"type": "note", "text": "a record type this version does not know"}]
    chunk = read_history(_write(tmp_path / "h.jsonl", lines))
    assert len(chunk.records) == len(lines) and chunk.bad_lines == ()
    assert capsys.readouterr().err == ""


def test_several_bad_lines_are_one_warning_naming_the_first_reason(tmp_path, capsys):
    p = _write(tmp_path / "history.jsonl", [HEADER], ["not json", '{"type": "train", "step": "x"}',
                                                      '{"type": "train", "step": null}'])
    assert read_history(p).bad_lines == (2, 3, 4)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 3 corrupt lines" in err
    assert 'line 3: its step is "x"' in err


def _run(tmp_path, line: str, name: str = "r") -> Path:
    run = tmp_path / "runs" / name
    _write(run / "history.jsonl", [HEADER] + [_train(s) for s in (10, 20, 30)], [line])
    return run


@pytest.mark.parametrize("line", [b for b, _ in BAD])
def test_status_skips_it_instead_of_a_traceback(tmp_path, capsys, line):
    run = _run(tmp_path, line)
    assert main(["status", str(run)]) == 0
    cap = capsys.readouterr()
    assert "line 5: not a valid record" in cap.err and "Traceback" not in cap.err
    assert "step       30 / 100" in cap.out


def test_a_bad_header_falls_back_to_an_earlier_one(tmp_path, capsys):
    run = tmp_path / "r"
    _write(run / "history.jsonl", [HEADER, _train(10), {**HEADER, "total_steps": "lots", "resumed_from": 10},
                                   _train(20)])
    assert main(["status", str(run)]) == 0
    assert "step       20 / 100" in capsys.readouterr().out


def test_the_dashboard_lists_every_run_and_studies_the_bad_one(tmp_path, capsys):
    """One bad record answered HTTP 500 for /api/runs as a whole (every run)."""
    good = _run(tmp_path, json.dumps(_train(40)), "good")
    _run(tmp_path, '{"type": "train", "step": "x", "loss": "y"}', "t1")
    _run(tmp_path, '{"type": "header", "config": "tiny"}', "t2")
    c = TestClient(create_app([good.parent]))
    r = c.get("/api/runs")
    assert r.status_code == 200
    by_id = {s["id"]: s for s in r.json()["runs"]}
    assert by_id["good"]["step"] == 40 and by_id["t1"]["step"] == 30 and by_id["t1"]["bad_lines"] == [5]
    assert by_id["t2"]["total_steps"] == 100
    # the server's own warning says why, as status's does (it said "not a JSON record")
    assert 't1/history.jsonl, line 5: not a valid record (its step is "x"' in capsys.readouterr().err
    study = c.get("/api/runs/t2/study?metric=loss")  # the header's config read "tiny": a 500
    assert study.status_code == 200 and study.json()["metric"] == "loss"


def test_a_run_that_fails_unforeseen_is_an_error_in_its_own_row(tmp_path, monkeypatch):
    """run_summary's docstring promised it never raises for a bad run: now it holds."""
    import zhbert.runstate
    root = _run(tmp_path, json.dumps(_train(40)), "a").parent
    _run(tmp_path, json.dumps(_train(40)), "b")
    real = zhbert.runstate.summarize

    def flaky(run_dir, *a, **k):
        if run_dir.name == "b":
            raise ValueError("something no check foresaw")
        return real(run_dir, *a, **k)
    monkeypatch.setattr(zhbert.runstate, "summarize", flaky)
    r = TestClient(create_app([root])).get("/api/runs")
    assert r.status_code == 200
    by_id = {s["id"]: s for s in r.json()["runs"]}
    assert by_id["a"]["step"] == 40
    assert by_id["b"]["state"] == "error" and "something no check foresaw" in by_id["b"]["error"]


def test_resume_rewrite_drops_the_bad_record_and_keeps_the_original(tmp_path, capsys):
    """The resume's rewrite compared "x" > 10: a TypeError in `train --resume`."""
    p = _write(tmp_path / "history.jsonl", [HEADER, _train(10)], ['{"type": "train", "step": "x"}',
                                                                  json.dumps(_train(20))])
    warned = []
    assert rewrite_for_resume(p, 10, warned.append)[0] == 1  # step 20
    assert [r.get("step") for r in read_history(p).records] == [None, 10]
    (copy,) = tmp_path.glob("history.jsonl.corrupt-*")
    assert '"step": "x"' in copy.read_text() and "line 3 (not a valid record)" in warned[0]


def test_analyze_skips_it_with_a_note(tmp_path, capsys):
    """analyze said "metric 'loss' has a missing or non-numeric step; fix the file" (exit 2)."""
    from zhbert.analysis import load_history
    run = _run(tmp_path, '{"type": "train", "step": "x", "loss": "y"}')
    h = load_history(run)
    assert list(h.series["loss"].step) == [10, 20, 30]
    assert any("skipped 1 corrupt line(s) (line 5)" in n for n in h.notes)
    assert "line 5: not a valid record" in capsys.readouterr().err


def test_a_real_finished_run_with_a_bad_line(tmp_path):
    """The tester's repro on a run the trainer wrote (tests/data/tiny-1000)."""
    run = tmp_path / "t1"
    shutil.copytree(Path(__file__).parent / "data" / "tiny-1000", run)
    with open(run / "history.jsonl", "a") as f:
        f.write('{"type": "train", "step": "x", "loss": "y"}\n')
    assert main(["status", str(run)]) == 0


@pytest.mark.parametrize("marker", ["[1]", '{"host": "%s", "pid": null}'])
def test_a_garbled_running_marker_is_a_killed_run_not_a_traceback(tmp_path, capsys, marker):
    """running.json that is JSON of another shape: int(None) / [].get raised in run_state."""
    import socket
    run = _run(tmp_path, json.dumps(_train(40)))
    (run / "running.json").write_text(marker.replace("%s", socket.gethostname()))
    assert main(["status", str(run)]) == 0
    assert "[stopped" in capsys.readouterr().out
