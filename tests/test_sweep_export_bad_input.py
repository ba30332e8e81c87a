"""Bad input to sweep, sweep report, export and monitor (a fuzzing pass): an output the OS
refuses, option values out of range, a storage that does not persist, more threads than
cores, a sweep whose every trial failed. Each is one line and exit 2 (a sweep of failures:
exit 1 naming a log), with nothing written and what was there kept; never a traceback."""

import argparse
import errno
import os
from pathlib import Path

import pytest
from optuna.trial import TrialState

from test_sweep import _args, _space, _study
from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert import cli
from zhbert.errors import UserError
from zhbert.fileio import atomic_write_text, staged_dir
from zhbert.sweep import command
from zhbert.sweep.study import load_study, open_storage
from zhbert.sweep.worker import claim, sampler_seed


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


def _parse(add_arguments, argv: list[str]):
    """argv through the command's parser as the CLI builds it (one-line errors, exit 2)."""
    p = cli._Parser(prog="zhbert test")
    add_arguments(p)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- outputs the OS refuses

def _a_file_in_the_path(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "out"


@pytest.mark.parametrize("where", ["file-in-path", "proc"])
def test_an_output_that_cannot_be_made_is_one_user_error_naming_it(tmp_path, where):
    """`export/sweep report --out /proc/x` ended in a FileNotFoundError traceback in
    staged_dir's mkdtemp; a file in the path in a NotADirectoryError."""
    if where == "proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    final = _a_file_in_the_path(tmp_path) if where == "file-in-path" else Path("/proc/zhbert-x")
    with pytest.raises(UserError, match=f"cannot write {final}: .*choose") as caught:
        with staged_dir(final):
            pass
    assert "\n" not in str(caught.value) and "nothing was written" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["afile"] if where == "file-in-path" else [])


def test_a_full_disk_while_writing_keeps_the_old_output_and_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with staged_dir(final) as d:
        (d / "f").write_text("old")
    with pytest.raises(UserError, match=f"cannot write {final}: No space left on device .*free disk"):
        with staged_dir(final, force=True) as d:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # f.write names no file
    assert (final / "f").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_folders_made_for_a_failed_output_are_removed_again(tmp_path):
    final = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(UserError, match="No space left"):
        with staged_dir(final) as d:
            atomic_write_text(d / "a.txt", "x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(d / "b.txt"))
    assert list(tmp_path.iterdir()) == []


def test_a_refused_rename_names_the_output_and_keeps_what_was_there(tmp_path, monkeypatch):
    final = tmp_path / "out"
    final.mkdir()
    (final / "f").write_text("old")
    real = os.replace

    def read_only(src, dst):
        if Path(src).name.endswith(".partial"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))
        return real(src, dst)
    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(UserError, match=f"cannot write {final}: Read-only file system .*writable"):
        with staged_dir(final, force=True) as d:
            (d / "f").write_text("new")
    monkeypatch.undo()
    assert (final / "f").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_input_that_cannot_be_read_is_not_reported_as_the_output(tmp_path):
    """Only the output's own errors become "cannot write": reading an input stays its error."""
    with pytest.raises(FileNotFoundError):
        with staged_dir(tmp_path / "out"):
            (tmp_path / "no-such-input").read_text()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["", "."])
def test_the_current_directory_as_output_is_refused(tmp_path, monkeypatch, out):
    """`export RUN --out '' --force` in an empty folder said the output "was written by another
    process while this one ran": its own staging directory, made inside it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^\. is the current directory or above it"):
        with staged_dir(out, force=True):
            pass
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_whose_folder_cannot_be_made_is_a_user_error(tmp_path):
    """mkdir and mkstemp sat outside the writer's error handling: a NotADirectoryError."""
    path = _a_file_in_the_path(tmp_path) / "x.json"
    with pytest.raises(UserError, match="a part of the path is a file"):
        atomic_write_text(path, "{}")


