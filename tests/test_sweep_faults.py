"""zhbert sweep on faults and odd input: what a review found (each test fails on the code
before it): options that conflicted or were ignored, retries judged on replayed evals, a
live trial failed as lost and its worker crashing, a moved data directory, Ctrl-C retries
counted as lost ones, a loss objective without a noise floor, a corrupt sweep.json, a
retry reporting its dead attempt's evals before its trainer rewrote the history."""

import json
import math
import shutil
import types

import numpy as np
import optuna
from optuna.trial import TrialState

from test_sweep import SPACE, _args, _dead_pid, _space, _study
from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.sweep import command, outcome, worker
from zhbert.sweep.forecast import eval_noise_sd
from zhbert.sweep.liveness import MAX_RETRY, counted, reap_stale
from zhbert.sweep.worker import TrialRun, WorkerOptions, claim


def _new(tmp_path, data, **kw):
    return command.prepare(_args(_space(tmp_path), data, tmp_path / "s", **{"trials": 2, "steps": 8, **kw}))


def test_a_space_fixing_steps_against_steps_is_refused_and_the_sweeps_own_settings_win(
        tmp_path, synthetic_data, capsys):
    space = _space(tmp_path, SPACE.replace("[train]\n", "[train]\nsteps = 30\n"))
    code = cli_main(["sweep", str(space), "--data", str(synthetic_data), "--out", str(tmp_path / "s"),
                     "--steps", "60"])
    assert code == 2 and "give one of them" in capsys.readouterr().err
    _, spec = command.prepare(_args(space, synthetic_data, tmp_path / "s2", trials=1))
    items = spec.trial_overrides({"train.lr": 2e-3, "data.mask_prob": 0.1})
    assert spec.steps == 30 and items[-2:] == ["train.steps=30", f"train.eval_every={spec.eval_every}"]
    assert load_config("tiny", items).train.steps == 30


def test_a_retry_judges_only_its_newest_eval(tmp_path):
    """A retry replays its evals: judging each against a forecast of the whole history
    pruned at a replayed step a trial that, running on, was kept."""
    (tmp_path / "history.jsonl").write_text("".join(
        json.dumps({"type": "eval", "step": s, "eval_mlm_acc": 0.05 + s / 1000}) + "\n"
        for s in (10, 20, 30, 40)))
    judged = []

    class Trial:
        def report(self, value, step):
            reported.append(step)

        def should_prune(self):
            judged.append(list(reported))
            return True

    reported = []
    spec = types.SimpleNamespace(steps=100, metric="eval_mlm_acc")
    assert TrialRun(Trial(), spec, None, tmp_path).report_new(prune=True) is True
    assert judged == [[10, 20, 30, 40]]


def test_a_grace_period_shorter_than_the_heartbeats_is_refused(tmp_path, synthetic_data, capsys):
    code = cli_main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out",
                     str(tmp_path / "s"), "--grace-seconds", "3"])
    assert code == 2 and "--grace-seconds must be at least" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _fake_run(on_report, stops, evals=()):
    class Run:  # the trainer process, faked
        def __init__(self, trial, spec, opts, trial_dir, last_beat):
            self.trial, self.spec, self.opts, self.trial_dir = trial, spec, opts, trial_dir
            self.reported = set()
            self.proc = types.SimpleNamespace(poll=lambda: 0 if evals else None, returncode=0)

        def told(self):  # no pipe: the trainer told no errno
            return None

        def start(self):
            stops.append(("start", (self.trial_dir / "pruned.json").exists(),
                          self.trial.study._storage.get_trial(self.trial._trial_id).user_attrs.get("pruned_by")))

        def beat(self):
            return True

        def report_new(self, prune):
            return on_report(self)

        def evals(self):
            return list(evals)

        def stop(self):
            stops.append("stop")
    return Run


