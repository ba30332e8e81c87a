"""What a sweep says at its end and why it pruned: a lost worker and the sweep's own
Ctrl-Cs are no failures, and a pruning reason prints its deciding numbers apart."""

from test_sweep import _args, _dead_pid, _space, _study
from zhbert.sweep import command, outcome
from zhbert.sweep.forecast import Forecast
from zhbert.sweep.liveness import reap_stale
from zhbert.sweep.pruner import decide
from zhbert.sweep.worker import claim


def _started(tmp_path, data, trials: int):
    """A new sweep of 4-step trials, its study and its first trial, claimed in trials/0000."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), data, tmp_path / "s", trials=trials, steps=4))
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    return sweep_dir, spec, study, trial


def test_the_summary_counts_interrupts_and_lost_attempts_apart_from_failures(tmp_path, synthetic_data):
    """A worker killed once (kill -9) and five Ctrl-Cs said "6 failed attempts"."""
    sweep_dir, spec, study, trial = _started(tmp_path, synthetic_data, trials=1)
    for k, v in {"worker_host": "here", "worker_pid": _dead_pid(), "heartbeat": 0.0}.items():
        trial.set_user_attr(k, v)
    assert reap_stale(study, grace_s=60) == [trial.number]  # the kill -9: lost, retried
    for _ in range(5):
        trial = claim(study, spec, sweep_dir)
        outcome.tell_failed(study, trial, "interrupted", "Ctrl-C", retry=True)
    line = command.summary(sweep_dir, spec)
    assert "0 failed attempts, 1 lost attempt (retried), 5 interrupted, 1 waiting)" in line
    # the retry fails on its own (as _finish tells a trainer's error): counted, not retried
    outcome.tell_failed(study, claim(study, spec, sweep_dir), "trainer", "diverged", retry=False)
    # the five Ctrl-Cs' retry has finished: none of them is still to come
    assert "(0 complete, 0 pruned, 1 failed attempt, 1 lost attempt (retried), 5 interrupted and " \
           "resumed, 0 waiting)" in command.summary(sweep_dir, spec)


def _fc(lo: float, hi: float) -> Forecast:
    return Forecast(mean=(lo + hi) / 2, lo80=lo, hi80=hi, lo95=lo - 0.01, hi95=hi + 0.01, method="made up")


def test_a_pruning_reason_prints_its_bound_and_the_best_apart():
    """`80%: 0.1017 to 0.1199; best finished 0.1199` read as pruned against the rule (upper
    end below the best): 0.11986 and 0.11994 rounded alike."""
    d = decide(_fc(0.10172, 0.11986), 0.11994, maximize=True)
    assert d.prune and "80%: 0.10172 to 0.11986); best finished 0.11994" in d.reason
    d = decide(_fc(2.50004, 2.7), 2.50001, maximize=False)  # a loss: the lower end decides
    assert d.prune and "80%: 2.50004 to 2.70000); best finished 2.50001" in d.reason
    # apart at 4 digits: 4 digits, as before; equal: no endless digits
    assert "80%: 0.3000 to 0.3900); best finished 0.4000" in decide(_fc(0.30, 0.39), 0.40, True).reason
    assert "best finished 0.4000" in decide(_fc(0.30, 0.40), 0.40, True).reason


def _trials(tmp_path, synthetic_data, outcomes):
    """A sweep (no training) whose trials ended as ``outcomes`` say, each with a history
    that reached its last step; returns the sweep directory."""
    import optuna
    from test_monitor import write_run
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "runs" / "s",
                                            trials=len(outcomes), steps=4))
    _, study = _study(sweep_dir)
    for n, (state, values) in enumerate(outcomes):
        trial = claim(study, spec, sweep_dir)
        trial.set_user_attr("trial_dir", f"trials/{n:04d}")
        write_run(sweep_dir / "trials" / f"{n:04d}", n=n + 2, total=10 * (n + 2))
        for step, v in enumerate(values, 1):
            trial.report(v, step)
        state = getattr(optuna.trial.TrialState, state)
        study.tell(trial, values[-1] if state.name == "COMPLETE" else None, state=state)
    return sweep_dir


def test_the_monitor_takes_a_trials_state_from_the_study_not_its_history(tmp_path, synthetic_data):
    """A trial whose trainer failed after its last eval (its history at its last step, and
    the highest) was named the sweep's best; the sweep counts it as failed."""
    from starlette.testclient import TestClient

    from zhbert.monitor.server import create_app
    from zhbert.sweep.study import read_spec, trial_states
    sweep_dir = _trials(tmp_path, synthetic_data, [("COMPLETE", [0.1, 0.2]), ("PRUNED", [0.1]),
                                                   ("FAIL", [0.1, 982599.8])])
    assert trial_states(sweep_dir, read_spec(sweep_dir)) == {
        "trials/0000": "COMPLETE", "trials/0001": "PRUNED", "trials/0002": "FAIL"}
    body = TestClient(create_app([tmp_path / "runs"])).get("/api/runs").json()
    (g,) = body["sweeps"]
    assert g["best"] == "s/trials/0000" and g["pruned"] == ["s/trials/0001"] and g["error"] is None
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id["s/trials/0002"]["trial_state"] == "FAIL"


