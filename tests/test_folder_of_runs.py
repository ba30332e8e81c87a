"""A folder of runs, or a folder that is no run, given where one run was expected:
`analyze`, `predict` and `compare` merged every run below such a folder into one fake run
(exit 0, wrong figures) or said only "no TensorBoard event files"; and `analyze --target 2`
for an accuracy ran the whole study and exited 0 where `predict` refuses it."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zhbert.analysis.history import load_history
from zhbert.cli import main
from zhbert.errors import UserError

TINY = Path(__file__).parent / "data" / "tiny-1000"


def _records(n=6, offset=0):
    """Train and eval records shaped as the trainer logs them (trainloop._log / _eval)."""
    out = []
    for i in range(1 + offset, n + 1 + offset):
        out.append({"type": "train", "step": 10 * i, "tokens": 4000 * i, "elapsed": 2.0 * i,
                    "lr": 1e-4, "loss": 9.0 - i / 2, "mlm_acc": 0.03 * i})
        out.append({"type": "eval", "step": 10 * i, "tokens": 4000 * i, "elapsed": 2.0 * i + 0.5,
                    "eval_mlm_acc": 0.02 * i, "eval_mlm_loss": 7.0 - i / 2})
    return out


def _tb_events(run_dir: Path, records: list[dict]) -> None:
    """One event file in RUN/tb, through the trainer's own writer and function."""
    pytest.importorskip("tensorboard")
    from zhbert.tblog import TensorBoardLog
    from zhbert.trainloop import _tb

    writer = TensorBoardLog(run_dir)
    for rec in records:
        _tb(SimpleNamespace(tb=writer), rec)
    writer.close()


def _run(run_dir: Path, tb: bool = True) -> Path:
    """A zhbert run as `zhbert train` leaves it: config.json, history.jsonl and tb/."""
    run_dir.mkdir(parents=True)
    shutil.copy(TINY / "config.json", run_dir / "config.json")
    header = {"type": "header", "schema": "zhbert-history", "version": 1, "run": run_dir.name}
    recs = _records()
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [header, *recs]))
    if tb:
        _tb_events(run_dir, recs)
    return run_dir


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("zhbert: error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize("argv", [["analyze", "{root}", "--out", "{out}", "--n-boot", "20"],
                                  ["predict", "{root}", "--target", "0.3", "--n-boot", "20"],
                                  ["compare", "{root}/a", "{root}"],
                                  ["status", "{root}"]])
def test_a_folder_of_runs_is_refused_not_merged(tmp_path, capsys, argv):
    root = tmp_path / "runs"
    for name in ("a", "b", "sweep/trials/0000"):
        _run(root / name)
    argv = [a.format(root=root, out=tmp_path / "x") for a in argv]
    assert main(argv) == 2
    err = _error(capsys)
    assert f"{root} is a folder of 3 runs" in err
    assert all(str(root / n) in err for n in ("a", "b", "sweep/trials/0000"))
    assert "zhbert compare RUN RUN" in err and f"zhbert monitor {root}" in err
    assert not (tmp_path / "x").exists()


def test_runs_without_tensorboard_and_foreign_tb_runs_are_counted_too(tmp_path):
    """history.jsonl alone makes a run (tensorboard off); so does each directory of event
    files, as TensorBoard itself counts runs."""
    root = tmp_path / "runs"
    _run(root / "a", tb=False)
    _run(root / "b", tb=False)
    with pytest.raises(UserError, match="folder of 2 runs"):
        load_history(root)
    logs = tmp_path / "logs"
    for name in ("x", "y"):
        (logs / name).mkdir(parents=True)
        _tb_events(logs / name, _records())  # -> logs/NAME/tb, not a zhbert run: no config
    with pytest.raises(UserError, match=r"folder of 2 runs .*logs/x/tb, .*logs/y/tb"):
        load_history(logs)


def test_a_folder_holding_one_run_names_it(tmp_path, capsys):
    _run(tmp_path / "runs" / "a")
    with pytest.raises(UserError, match=r"is not a run but holds one, .*runs/a: give that run"):
        load_history(tmp_path / "runs")
    # status said "not a zhbert run (no history.jsonl); start one with `zhbert train`"
    assert main(["status", str(tmp_path / "runs")]) == 2
    assert f"is not a run but holds one, {tmp_path / 'runs' / 'a'}" in _error(capsys)


def test_one_runs_own_event_files_still_read_as_the_run(tmp_path):
    """RUN/tb with the event file of a resume beside the first one; RUN itself without its
    history.jsonl; and the tb folder: all one run, merged as before."""
    run = _run(tmp_path / "run")
    _tb_events(run, _records(offset=6))  # the resumed run's second writer: steps 70-120
    assert len(list((run / "tb").glob("events.out.tfevents*"))) == 2
    (run / "history.jsonl").unlink()
    for path in (run, run / "tb"):
        h = load_history(path)
        assert h.meta.source == "tensorboard"
        np.testing.assert_allclose(h.metric().step, np.arange(10, 130, 10))


def test_a_folder_that_is_no_run_says_so(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["analyze", str(tmp_path)]) == 2
    err = _error(capsys)
    assert f"{tmp_path} is not a zhbert run (no history.jsonl)" in err
    assert "zhbert train --data DATA --out RUN" in err and "history file" in err


@pytest.mark.parametrize("argv, match", [
    (["--target", "2"], "target 2: eval_mlm_acc is an accuracy, so the target must lie between 0 and 1"),
    (["--target", "-1", "--metric", "loss"], "loss is above 0"),
])
def test_analyze_refuses_a_target_out_of_bounds_before_fitting(tmp_path, capsys, monkeypatch,
                                                              argv, match):
    import zhbert.report_analysis as ra

    def no_fit(*a, **k):
        raise AssertionError("fitted before the target was checked")
    monkeypatch.setattr(ra, "fit_curve", no_fit)
    run = _run(tmp_path / "run", tb=False)
    assert main(["analyze", str(run), "--n-boot", "20", *argv]) == 2
    assert match in _error(capsys)
    assert not (run / "analysis").exists()
