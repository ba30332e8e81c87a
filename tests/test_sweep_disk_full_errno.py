"""A trial's trainer that ran out of disk space, told by its errno rather than by the OS's
English words (each test fails on the code before it): in another locale, or with its
message wrapped over lines, the full disk read as a failure of the trial, counted for good,
and the sweep went on to fail every next trial the same way."""

import errno
import os
import sys

import optuna
import pytest

from test_sweep import _study
from test_sweep_faults import _new
from zhbert import failure
from zhbert.errors import UserError
from zhbert.sweep import outcome, worker
from zhbert.sweep.liveness import counted
from zhbert.sweep.worker import WorkerOptions, claim

# a trainer failing on an OS error: its CLI's output (in French), and what the CLI tells the
# worker (failure.tell_failure; the CLI calls it where it prints a UserError)
TRAINER = """
import errno, os, sys
from zhbert.errors import UserError
from zhbert.failure import tell_failure
if sys.argv[2] == "wrapped":  # a trainer of before: no errno told, its message over two lines
    print(f"zhbert: error: could not write checkpoint {sys.argv[1]}/checkpoints/step_8: No space\\n"
          "  left on device; the previous checkpoints are intact.", file=sys.stderr)
    sys.exit(2)
where = sys.argv[1] if sys.argv[1].startswith("/dev") else os.path.join(sys.argv[1], "checkpoints", "x")
try:
    try:
        raise OSError(int(sys.argv[2]), "Plus d'espace disponible sur le p\\u00e9riph\\u00e9rique", where)
    except OSError as exc:
        raise UserError(f"impossible d'\\u00e9crire {where} : {exc.strerror}") from None
except UserError as exc:
    tell_failure(exc)
    print(f"zhbert: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def _trial_ends(tmp_path, data, monkeypatch, where: str | None = None, code: int | str = errno.ENOSPC):
    """One trial whose (fake) trainer fails as TRAINER does: run_trial's answer, the trial."""
    sweep_dir, spec = _new(tmp_path, data, trials=1)
    _, study = _study(sweep_dir)

    def command(spec, opts, trial_dir, params):
        return [sys.executable, "-c", TRAINER, where or str(trial_dir), str(code)]
    monkeypatch.setattr(worker, "train_command", command)
    trial = claim(study, spec, sweep_dir)
    out = worker.run_trial(study, trial, spec, WorkerOptions(sweep_dir, threads=1, poll_s=0.05),
                           optuna.pruners.NopPruner(), worker._Stop(), log=lambda m: None)
    return out, study.get_trials()[0]


def test_a_full_disk_in_another_locale_is_told_by_its_errno(tmp_path, synthetic_data, monkeypatch):
    out, trial = _trial_ends(tmp_path, synthetic_data, monkeypatch)
    assert out.startswith(outcome.DISK_FULL), out
    assert trial.user_attrs["failure"] == "disk_full" and not counted(trial)


def test_a_full_dev_shm_is_a_failure_whatever_its_errno(tmp_path, synthetic_data, monkeypatch):
    out, trial = _trial_ends(tmp_path, synthetic_data, monkeypatch, where="/dev/shm/torch_1")
    assert out.startswith("failed: ") and trial.user_attrs["failure"] == "trainer"


def test_another_os_error_is_a_failure(tmp_path, synthetic_data, monkeypatch):
    out, _ = _trial_ends(tmp_path, synthetic_data, monkeypatch, code=errno.EACCES)
    assert out.startswith("failed: ")


def test_a_wrapped_message_of_an_older_trainer_is_still_read(tmp_path, synthetic_data, monkeypatch):
    out, trial = _trial_ends(tmp_path, synthetic_data, monkeypatch, code="wrapped")
    assert out.startswith(outcome.DISK_FULL) and trial.user_attrs["failure"] == "disk_full", out


def test_an_older_trainers_errno_number_is_read_and_dev_shm_is_not_the_disk(tmp_path):
    trial_dir = tmp_path / "trials" / "0000"
    log = trial_dir / "train.log"
    trial_dir.mkdir(parents=True)
    log.write_text(f"zhbert: error: could not append to {trial_dir}/history.jsonl: [Errno 28] ...\n")
    assert outcome._out_of_space_here(None, outcome._error_text(log), trial_dir)
    log.write_text("zhbert: error: unable to write to file </torch_1>: No space left on device (28)\n")
    assert not outcome._out_of_space_here(None, outcome._error_text(log), trial_dir)


def test_the_os_error_behind_a_user_error_is_found():
    from zhbert.fileio import cannot_write
    from zhbert.failure import os_error_behind
    full = OSError(errno.ENOSPC, "x", "/a/b")
    assert os_error_behind(cannot_write("/a/b", full, "kept")).errno == errno.ENOSPC
    try:
        try:
            raise full
        except OSError:
            raise UserError("could not append") from None
    except UserError as exc:
        assert os_error_behind(exc) is full
    assert os_error_behind(UserError("bad input")) is None


@pytest.mark.parametrize("fd", ["", "x"])
def test_tell_failure_outside_a_sweep_does_nothing(monkeypatch, fd):
    monkeypatch.setenv(failure.FAILURE_FD_ENV, fd)
    written = []
    monkeypatch.setattr(os, "write", lambda *a: written.append(a))
    full = OSError(errno.ENOSPC, "No space left on device", "/x/history.jsonl")
    try:
        raise UserError("could not append") from full
    except UserError as exc:
        failure.tell_failure(exc)  # no pipe named: nothing written, no error
    assert written == []


def test_the_cli_tells_the_errno_behind_a_users_error(monkeypatch, capsys):
    """tell_failure is nothing until the CLI calls it where it prints a UserError: a real
    trainer's full disk was told by its words only."""
    import json
    import zhbert.status
    from zhbert.cli import main

    def failing(args):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/tmp/run/history.jsonl")
        except OSError:
            raise UserError("could not append to /tmp/run/history.jsonl") from None
    monkeypatch.setattr(zhbert.status, "run", failing)
    r, w = os.pipe()
    monkeypatch.setenv(failure.FAILURE_FD_ENV, str(w))
    try:
        assert main(["status", "some-run"]) == 2
    finally:
        os.close(w)
    told = json.loads(os.read(r, 4096).decode())
    os.close(r)
    assert told == {"errno": "ENOSPC", "path": "/tmp/run/history.jsonl"}
    assert "could not append" in capsys.readouterr().err


def test_a_trials_pipe_is_closed_however_the_trial_ends(tmp_path, synthetic_data, monkeypatch):
    """The read end of each trainer's pipe stayed open after a complete or stopped trial (only
    a failure read it): a long-lived worker lost one file descriptor a trial."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=3)
    _, study = _study(sweep_dir)
    monkeypatch.setattr(worker, "train_command", lambda *a: [  # stopped by a signal: rc -15
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        trial = claim(study, spec, sweep_dir)
        out = worker.run_trial(study, trial, spec, WorkerOptions(sweep_dir, threads=1, poll_s=0.05),
                               optuna.pruners.NopPruner(), worker._Stop(), log=lambda m: None)
        assert out.startswith("stopped")
    assert len(os.listdir("/proc/self/fd")) == before