def test_a_report_keeps_a_failed_or_pruned_trials_last_eval_apart_from_the_value(
        tmp_path, synthetic_data, capsys):
    import json

    from zhbert import cli
    sweep_dir = _trials(tmp_path, synthetic_data, [("COMPLETE", [0.1, 0.2]), ("PRUNED", [0.1, 0.15]),
                                                   ("FAIL", [0.1, 982599.8])])
    assert cli.main(["sweep", "report", str(sweep_dir)]) == 0
    rows = json.loads((sweep_dir / "report" / "sweep_report.json").read_text())["trials"]
    assert [(r["state"], r["value"], r["last_value"], r["last_value_step"]) for r in rows] == [
        ("COMPLETE", 0.2, None, None), ("PRUNED", None, 0.15, 2), ("FAIL", None, 982599.8, 2)]
    md = (sweep_dir / "report" / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert "final eval_mlm_acc | last eval (not complete)" in table[0]
    assert "| - | 982,600 at step 2 |" in table[3] and "| 0.1500 at step 2 |" in table[2]
    assert "| 0.2000 | - |" in table[1]
    # a plain file as --out: it is a file, not a folder that "would be deleted"
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    capsys.readouterr()
    assert cli.main(["sweep", "report", str(sweep_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is a file" in err and "deleted" not in err and out.read_text() == "mine\n"


def test_train_minutes_read_as_minutes():
    from zhbert.sweep.report import _minutes
    assert [_minutes(m) for m in (None, 0.0123, 0.2345, 12.345, 130.4)] == ["-", "0.01", "0.2", "12.3", "130"]


def test_an_interrupted_attempt_whose_retry_finished_is_told_as_resumed(tmp_path, synthetic_data):
    """After a Ctrl-C and a resume: "3 of 3 trials finished (3 complete, ..., 1 interrupted,
    0 waiting)" read as if a fourth trial were still to come."""
    sweep_dir, spec, study, first = _started(tmp_path, synthetic_data, trials=2)
    outcome.tell_failed(study, first, "interrupted", "Ctrl-C", retry=True)
    line = command.summary(sweep_dir, spec)  # not resumed yet: interrupted, its retry waiting
    assert "0 failed attempts, 1 interrupted, 1 waiting)" in line
    retry = claim(study, spec, sweep_dir)
    outcome.tell_failed(study, retry, "interrupted", "Ctrl-C", retry=True)  # twice
    retry = claim(study, spec, sweep_dir)
    other = claim(study, spec, sweep_dir)
    study.tell(retry, 0.5)
    study.tell(other, 0.4)
    line = command.summary(sweep_dir, spec)
    assert "2 of 2 trials finished (2 complete, 0 pruned, 0 failed attempts, 2 interrupted and " \
           "resumed, 0 waiting)" in line
    assert ", 2 interrupted," not in line
