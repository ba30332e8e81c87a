"""zhbert sweep's workers: the journal shared by two workers, kill -9 of a worker and its
retry, Ctrl-C and resume, a crashing trial, the refusal of another space, the report."""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from zhbert.cli import main as cli_main
from zhbert.config import load_config
from zhbert.errors import UserError
from zhbert.history import iter_records
from zhbert.sweep import command
from zhbert.sweep.study import load_study, open_storage, read_spec
from zhbert.sweep.liveness import counted, finished_count, reap_stale
from zhbert.sweep.worker import WorkerOptions, claim, run_worker

SPACE = """
[model]
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 64
[data]
max_len = 32
eval_sequences = 16
warmup_len = 0
[train]
batch_size = 4
precision = "fp32"
warmup_steps = 2
log_every = 2
checkpoint_every = 4
eval_every = 2
[train.lr]
low = 1e-3
high = 5e-3
log = true
[data.mask_prob]
choices = [0.1, 0.2]
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent / "src"),
                                      os.environ.get("PYTHONPATH", "")])}


def _space(tmp_path, text=SPACE) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


def _args(space, data, out, **kw):
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    argv = [str(space), "--data", str(data), "--out", str(out)]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return p.parse_args(argv)


def _study(sweep_dir):
    spec = read_spec(sweep_dir)
    return spec, load_study(open_storage(sweep_dir, spec.storage), spec)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- fast: no training

def test_a_dead_workers_trial_is_failed_once_and_retried_in_its_own_directory(tmp_path, synthetic_data):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=8))
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    for k, v in {"trial_dir": "trials/0000", "total_steps": 8, "worker_host": socket.gethostname(),
                 "worker_pid": _dead_pid(), "heartbeat": time.time()}.items():
        trial.set_user_attr(k, v)
    alive = claim(study, spec, sweep_dir)  # a second trial whose worker (this process) lives
    for k, v in {"worker_host": socket.gethostname(), "worker_pid": os.getpid(), "heartbeat": time.time()}.items():
        alive.set_user_attr(k, v)
    assert reap_stale(study, grace_s=120) == [0]
    _, other = _study(sweep_dir)  # a second worker's view of the journal: nothing left to reap
    assert reap_stale(other, grace_s=120) == []
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[0].user_attrs["failure"] == "worker_lost" and not counted(trials[0])
    assert trials[2].params == trials[0].params and trials[2].user_attrs["trial_dir"] == "trials/0000"
    retry = claim(study, spec, sweep_dir)  # the waiting retry is taken before any new trial
    assert retry.number == 2 and retry.params == trials[0].params
    assert claim(study, spec, sweep_dir) is None  # 2 trials running = --trials 2: no slot
    assert finished_count(study) == 0


def test_a_silent_heartbeat_fails_a_trial_from_another_host(tmp_path, synthetic_data):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=8))
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    for k, v in {"worker_host": "elsewhere", "worker_pid": 1, "heartbeat": time.time() - 30}.items():
        trial.set_user_attr(k, v)
    assert reap_stale(study, grace_s=60) == []
    assert reap_stale(study, grace_s=10) == [0]


def test_a_sweep_dir_of_another_space_is_refused_unless_force(tmp_path, synthetic_data, capsys):
    out = tmp_path / "s"
    command.prepare(_args(_space(tmp_path), synthetic_data, out, trials=2, steps=8))
    (out / "trials" / "0000").mkdir(parents=True)
    other = _space(tmp_path, SPACE.replace("high = 5e-3", "high = 9e-3"))
    code = cli_main(["sweep", str(other), "--data", str(synthetic_data), "--out", str(out), "--trials", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another sweep" in err and "--force" in err
    assert (out / "trials" / "0000").exists()
    _, spec = command.prepare(_args(other, synthetic_data, out, trials=2, steps=8, force=True))
    assert spec.space.params["train.lr"].high == 9e-3 and not (out / "trials").exists()
    # the same space again is a resume, not a refusal; --trials may change
    (out / "trials" / "0000").mkdir(parents=True)
    _, again = command.prepare(_args(other, synthetic_data, out, trials=5, steps=8))
    assert again.trials == 5 and again.identity() == spec.identity() and (out / "trials").exists()
    # --force starts over even with the same space
    command.prepare(_args(other, synthetic_data, out, trials=5, steps=8, force=True))
    assert not (out / "trials").exists()


def test_a_crashing_trial_is_failed_with_its_message_and_counted(tmp_path, synthetic_data):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    opts = WorkerOptions(sweep_dir, threads=1, data=str(tmp_path / "no-such-data"))
    said = []
    tally = run_worker(spec, opts, log=said.append)
    assert len(tally.ran) == 1 and "data directory not found" in tally.ran[0][1]
    # the start is said as it happens (a sweep printed nothing until its first trial ended)
    assert said[0].startswith("sweep: trials/0000 started (") and "train.lr=" in said[0]
    assert "; 4 steps): zhbert status " in said[0]
    _, study = _study(sweep_dir)
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs["failure"] == "trainer" and counted(t)
    assert "data directory not found" in t.user_attrs["message"]


def test_a_pruned_trial_is_recorded_before_its_trainer_is_stopped(tmp_path, synthetic_data, monkeypatch):
    """While the stopped trainer checkpointed, status and the dashboard read the trial as
    "stopped (continue with --resume)": pruned.json came after the stop. It comes first."""
    import types

    from zhbert.sweep import worker

    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    _, study = _study(sweep_dir)
    seen = []

    class Run:  # the trainer process, faked: one report, then the pruner's stop
        def __init__(self, trial, spec, opts, trial_dir, last_beat):
            self.trial, self.trial_dir, self.reported = trial, trial_dir, {2}
            self.spec, self.opts = spec, opts
            self.proc = types.SimpleNamespace(poll=lambda: None)
            trial_dir.mkdir(parents=True)

        def start(self):
            pass

        def beat(self):
            return True

        def told(self):  # no pipe: the trainer told no errno
            return None

        def report_new(self, prune):
            self.trial.report(0.1, 2)
            return True

        def evals(self):
            return [(2, 0.1)]

        def stop(self):
            seen.append((self.trial_dir / "pruned.json").exists())

    monkeypatch.setattr(worker, "TrialRun", Run)
    trial = claim(study, spec, sweep_dir)
    opts = WorkerOptions(sweep_dir, threads=1, poll_s=0)
    out = worker.run_trial(study, trial, spec, opts, optuna.pruners.NopPruner(), worker._Stop(),
                           log=lambda m: None)
    assert out.startswith("pruned at step 2") and seen == [True]


# ----------------------------------------------------------------------------- real trainings

def _sweep_cmd(*args):
    return [sys.executable, "-m", "zhbert", "sweep", *map(str, args)]


def _eval_steps(run_dir):
    return [r["step"] for r in iter_records(run_dir / "history.jsonl") if r["type"] == "eval"]


@pytest.mark.slow
def test_two_workers_share_the_journal_without_duplicate_or_lost_trial(tmp_path, synthetic_data):
    out = tmp_path / "s"
    r = subprocess.run(_sweep_cmd(_space(tmp_path), "--data", synthetic_data, "--out", out, "--trials", 4,
                                  "--steps", 6, "--workers-per-machine", 2, "--pruner", "none"),
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    spec, study = _study(out)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    dirs = Counter(t.user_attrs["trial_dir"] for t in trials)
    assert sorted(dirs) == [f"trials/{i:04d}" for i in range(4)] and set(dirs.values()) == {1}
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2  # both workers ran trials
    for t in trials:
        assert _eval_steps(out / t.user_attrs["trial_dir"]) == [2, 4, 6]
    assert "2 workers, 1 thread(s) each" in r.stderr
    # the report: the best config is one `zhbert train --config` takes
    assert cli_main(["sweep", "report", str(out)]) == 0
    rep = out / "report"
    best = load_config(str(rep / "best_config.toml"))
    assert best.train.lr == study.best_params["train.lr"] and best.train.steps == 6
    for name in ("curves", "history", "importances"):
        assert (rep / f"{name}.png").stat().st_size > 1000 and (rep / f"{name}.svg").exists()
        assert f"({name}.png)" in (rep / "report.md").read_text()
    assert "data:image/png;base64," in (rep / "report.html").read_text()
    assert len(json.loads((rep / "sweep_report.json").read_text())["trials"]) == 4


def _wait(predicate, proc, timeout=300):
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        assert time.time() - t0 < timeout
        time.sleep(0.1)


def _trainer_gone(run_dir, timeout=120):
    t0 = time.time()
    while (run_dir / "running.json").exists() and time.time() - t0 < timeout:
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill9", "ctrl_c"])
def test_a_stopped_worker_loses_nothing_and_its_trial_resumes(tmp_path, synthetic_data, how):
    out = tmp_path / "s"
    proc = subprocess.Popen(_sweep_cmd(_space(tmp_path), "--data", synthetic_data, "--out", out,
                                       "--trials", 2, "--steps", 40, "--pruner", "none"),
                            env=ENV, stderr=subprocess.PIPE, text=True)
    run0 = out / "trials" / "0000"
    # any checkpoint: retention deletes step 4 at step 8, and a loaded machine's poll missed it
    _wait(lambda: any((run0 / "checkpoints").glob("step_*")), proc)
    proc.send_signal(signal.SIGKILL if how == "kill9" else signal.SIGINT)
    code = proc.wait(timeout=120)
    assert code == (-signal.SIGKILL if how == "kill9" else 130)
    _trainer_gone(run0)  # kill -9: the trainer got SIGTERM from the kernel (PDEATHSIG) and stopped
    r = subprocess.run(_sweep_cmd(out), env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    spec, study = _study(out)
    trials = study.get_trials()
    first = trials[0]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["failure"] == ("worker_lost" if how == "kill9" else "interrupted")
    done = [t for t in trials if counted(t)]
    assert len(done) == 2 and all(t.state == TrialState.COMPLETE for t in done)
    retry = next(t for t in done if t.system_attrs.get("failed_trial") == 0)
    assert retry.user_attrs["trial_dir"] == "trials/0000" and retry.params == first.params
    log = (run0 / "train.log").read_text()
    assert "resuming from step" in log
    steps = _eval_steps(run0)
    assert steps == sorted(set(steps)) and steps[-1] == 40  # no step twice, none lost
    other = next(t for t in done if t is not retry)  # the next new trial: numbered after the retry
    assert other.user_attrs["trial_dir"] == f"trials/{other.number:04d}" != "trials/0000"


def test_a_worker_that_sees_only_the_database_joins_with_its_own_sweep_dir(tmp_path, synthetic_data):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    _, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "a", trials=3, steps=8,
                                    storage=url))
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    joined_dir, joined = command.prepare(p.parse_args([str(tmp_path / "b"), "--worker", "--storage", url]))
    assert joined.identity() == spec.identity() and joined.storage == url
    assert read_spec(joined_dir).identity() == spec.identity()  # b/sweep.json for its reports


def test_a_resumed_sweep_does_not_repeat_the_samplers_first_draws(tmp_path, synthetic_data):
    from zhbert.sweep.worker import sampler_seed
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=3, steps=8))
    storage = open_storage(sweep_dir, spec.storage)
    first = load_study(storage, spec, sampler_seed(storage, spec, 0)).ask(spec.space.distributions())
    assert sampler_seed(storage, spec, 0) != spec.sampler_seed  # one trial exists now
    again = load_study(storage, spec, sampler_seed(storage, spec, 0)).ask(spec.space.distributions())
    assert again.params["train.lr"] != first.params["train.lr"]
    fresh = load_study(open_storage(tmp_path / "t", ""), spec, spec.sampler_seed)
    assert fresh.ask(spec.space.distributions()).params == first.params  # same seed, same draw


def _fake_run(study, spec, sweep_dir, n, last, rc, log):
    """A claimed trial whose trainer exited with ``rc``, its history evaluated up to ``last``."""
    from types import SimpleNamespace

    from zhbert.sweep.worker import TrialRun
    trial = claim(study, spec, sweep_dir)
    rel = f"trials/{n:04d}"
    trial.set_user_attr("trial_dir", rel)
    d = sweep_dir / rel
    d.mkdir(parents=True)
    (d / "history.jsonl").write_text("".join(json.dumps({"type": "eval", "step": s, "eval_mlm_acc": 0.1 * s}) + "\n"
                                             for s in range(2, last + 1, 2)))
    (d / "train.log").write_text(log)
    return TrialRun(trial, spec, WorkerOptions(sweep_dir, 1), d, proc=SimpleNamespace(returncode=rc))


def test_a_trainer_that_exits_nonzero_fails_the_trial_even_with_a_final_eval(tmp_path, synthetic_data):
    from zhbert.sweep.outcome import finish as _finish
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=3, steps=4))
    _, study = _study(sweep_dir)
    refused = "zhbert: error: s/trials/0000 holds a run with another config or vocabulary\n"
    runs = [_fake_run(study, spec, sweep_dir, 0, 4, 2, refused),  # an older run's history, to step 4
            _fake_run(study, spec, sweep_dir, 1, 2, 1, "zhbert: error: diverged\n"),
            _fake_run(study, spec, sweep_dir, 2, 4, 0, "")]
    assert _finish(study, runs[0]) == "failed: " + refused.strip()
    assert _finish(study, runs[1]) == "failed: zhbert: error: diverged"
    assert _finish(study, runs[2]).startswith("complete: eval_mlm_acc 0.4000")
    refused_t, diverged, done = study.get_trials()
    assert refused_t.state == TrialState.FAIL and refused_t.value is None and counted(refused_t)
    assert refused_t.user_attrs["failure"] == "trainer" and "another config" in refused_t.user_attrs["message"]
    assert diverged.state == TrialState.FAIL and done.state == TrialState.COMPLETE
    line = command.summary(sweep_dir, spec)
    assert "(1 complete, 0 pruned, 2 failed attempts" in line and "best: trials/0002, eval_mlm_acc 0.4000" in line


def test_the_report_names_a_retry_by_its_directory_and_its_optuna_number(tmp_path, synthetic_data, capsys):
    from zhbert.sweep.outcome import tell_failed as _tell_failed
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=2, steps=4))
    _, study = _study(sweep_dir)
    first = claim(study, spec, sweep_dir)
    first.set_user_attr("trial_dir", "trials/0000")
    _tell_failed(study, first, "interrupted", "stopped by Ctrl-C", retry=True)
    retry = claim(study, spec, sweep_dir)      # Optuna trial 1, run in trials/0000
    other = claim(study, spec, sweep_dir)      # Optuna trial 2, run in trials/0002
    other.set_user_attr("trial_dir", "trials/0002")
    assert (retry.number, retry.user_attrs["trial_dir"]) == (1, "trials/0000")
    study.tell(retry, 0.5)
    study.tell(other, 0.4)
    assert "best: trials/0000 (Optuna trial 1), eval_mlm_acc 0.5000" in command.summary(sweep_dir, spec)
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    assert "best: trials/0000 (Optuna trial 1): eval_mlm_acc 0.5000" in capsys.readouterr().out
    md = (sweep_dir / "report" / "report.md").read_text()
    assert "**Best: trials/0000 (Optuna trial 1)**" in md and "| Optuna trial | dir | state |" in md
    assert "| 1 | trials/0000 | complete |" in md and "retry of Optuna trial 0" in md


def test_a_report_without_a_complete_trial_writes_and_claims_no_best_config(tmp_path, synthetic_data, capsys,
                                                                              recwarn):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=1, steps=4))
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    study.tell(trial, state=TrialState.FAIL)
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "no complete trial, so no best config" in out and "best_config.toml" not in out
    rep = sweep_dir / "report"
    assert not (rep / "best_config.toml").exists() and (rep / "report.md").exists()
    assert "No complete trial" in (rep / "report.md").read_text()
    assert not [w for w in recwarn if "No artists with labels" in str(w.message)]


def test_the_report_writes_the_table_best_config_importances_and_charts(tmp_path, synthetic_data):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=4, steps=4))
    _, study = _study(sweep_dir)
    for n in range(4):
        trial = claim(study, spec, sweep_dir)
        rel = f"trials/{n:04d}"
        trial.set_user_attr("trial_dir", rel)
        curve = [(s, 0.05 * s + 0.01 * n) for s in (2, 4)]
        (sweep_dir / rel).mkdir(parents=True)
        (sweep_dir / rel / "history.jsonl").write_text("".join(
            json.dumps({"type": "eval", "step": s, "eval_mlm_acc": v}) + "\n" for s, v in curve))
        if n == 3:  # pruned at step 2, with the record the worker writes
            trial.report(curve[0][1], 2)
            trial.set_user_attr("pruned_by", {"reason": "forecast said no", "step": 2})
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1][1])
    assert cli_main(["sweep", "report", str(sweep_dir)]) == 0
    rep = sweep_dir / "report"
    best = load_config(str(rep / "best_config.toml"))
    assert best.train.lr == study.best_params["train.lr"] and best.train.steps == 4
    assert best.model.hidden_size == 32  # the space's fixed values are in it
    md = (rep / "report.md").read_text()
    assert "| 3 | trials/0003 | pruned |" in md and "forecast said no" in md and "**Best: trials/0002**" in md
    for name in ("curves", "history", "importances"):
        assert (rep / f"{name}.png").stat().st_size > 1000 and (rep / f"{name}.svg").exists()
        assert f"({name}.png)" in md
    assert "data:image/png;base64," in (rep / "report.html").read_text()
    assert [t["state"] for t in json.loads((rep / "sweep_report.json").read_text())["trials"]] == \
        ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]


def test_a_relative_sqlite_url_is_kept_absolute_so_a_resume_elsewhere_reuses_the_study(
        tmp_path, synthetic_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, "w/sw2", trials=3, steps=8,
                                            storage="sqlite:///w/sw2.db"))
    url = f"sqlite:///{tmp_path / 'w' / 'sw2.db'}"
    assert spec.storage == url and read_spec(sweep_dir).storage == url
    _, study = _study(sweep_dir)
    claim(study, spec, sweep_dir)
    monkeypatch.chdir(tmp_path / "w")
    (tmp_path / "w" / "w").mkdir()  # where the relative path would now point
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    resumed_dir, resumed = command.prepare(p.parse_args(["sw2", "--trials", "3"]))
    assert resumed.storage == url and len(_study(resumed_dir)[1].get_trials()) == 1
    assert not (tmp_path / "w" / "w" / "sw2.db").exists()


def test_a_resume_that_finds_no_study_in_its_storage_is_refused(tmp_path, synthetic_data, monkeypatch, capsys):
    """A sweep.json written with a relative URL (before they were made absolute),
    resumed from another directory: no new empty study, no trial."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, "w/sw2", trials=3, steps=8,
                                            storage="sqlite:///w/sw2.db"))
    d = json.loads((sweep_dir / "sweep.json").read_text())
    (sweep_dir / "sweep.json").write_text(json.dumps({**d, "storage": "sqlite:///w/sw2.db"}))
    monkeypatch.chdir(tmp_path / "w")
    assert cli_main(["sweep", "sw2", "--trials", "3"]) == 2
    err = capsys.readouterr().err
    assert "unable to open database file" in err and "w/sw2.db is read from the current directory" in err
    (tmp_path / "w" / "w").mkdir()  # the relative path opens: a new database, no study in it
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    with pytest.raises(UserError, match="holds no study named 'zhbert-sweep'"):
        command.prepare(p.parse_args(["sw2", "--trials", "3"]))