def test_a_trial_failed_by_another_worker_is_given_up_without_a_crash(tmp_path, synthetic_data,
                                                                     monkeypatch):
    """Another worker failed the trial as lost: its report (or tell) was refused with an
    exception that ended this worker (exit 1, "Cannot tell a FAIL trial")."""
    sweep_dir, spec = _new(tmp_path, synthetic_data)
    _, study = _study(sweep_dir)
    stops = []

    def reaped_meanwhile(run):
        study._storage.set_trial_state_values(run.trial._trial_id, TrialState.FAIL)
        run.trial.report(0.1, 2)
        return False
    monkeypatch.setattr(worker, "TrialRun", _fake_run(reaped_meanwhile, stops))
    trial = claim(study, spec, sweep_dir)
    out = worker.run_trial(study, trial, spec, WorkerOptions(sweep_dir, threads=1, poll_s=0),
                           optuna.pruners.NopPruner(), worker._Stop(), log=lambda m: None)
    assert out.startswith("taken over") and stops[-1] == "stop"


def test_a_retry_starts_with_no_prune_left_from_its_attempt(tmp_path, synthetic_data, monkeypatch):
    """A worker killed while recording a prune left pruned.json and the pruned_by attribute,
    which the retry inherited: status and the dashboard read it as pruned."""
    sweep_dir, spec = _new(tmp_path, synthetic_data)
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("pruned_by", {"pruner": "ForecastPruner", "step": 2})
    (sweep_dir / "trials" / "0000").mkdir(parents=True)
    (sweep_dir / "trials" / "0000" / "pruned.json").write_text("{}")
    stops = []
    monkeypatch.setattr(worker, "TrialRun", _fake_run(lambda run: False, stops, evals=[(8, 0.2)]))
    out = worker.run_trial(study, trial, spec, WorkerOptions(sweep_dir, threads=1, poll_s=0),
                           optuna.pruners.NopPruner(), worker._Stop(), log=lambda m: None)
    assert out.startswith("complete") and stops[0] == ("start", False, None)