def test_export_to_an_unwritable_out_is_one_line(trained_run, tmp_path, capsys):
    out = _a_file_in_the_path(tmp_path)
    assert cli.main(["export", str(trained_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert f"cannot write {out}" in err and "a part of the path is a file" in err


def test_export_on_a_full_disk_keeps_the_earlier_export(trained_run, tmp_path, monkeypatch, capsys):
    """safetensors says a full disk with its own error type, which escaped as a traceback."""
    import safetensors.torch
    from safetensors import SafetensorError

    out = tmp_path / "model"
    assert cli.main(["export", str(trained_run), "--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert cli.main(["export", str(trained_run), "--out", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert f"cannot write {out}: No space left on device" in err
    assert (out / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_sweep_report_to_an_unwritable_out_is_one_line(tmp_path, synthetic_data, capsys):
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    out = _a_file_in_the_path(tmp_path)
    assert cli.main(["sweep", "report", str(sweep_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert f"cannot write {out}" in err


def test_a_sweep_into_an_unwritable_out_is_one_line_and_writes_nothing(tmp_path, synthetic_data, capsys):
    out = _a_file_in_the_path(tmp_path) / "sweep"
    code = cli.main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out", str(out),
                     "--trials", "1", "--steps", "2", "--budget-minutes", "1e-6"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "a part of the path is a file" in err
    _one_line(err)


# ----------------------------------------------------------------------------- option ranges

@pytest.mark.parametrize("option, value", [
    ("--budget-minutes", "nan"), ("--budget-minutes", "inf"), ("--budget-minutes", "0"),
    ("--grace-seconds", "inf"), ("--grace-seconds", "1e400"), ("--trials", "0"),
    ("--steps", "0"), ("--workers-per-machine", "0"), ("--threads", "-1"), ("--worker-index", "-1"),
])
def test_sweep_option_values_out_of_range_are_refused_by_the_parser(tmp_path, capsys, option, value):
    """--budget-minutes nan ran trials without a budget, --grace-seconds inf never failed a
    lost worker's trial, --worker-index -1 ended in a seed ValueError traceback."""
    with pytest.raises(SystemExit) as exc:
        _parse(command.add_arguments, ["space.toml", f"{option}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert option in err


def test_sweep_counts_take_any_whole_notation():
    args = _parse(command.add_arguments, ["space.toml", "--trials", "1e2", "--steps", "200",
                                          "--budget-minutes", "1.5", "--grace-seconds", "60"])
    assert (args.trials, args.steps, args.budget_minutes, args.grace_seconds) == (100, 200, 1.5, 60.0)


@pytest.mark.parametrize("argv", [["--stall-after", "nan"], ["--stall-after", "0"],
                                  ["--stall-after=-1"], ["--stall-after", "inf"]])
def test_monitor_stall_after_must_be_positive_and_finite(capsys, argv):
    """--stall-after nan was taken: no run ever showed as stalled."""
    from zhbert.monitor import server
    with pytest.raises(SystemExit) as exc:
        _parse(server.add_arguments, ["runs", *argv])
    assert exc.value.code == 2 and "--stall-after" in capsys.readouterr().err


def test_export_checkpoint_is_a_step(capsys):
    from zhbert import export
    with pytest.raises(SystemExit) as exc:
        _parse(export.add_arguments, ["run", "--out", "m", "--checkpoint=-1"])
    assert exc.value.code == 2 and "--checkpoint: -1 is not a whole number >= 0" in capsys.readouterr().err


def test_an_empty_study_name_is_refused(tmp_path, synthetic_data):
    with pytest.raises(UserError, match="--study is empty"):
        command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", study=""))
    assert not (tmp_path / "s").exists()


def test_the_last_workers_seed_stays_in_numpys_range(tmp_path, synthetic_data):
    """--sampler-seed 4294967295 with a second worker (or a resume) was seed 2^32: a ValueError."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s",
                                            sampler_seed=2 ** 32 - 1))
    storage = open_storage(sweep_dir, spec.storage)
    seed = sampler_seed(storage, spec, 1)
    assert 0 <= seed < 2 ** 32
    load_study(storage, spec, seed)


# ----------------------------------------------------------------------------- threads and cores

@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr("zhbert.threads.available_cores", lambda: 2)


@pytest.mark.parametrize("option, value", [("--threads", "3"), ("--threads", "99999999999999999999"),
                                           ("--workers-per-machine", "3")])
def test_more_threads_or_workers_than_cores_is_refused_before_anything_is_written(
        tmp_path, synthetic_data, two_cores, capsys, option, value):
    """--threads 99999999999999999999 failed every trial (torch's OverflowError) and exited 0."""
    from zhbert.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out",
              str(tmp_path / "s"), option, value])
    assert exc.value.code == 2 and f"{option}: {value} is more than the 2 cores" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_workers_times_threads_past_the_cores_is_a_warning(two_cores):
    assert command._oversubscribed(2, 1) is None
    warning = command._oversubscribed(2, 2)
    assert "warning: 2 workers x 2 thread(s) = 4 threads on 2 cores" in warning and "--threads 1" in warning


# ----------------------------------------------------------------------------- a sweep of failures

def _fail(study, spec, sweep_dir, n, message):
    from zhbert.sweep.outcome import tell_failed as _tell_failed
    trial = claim(study, spec, sweep_dir)
    rel = f"trials/{n:04d}"
    trial.set_user_attr("trial_dir", rel)
    (sweep_dir / rel).mkdir(parents=True)
    (sweep_dir / rel / "train.log").write_text(message + "\n")
    _tell_failed(study, trial, "trainer", message, retry=False)


def test_a_sweep_whose_every_trial_failed_exits_1_naming_a_log(tmp_path, synthetic_data, capsys):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=4))
    _, study = _study(sweep_dir)
    for n in range(2):
        _fail(study, spec, sweep_dir, n, f"zhbert: error: diverged {n}")
    assert cli.main(["sweep", str(sweep_dir)]) == 1
    err = capsys.readouterr().err
    assert (f"sweep: no trial succeeded (2 failed); the last, trials/0001: zhbert: error: diverged 1; "
            f"its log: {sweep_dir / 'trials' / '0001' / 'train.log'}") in err


def test_a_sweep_with_one_trial_complete_exits_0(tmp_path, synthetic_data, capsys):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=4))
    _, study = _study(sweep_dir)
    _fail(study, spec, sweep_dir, 0, "zhbert: error: diverged")
    study.tell(claim(study, spec, sweep_dir), 0.3)
    assert study.get_trials()[1].state == TrialState.COMPLETE
    assert cli.main(["sweep", str(sweep_dir)]) == 0
    assert "no trial succeeded" not in capsys.readouterr().err



@pytest.mark.parametrize("outcomes, code", [
    (["failed: zhbert: error: no data at /x", "failed: zhbert: error: no data at /y"], 1),
    (["failed: zhbert: error: no data at /x", "pruned at step 4: below the others"], 0),
    (["complete: eval_mlm_acc 0.3000 at step 4"], 0), ([], 0)])
def test_a_worker_a_user_started_exits_1_when_every_trial_it_ran_failed(
        tmp_path, synthetic_data, capsys, monkeypatch, outcomes, code):
    """`zhbert sweep DIR --worker` on another machine exited 0 though all its trials failed
    (its own data path wrong, say); the workers a sweep spawns leave that to their sweep."""
    from zhbert.sweep import worker
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=4))
    tally = worker.Tally(ran=list(enumerate(outcomes)))
    monkeypatch.setattr(worker, "run_worker", lambda spec, opts, log: tally)
    assert cli.main(["sweep", str(sweep_dir), "--worker"]) == code
    err = capsys.readouterr().err
    assert ("sweep: no trial this worker ran succeeded (2 failed); the last, Optuna trial 1: "
            "zhbert: error: no data at /y") in err if code else "succeeded" not in err
    # a joining worker says what it did and where the sweep stands (it said nothing at all)
    assert f"sweep: this worker ran {len(outcomes)} trial" in err and "Next: zhbert sweep report" in err
    assert cli.main(["sweep", str(sweep_dir), "--worker", "--worker-index", "0"]) == 0


# ----------------------------------------------------------------------------- storage

@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:",
                                 "sqlite:///file:x?mode=memory&uri=true", ""])
def test_a_storage_that_does_not_persist_is_refused(url):
    from zhbert.sweep.study import storage_url
    with pytest.raises(argparse.ArgumentTypeError, match="in-memory database|empty URL"):
        storage_url(url)


def test_a_sweep_on_an_in_memory_database_is_refused_and_writes_nothing(tmp_path, synthetic_data, capsys):
    """The study lived in the sweep's process: other workers and `sweep report` never saw it."""
    with pytest.raises(SystemExit) as exc:  # argparse's exit
        cli.main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out",
                  str(tmp_path / "s"), "--storage", "sqlite:///", "--budget-minutes", "1e-6"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "in-memory database" in err and "sqlite:///path/sweep.db" in err
    _one_line(err)
    assert not (tmp_path / "s").exists()


def test_a_report_on_a_missing_database_file_creates_none(tmp_path, synthetic_data, capsys):
    """It made an empty sqlite file and blamed SWEEP_DIR/optuna.journal for the missing study."""
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    db = tmp_path / "typo.db"
    assert cli.main(["sweep", "report", str(sweep_dir), "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert f"no database file {db}" in err and not db.exists()


def test_a_report_study_other_than_the_sweeps_is_refused(tmp_path, synthetic_data, capsys):
    """--study was ignored where SWEEP_DIR has a sweep.json: the report was of another study."""
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    assert cli.main(["sweep", "report", str(sweep_dir), "--study", "other"]) == 2
    assert "--study 'other': the sweep in" in capsys.readouterr().err
    assert not (sweep_dir / "report").exists()


def test_a_worker_joining_a_missing_database_file_creates_none(tmp_path, capsys):
    db = tmp_path / "typo.db"
    assert cli.main(["sweep", str(tmp_path / "w"), "--worker", "--storage", f"sqlite:///{db}"]) == 2
    assert f"no database file {db}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_report_names_the_storage_it_opened_when_the_study_is_not_there(tmp_path, synthetic_data, capsys):
    """It named SWEEP_DIR/optuna.journal while it had looked in the --storage database."""
    import optuna
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.storages.RDBStorage(url)  # a database without the sweep's study
    assert cli.main(["sweep", "report", str(sweep_dir), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert f"{url} holds no study named 'zhbert-sweep'" in err and "optuna.journal" not in err


def test_monitor_of_an_empty_path_is_refused_not_the_current_directory():
    """`zhbert monitor "$RUNS"` with RUNS unset served the current directory's runs."""
    from zhbert.monitor.server import check_roots
    with pytest.raises(UserError, match="'' does not exist; give a run directory"):
        check_roots([""])


def test_a_resumed_sweeps_saved_workers_are_checked_against_this_machines_cores(tmp_path, two_cores):
    """--workers-per-machine was checked on the machine that started the sweep only; resumed
    on one with fewer cores, sweep.json's count started that many workers (a review)."""
    from types import SimpleNamespace
    with pytest.raises(UserError, match="keeps --workers-per-machine 3, more than the 2 cores"):
        command._saved_workers(SimpleNamespace(workers_per_machine=3), tmp_path)
    assert command._saved_workers(SimpleNamespace(workers_per_machine=2), tmp_path) == 2


def test_a_folder_without_a_sweep_is_told_to_start_one_elsewhere(tmp_path, synthetic_data, capsys):
    """`zhbert sweep DATA` said to start one with `--out DATA`, which is then refused (a data
    directory is no earlier sweep); an empty folder may be the sweep's --out."""
    for argv in (["sweep", str(synthetic_data)], ["sweep", "report", str(synthetic_data)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "--out NEW_DIR` (a new or empty folder" in err and f"--out {synthetic_data}`" not in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["sweep", str(tmp_path / "empty")]) == 2
    assert f"--out {tmp_path / 'empty'}`" in capsys.readouterr().err


def test_a_resume_with_another_storage_or_study_is_refused(tmp_path, synthetic_data, capsys):
    """`zhbert sweep DIR --storage OTHER` (or --study OTHER) went on in the sweep's own
    storage and study, the one named never created, exit 0."""
    db = tmp_path / "s.db"
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1,
                                            steps=4, storage=f"sqlite:///{db}"))
    other = tmp_path / "other.db"
    assert cli.main(["sweep", str(sweep_dir), "--storage", f"sqlite:///{other}"]) == 2
    err = capsys.readouterr().err
    assert f"the sweep in {sweep_dir} keeps its trials in sqlite:///{db}" in err and not other.exists()
    assert cli.main(["sweep", str(sweep_dir), "--study", "another"]) == 2
    assert "is the study 'zhbert-sweep'" in capsys.readouterr().err
    args = argparse.ArgumentParser()
    command.add_arguments(args)
    same = args.parse_args([str(sweep_dir), "--storage", f"sqlite:///{db}", "--study", spec.study_name])
    assert command.prepare(same)[1].storage == spec.storage  # its own: resumes


def test_the_storage_refusal_hides_passwords(tmp_path, synthetic_data, capsys):
    """The --storage refusal printed both URLs' passwords (every other storage message hides them)."""
    import dataclasses

    from zhbert.sweep.study import read_spec, write_spec
    sweep_dir, _ = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    write_spec(sweep_dir, dataclasses.replace(read_spec(sweep_dir),
                                              storage="postgresql://alice:s3cretPW@db.example/zhbert"))
    assert cli.main(["sweep", str(sweep_dir), "--storage", "postgresql://alice:otherPW@db2.example/zhbert"]) == 2
    err = capsys.readouterr().err
    assert "keeps its trials in postgresql://alice:***@db.example/zhbert" in err
    assert "s3cretPW" not in err and "otherPW" not in err