def test_absolute_url_leaves_other_urls_as_they_are(tmp_path, monkeypatch):
    from zhbert.sweep.study import absolute_url
    monkeypatch.chdir(tmp_path)
    assert absolute_url("sqlite:///a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    for url in ("sqlite:////abs/a.db", "sqlite://", "sqlite:///:memory:",
                "postgresql://u:p@host/db", "not a url"):
        assert absolute_url(url) == url


def test_a_sweep_dir_that_does_not_exist_is_named_not_asked_for_data(tmp_path, capsys):
    """A mistyped SWEEP_DIR was told "a new sweep needs --data and --out"."""
    assert cli_main(["sweep", str(tmp_path / "nosuch")]) == 2
    err = capsys.readouterr().err
    assert "nosuch not found: give an existing SWEEP_DIR" in err and "needs --data" not in err


def test_a_sweep_never_writes_into_a_folder_of_other_files(tmp_path, synthetic_data, capsys):
    """`sweep SPACE --out DATA_DIR` (a bad-input pass) wrote sweep.json, optuna.journal and
    trials/ into the data directory, with or without --force."""
    before = sorted(p.name for p in synthetic_data.iterdir())
    for extra in ([], ["--force"]):
        code = cli_main(["sweep", str(_space(tmp_path)), "--data", str(synthetic_data), "--out",
                         str(synthetic_data), "--trials", "1", "--steps", "8", *extra])
        assert code == 2 and "is not an earlier zhbert sweep" in capsys.readouterr().err
    assert sorted(p.name for p in synthetic_data.iterdir()) == before


def test_workers_sampling_beside_running_trials_keep_away_from_them(tmp_path, synthetic_data):
    """Two workers' first TPE draws after the start-up trials landed side by side (hidden 96,
    3 heads, lr 0.001068 and 0.001069: one trial wasted; a re-test): a running trial counts
    as a poor result for the next draw (TPE's constant liar). A guard of the setting."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s", trials=3, steps=8))
    study = load_study(open_storage(sweep_dir, spec.storage), spec)
    assert study.sampler._constant_liar