def test_a_resume_or_worker_whose_data_moved_is_refused_before_any_trial(tmp_path, synthetic_data,
                                                                        capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    sweep_dir, _ = _new(tmp_path, data)
    data.rename(tmp_path / "moved")
    for extra in ([], ["--worker"]):
        assert cli_main(["sweep", str(sweep_dir), *extra]) == 2
        assert "data" in capsys.readouterr().err
    assert not (sweep_dir / "trials").exists()


def test_options_fixed_at_the_start_are_refused_on_resume(tmp_path, synthetic_data, capsys):
    sweep_dir, _ = _new(tmp_path, synthetic_data)
    assert cli_main(["sweep", str(sweep_dir), "--steps", "500", "--objective", "loss"]) == 2
    err = capsys.readouterr().err
    assert "--steps 500: the sweep started with 8; --objective loss: the sweep started with acc" in err
    assert json.loads((sweep_dir / "sweep.json").read_text())["steps"] == 8


def test_ctrl_c_retries_are_not_limited_and_lost_workers_are(tmp_path, synthetic_data):
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    for _ in range(MAX_RETRY + 2):  # more Ctrl-Cs than lost-worker retries: always resumed
        outcome.tell_failed(study, trial, "interrupted", "Ctrl-C", retry=True)
        trial = claim(study, spec, sweep_dir)
        assert trial.user_attrs["trial_dir"] == "trials/0000"
    lost = 0
    while trial is not None and trial.user_attrs.get("trial_dir") == "trials/0000":  # a retry
        for k, v in {"worker_host": "here", "worker_pid": _dead_pid(), "heartbeat": 0.0}.items():
            trial.set_user_attr(k, v)
        assert reap_stale(study, grace_s=60) == [trial.number]
        trial = claim(study, spec, sweep_dir)
        lost += trial is not None and trial.user_attrs.get("trial_dir") == "trials/0000"
        assert lost <= MAX_RETRY + 1
    assert lost == MAX_RETRY
    # given up: a failure that counts (the sweep of one trial is done) and is reported why
    from zhbert.sweep.liveness import finished_count
    given_up, = [t for t in study.get_trials() if t.user_attrs.get("failure") == "given_up"]
    assert trial is None and finished_count(study) == 1
    assert given_up.user_attrs["message"].endswith("stopped answering; given up after 3 retries")


def test_a_loss_objective_has_a_noise_floor_from_its_evals_scatter(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.arange(1, 41) * 50
    loss = 3 + 4 * np.exp(-steps / 500) + rng.normal(0, 0.02, len(steps))
    acc = [[0.30, 0.34]] * len(steps)
    (tmp_path / "history.jsonl").write_text("".join(
        json.dumps({"type": "eval", "step": int(s), "eval_mlm_loss": float(v), "eval_mlm_acc": 0.32,
                    "eval_mlm_acc_ci95": ci}) + "\n" for s, v, ci in zip(steps, loss, acc)))
    assert math.isclose(eval_noise_sd(tmp_path, "eval_mlm_acc"), 0.04 / (2 * 1.959964), rel_tol=1e-3)
    assert 0.009 < eval_noise_sd(tmp_path, "eval_mlm_loss") < 0.037  # true 0.02; it was 0, no floor
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    (tmp_path / "history.jsonl").write_text("\n".join(lines[:3]) + "\n")
    assert eval_noise_sd(tmp_path, "eval_mlm_loss") == 0.0  # three evals tell no scatter


def test_a_corrupt_sweep_json_is_one_message_and_is_kept_even_with_force(tmp_path, synthetic_data, capsys):
    """Not a zhbert spec: maybe another program's file, so --force refuses it too (outputs.check_out);
    a zhbert spec it cannot read is started over (test_output_guard.py)."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text("[]")
    assert cli_main(["sweep", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a zhbert sweep spec" in err and "another --out" in err and "Traceback" not in err
    assert cli_main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out", str(out),
                     "--trials", "1", "--steps", "8", "--force"]) == 2
    assert "is not an earlier zhbert sweep" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["sweep.json"] and (out / "sweep.json").read_text() == "[]"


def test_an_out_that_is_a_file_is_refused(tmp_path, synthetic_data, capsys):
    (tmp_path / "afile").write_text("x")
    code = cli_main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data),
                     "--out", str(tmp_path / "afile")])
    assert code == 2 and "is a file" in capsys.readouterr().err


def test_a_claimed_retry_is_this_workers_at_once(tmp_path, synthetic_data):
    """A retry carries its dead attempt's worker pid until stamped: another worker's reaper
    failed it as lost in that window, and the claiming worker crashed on its first write."""
    import os
    import socket
    import time
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=1)
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    for k, v in {"trial_dir": "trials/0000", "worker_host": socket.gethostname(),
                 "worker_pid": _dead_pid(), "heartbeat": time.time()}.items():
        trial.set_user_attr(k, v)
    assert reap_stale(study, grace_s=60) == [0]
    retry = claim(study, spec, sweep_dir)
    assert study._storage.get_trial(retry._trial_id).user_attrs["worker_pid"] == os.getpid()
    assert reap_stale(study, grace_s=60) == []  # the reaper of another worker, at once


def test_a_resume_on_other_data_or_another_sampler_seed_is_refused(tmp_path, synthetic_data, capsys):
    """A resume's --data (or the start command again with another --data or --sampler-seed)
    went on in silence: new trials trained on other data, compared as if the same."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    sweep_dir, _ = _new(tmp_path, data)
    other = tmp_path / "other"
    shutil.copytree(synthetic_data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["validation"] = {**manifest["splits"]["validation"], "documents": 10**6}
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert cli_main(["sweep", str(sweep_dir), "--data", str(other)]) == 2
    assert "holds other data than this sweep started on" in capsys.readouterr().err
    space = str(_space(tmp_path))
    start = ["sweep", space, "--out", str(sweep_dir), "--steps", "8", "--trials", "2"]
    assert cli_main([*start, "--data", str(other)]) == 2
    assert "holds other data" in capsys.readouterr().err
    assert cli_main([*start, "--data", str(data), "--sampler-seed", "7"]) == 2
    assert "--sampler-seed differs" in capsys.readouterr().err
    assert not (sweep_dir / "trials").exists()


def _evals(steps, acc):
    return "".join(json.dumps({"type": "eval", "step": s, "eval_mlm_acc": acc(s)}) + "\n" for s in steps)


def _retry_started(tmp_path, monkeypatch, history: str, checkpoint: int | None):
    """A retry in a trial directory holding its dead attempt's ``history`` (and a checkpoint
    at step ``checkpoint``), its trainer started: faked, a process that has not yet reached
    the history."""
    if checkpoint is not None:
        (tmp_path / "checkpoints" / f"step_{checkpoint:08d}").mkdir(parents=True)
    (tmp_path / "history.jsonl").write_text(history)
    started = []
    monkeypatch.setattr(worker, "train_command", lambda *a: ["zhbert", "train", "--resume"
                                                              if checkpoint is not None else "--force"])
    monkeypatch.setattr(worker.subprocess, "Popen", lambda cmd, **kw: started.append(cmd) or
                        types.SimpleNamespace(poll=lambda: None))
    reported = []

    class Trial:
        params: dict = {}

        def report(self, value, step):
            reported.append((step, value))

        def should_prune(self):
            return True  # judges whatever it is shown

    spec = types.SimpleNamespace(steps=100, metric="eval_mlm_acc")
    run = TrialRun(Trial(), spec, WorkerOptions(tmp_path, threads=1), tmp_path)
    run.start()
    assert started
    return run, reported


def test_a_retry_reports_none_of_its_dead_attempts_evals_before_its_trainer_resumes(
        tmp_path, monkeypatch):
    """The retry's first polls, before its trainer truncated the history back to its
    checkpoint (seconds after the start), read the dead attempt's evals past step 20,
    reported them and pruned the trial on the stale one at step 40."""
    from zhbert.history import rewrite_for_resume
    header = json.dumps({"type": "header", "schema": "zhbert-history", "version": 1}) + "\n"
    run, reported = _retry_started(tmp_path, monkeypatch,
                                   header + _evals((10, 20, 30, 40), lambda s: 0.01 * s), 20)
    stale = run.report_new(prune=True)
    assert reported == [] and not stale, f"reported the dead attempt's evals {reported}"
    rewrite_for_resume(tmp_path / "history.jsonl", 20)  # the resumed trainer, at last
    with open(tmp_path / "history.jsonl", "a") as f:
        f.write(json.dumps({"type": "header", "resumed_from": 20}) + "\n" + _evals([30], lambda s: 0.5))
    assert run.report_new(prune=False) is False
    assert reported == [(10, 0.1), (20, 0.2), (30, 0.5)]  # the replayed ones, then its own


def test_a_retry_that_starts_over_reports_its_new_runs_evals(tmp_path, monkeypatch):
    """A retry of an attempt that left no checkpoint runs --force, which removes the history
    for a new one: on ext4 the new file got the old one's inode at once and, longer than the
    old one, did not read as rewritten (unless the old one is held open)."""
    run, reported = _retry_started(tmp_path, monkeypatch, _evals((10,), lambda s: 0.1), None)
    assert run.report_new(prune=False) is False and reported == []
    (tmp_path / "history.jsonl").unlink()
    (tmp_path / "history.jsonl").write_text(_evals((10, 20, 30), lambda s: 0.02 * s))  # longer
    run.report_new(prune=False)
    assert reported == [(10, 0.2), (20, 0.4), (30, 0.6)]


def test_a_trainer_stopped_alone_by_a_signal_is_resumed_not_counted_as_failed(
        tmp_path, synthetic_data, monkeypatch):
    """SIGTERM/SIGINT to a trial's trainer alone (a preemption, a kill by pid): it saved a
    checkpoint and exited 0; the trial was failed for good and counted ("the trainer exited
    without an eval at step 8")."""
    from zhbert.sweep.liveness import finished_count

    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=2)
    _, study = _study(sweep_dir)
    trial_dir = sweep_dir / "trials" / "0000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "history.jsonl").write_text(
        json.dumps({"type": "eval", "step": 4, "eval_mlm_acc": 0.2}) + "\n"
        + json.dumps({"type": "event", "step": 6, "kind": "stop", "message": "checkpoint"}) + "\n")
    monkeypatch.setattr(worker, "TrialRun", _fake_run(lambda run: False, [], evals=[(4, 0.2)]))
    opts = WorkerOptions(sweep_dir, threads=1, poll_s=0)
    outs = []
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    while trial is not None and trial.user_attrs.get("trial_dir") == "trials/0000":
        outs.append(worker.run_trial(study, trial, spec, opts, optuna.pruners.NopPruner(),
                                     worker._Stop(), log=lambda m: None))
        trial = claim(study, spec, sweep_dir)
    assert outs[0] == ("stopped: its trainer was stopped by a signal at step 6 (a checkpoint "
                       "was saved); retried from its last checkpoint")
    assert len(outs) == MAX_RETRY + 1  # retried, not counted until given up
    given_up = [t for t in study.get_trials() if t.user_attrs.get("failure") == "given_up"]
    assert len(given_up) == 1 and finished_count(study) == 1
    assert given_up[0].user_attrs["message"].endswith(f"given up after {MAX_RETRY} retries")
    # the sweep's own Ctrl-C reaching the trainer first: interrupted, however often
    trial.set_user_attr("trial_dir", "trials/0000")
    interrupted = worker._Stop()
    interrupted.flag = True
    out = worker.run_trial(study, trial, spec, opts, optuna.pruners.NopPruner(), interrupted,
                           log=lambda m: None)
    assert out == "interrupted (will resume)"


def _trainer_exits(tmp_path, synthetic_data, monkeypatch, rc: int, checkpoint: bool = False,
                   log: str = "zhbert: precision bf16: CPU ...\n", trials: int = 1):
    """One trial whose trainer exits ``rc`` before its last eval (after a checkpoint or
    none, its log ``log``): run_trial's answer, the study, the next trial's directory."""
    sweep_dir, spec = _new(tmp_path, synthetic_data, trials=trials)
    _, study = _study(sweep_dir)
    (sweep_dir / "trials" / "0000").mkdir(parents=True)
    if checkpoint:
        (sweep_dir / "trials" / "0000" / "checkpoints" / "step_00000002").mkdir(parents=True)
    (sweep_dir / "trials" / "0000" / "train.log").write_text(log)
    run_class = _fake_run(lambda run: False, [], evals=[(2, 0.2)])
    real_init = run_class.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self.proc.returncode = rc
    monkeypatch.setattr(run_class, "__init__", init)
    monkeypatch.setattr(worker, "TrialRun", run_class)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    out = worker.run_trial(study, trial, spec, WorkerOptions(sweep_dir, threads=1, poll_s=0),
                           optuna.pruners.NopPruner(), worker._Stop(), log=lambda m: None)
    following = claim(study, spec, sweep_dir)  # the retry, or None: the sweep is done
    return out, study, following.user_attrs.get("trial_dir") if following else None


def test_a_trainer_ended_by_a_signal_outside_its_loop_is_retried(tmp_path, synthetic_data,
                                                                monkeypatch):
    """SIGTERM while the trainer loads (before its loop handles signals): exit -15, no stop
    event; the trial was failed for good and counted, a second later it would be retried."""
    out, _, next_dir = _trainer_exits(tmp_path, synthetic_data, monkeypatch, -15)
    # no checkpoint yet: "retried from its last checkpoint" said what did not happen
    assert out == ("stopped: its trainer was ended by a signal outside its training loop; "
                   "retried from the start") and next_dir == "trials/0000"


def test_a_trainer_killed_by_sigkill_is_retried_and_named(tmp_path, synthetic_data, monkeypatch):
    """The out-of-memory killer's SIGKILL (exit -9, uncatchable): the trial had failed for
    good, counted, with the log's last line ('precision bf16: ...') as its reason."""
    out, study, next_dir = _trainer_exits(tmp_path, synthetic_data, monkeypatch, -9, checkpoint=True)
    assert out == ("stopped: its trainer was killed by SIGKILL (the out-of-memory killer sends it; "
                   "see `dmesg`); retried from its last checkpoint") and next_dir == "trials/0000"
    failed = study.get_trials()[0]  # and its queued retry
    assert not counted(failed) and "SIGKILL" in failed.user_attrs["message"]


def test_a_trainer_that_crashed_on_a_signal_fails_with_its_log(tmp_path, synthetic_data, monkeypatch):
    """SIGSEGV is a crash, not a lost trainer: failed once with its log's line (a review
    found every negative exit retried as "killed by ...", and a real-time signal's number
    made signal.Signals raise)."""
    for rc in (-11, -35):
        (tmp_path / str(-rc)).mkdir()
        out, study, next_dir = _trainer_exits(tmp_path / str(-rc), synthetic_data, monkeypatch, rc)
        assert out == "failed: zhbert: precision bf16: CPU ..." and next_dir != "trials/0000"
        assert counted(study.get_trials()[0])
