"""--force and a worker between trials (each test fails on the code before it): --force saw
only the workers holding a running trial (their heartbeats), so it deleted the sweep under a
worker that had finished one trial and was about to ask for the next, and that worker then
crashed with a traceback on the missing journal (or went on in the new sweep)."""

import json
import os
import socket

import pytest
from optuna.trial import TrialState

from test_sweep import _args, _dead_pid, _study
from test_sweep_faults import _new
from test_sweep_workers import _FakeRun
from zhbert.cli import main as cli_main
from zhbert.errors import UserError
from zhbert.sweep import command, liveness, study as sweep_study, worker


def _force(tmp_path, data, sweep_dir) -> str:
    """`zhbert sweep SPACE --out SWEEP_DIR --force` refused: its message (one line, exit 2 in
    the CLI). Only its prepare: where it was not refused, no new sweep runs in the test."""
    with pytest.raises(UserError) as refused:
        command.prepare(_args(tmp_path / "space.toml", data, sweep_dir, trials=2, steps=8, force=True))
    return str(refused.value)


def _between_trials(monkeypatch, then) -> None:
    """A worker whose trainers are faked (complete at once), calling ``then()`` once its first
    trial is done and told: it holds no running trial and sends no heartbeat then."""
    monkeypatch.setattr(worker, "TrialRun", _FakeRun)
    monkeypatch.setattr(_FakeRun, "rc", 0)
    real, done = worker.run_trial, []

    def run_trial(*a, **kw):
        outcome = real(*a, **kw)
        if not done:
            done.append(then())
        return outcome
    monkeypatch.setattr(worker, "run_trial", run_trial)


def test_force_is_refused_while_a_worker_waits_between_trials(tmp_path, synthetic_data, monkeypatch):
    sweep_dir, _ = _new(tmp_path, synthetic_data, trials=2)
    seen = []

    def force():
        _, study = _study(sweep_dir)
        assert liveness.live_trials(study, 120) == []  # no heartbeat to see it by
        seen.append(_force(tmp_path, synthetic_data, sweep_dir))
    _between_trials(monkeypatch, force)
    assert cli_main(["sweep", str(sweep_dir), "--worker"]) == 0
    err, = seen
    assert "has a live worker" in err and "nothing was deleted" in err and "\n" not in err
    assert f"zhbert sweep --worker pid {os.getpid()} on {socket.gethostname()}" in err
    assert "Traceback" not in err and (sweep_dir / "trials" / "0000").exists()
    done = [t for t in _study(sweep_dir)[1].get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    assert list((sweep_dir / liveness.WORKERS).iterdir()) == []  # its entry went with it


def _entry(sweep_dir, name: str, **fields):
    path = sweep_dir / ".workers" / name  # liveness.WORKERS
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"what": "zhbert sweep --worker", "started": "2026-01-01T00:00:00+00:00",
                                "host": socket.gethostname(), **fields}))
    return path


def test_force_skips_dead_workers_entries_and_counts_another_hosts(tmp_path, synthetic_data):
    """A worker killed by -9 leaves its entry: its pid dead on this host (or reused by another
    process, started at another time), --force goes on; one on another host cannot be asked."""
    sweep_dir, _ = _new(tmp_path, synthetic_data, trials=2)
    _entry(sweep_dir, "dead.json", pid=_dead_pid())
    ticks = liveness._start_ticks(os.getpid())
    if ticks is not None:  # Linux: this live pid, but not the process that registered
        _entry(sweep_dir, "reused.json", pid=os.getpid(), start_ticks=ticks + 1)
    remote = _entry(sweep_dir, "remote.json", pid=os.getpid(), host=f"not-{socket.gethostname()}")
    err = _force(tmp_path, synthetic_data, sweep_dir)
    assert f"on not-{socket.gethostname()}" in err and f"remove {remote}" in err and "\n" not in err
    remote.unlink()
    command.prepare(_args(tmp_path / "space.toml", synthetic_data, sweep_dir, trials=2, steps=8,
                          force=True))
    assert not (sweep_dir / ".workers").exists()  # stale entries gone with the old sweep


def test_a_live_workers_entry_names_it_and_a_half_written_one_is_not_read(tmp_path):
    with liveness.registered(tmp_path, "zhbert sweep") as path:
        (path.parent / f".{path.name}.tmp").write_text('{"pid": ')  # atomic_write_json's, mid-write
        (path, entry), = liveness.live_workers(tmp_path)
        assert (entry["pid"], entry["host"], entry["what"]) == (os.getpid(), socket.gethostname(),
                                                                "zhbert sweep")
    assert liveness.live_workers(tmp_path) == [] and not path.exists()


@pytest.mark.parametrize("then", ["deleted", "started over"])
def test_a_worker_whose_sweep_is_deleted_under_it_stops_with_one_line(
        tmp_path, synthetic_data, monkeypatch, capsys, then):
    """Deleted anyway (rm, or a --force racing its start): the worker read a missing
    journal with a traceback, or went on claiming trials in the new sweep's journal."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=2)

    def delete():
        sweep_study.start_over(sweep_dir, "", spec.study_name)
        if then == "started over":  # the same space: only the journal's creator differs
            command.prepare(_args(tmp_path / "space.toml", synthetic_data, sweep_dir, trials=2, steps=8))
    _between_trials(monkeypatch, delete)
    assert cli_main(["sweep", str(sweep_dir), "--worker"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"zhbert: error: {sweep_dir}: the sweep this process ran was deleted")
    if then == "started over":
        assert _study(sweep_dir)[1].get_trials() == []  # nothing of the old worker's in it
    else:
        assert not (sweep_dir / "optuna.journal").exists()


def test_a_passing_read_error_is_not_a_deleted_sweep(tmp_path, monkeypatch):
    """A shared disk's ESTALE or EIO on the journal had read as "the sweep was deleted": the
    worker stopped with exit 2, which stops every other worker (a review)."""
    import errno
    from types import SimpleNamespace
    spec = SimpleNamespace(storage=None, study_name="s")
    (tmp_path / sweep_study.JOURNAL).write_bytes(b'{"op_code": 0, "worker_id": "w"}\n')
    mark = sweep_study.sweep_mark(tmp_path, spec)
    real_open = open

    def flaky(path, *a, **k):
        if str(path).endswith(sweep_study.JOURNAL):
            raise OSError(errno.ESTALE, "Stale file handle")
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", flaky)
    sweep_study.require_same_sweep(tmp_path, spec, mark)  # no SweepGone
    monkeypatch.setattr("builtins.open", real_open)
    (tmp_path / sweep_study.JOURNAL).unlink()
    with pytest.raises(sweep_study.SweepGone):
        sweep_study.require_same_sweep(tmp_path, spec, mark)
