"""zhbert.threads: each training takes its share of the cores, following the others."""

import os
import subprocess
import sys
import textwrap

import torch

from zhbert import threads
from zhbert.threads import ThreadShare, Trainer, fixed_threads, live_trainers, share


def _t(pid, started, threads=None):
    return Trainer(pid=pid, started=started, threads=threads)


def test_share_splits_the_cores_among_adapting_trainings():
    a, b, c = _t(1, 1.0), _t(2, 2.0), _t(3, 3.0)
    assert share(a, [a], 2) == 2
    assert [share(x, [a, b], 2) for x in (a, b)] == [1, 1]
    # 3 cores, 2 trainings: the first started takes the core left over, none idles
    assert [share(x, [a, b], 3) for x in (a, b)] == [2, 1]
    assert [share(x, [a, b, c], 2) for x in (a, b, c)] == [1, 1, 1]  # never below 1
    assert [share(x, [a, b], 16) for x in (a, b)] == [8, 8]


def test_fixed_counts_are_kept_and_taken_off_the_cores():
    fixed, a = _t(1, 1.0, threads=3), _t(2, 2.0)
    assert share(fixed, [fixed, a], 4) == 3
    assert share(a, [fixed, a], 4) == 1
    assert share(a, [fixed, a], 8) == 5
    assert share(a, [_t(1, 1.0, threads=8), a], 4) == 1


def test_fixed_threads_from_the_option_or_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert fixed_threads(None) == 3
    assert fixed_threads(1) == 1
    for bad in ("", "x", "0"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert fixed_threads(None) is None
        # a value that is no count is said to be ignored (OMP_NUM_THREADS=abc passed in silence)
        assert ("OMP_NUM_THREADS=" in capsys.readouterr().err) == bool(bad)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert fixed_threads(None) is None


def test_a_second_training_halves_the_first_and_leaving_gives_the_cores_back(tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with ThreadShare(None, directory=tmp_path, cores=4, poll_seconds=0) as first:
            assert first.threads == 4 and torch.get_num_threads() == 4
            with ThreadShare(None, directory=tmp_path, cores=4, poll_seconds=0) as second:
                assert second.threads == 2
                # said at the first step (a command failing before it says only its error)
                assert capsys.readouterr().err == ""
                threads.rebalance()
                assert capsys.readouterr().err.count(
                    "zhbert: 2 of 4 cores: 1 other zhbert training on this machine shares") == 2
                threads.rebalance()
                assert capsys.readouterr().err == ""  # once
                assert first.rebalance() == 2
                assert len(live_trainers(tmp_path)) == 2
            assert first.rebalance() == 4 and torch.get_num_threads() == 4
        assert live_trainers(tmp_path) == [] and not list(tmp_path.iterdir())
    finally:
        torch.set_num_threads(before)


def test_rebalance_waits_for_its_poll_interval(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with ThreadShare(None, directory=tmp_path, cores=4, poll_seconds=3600) as first:
            with ThreadShare(None, directory=tmp_path, cores=4, poll_seconds=3600):
                assert first.rebalance() == 4  # not looked again yet
                assert first.rebalance(force=True) == 2
    finally:
        torch.set_num_threads(before)


def test_a_killed_trainers_registration_is_not_counted_and_is_removed(tmp_path):
    """A process that registered and died (SIGKILL: no clean-up) holds no lock."""
    code = textwrap.dedent(f"""
        import os
        from zhbert.threads import ThreadShare
        s = ThreadShare(None, directory={str(tmp_path)!r}, cores=2).__enter__()
        print(len(os.listdir({str(tmp_path)!r})), flush=True)
        os._exit(0)  # no __exit__: as if killed
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "1"
    (left,) = tmp_path.glob("*.json")
    assert live_trainers(tmp_path) == []
    assert not left.exists()


def test_a_live_trainer_in_another_process_is_counted(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from zhbert.threads import ThreadShare
        with ThreadShare(None, directory={str(tmp_path)!r}, cores=2):
            print("registered", flush=True)
            sys.stdin.read()
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "registered"
        (other,) = live_trainers(tmp_path)
        assert other.pid == proc.pid and other.threads is None
    finally:
        proc.communicate("")
    assert proc.returncode == 0
    assert live_trainers(tmp_path) == []


def test_train_sets_a_passive_openmp_wait_before_torch_loads():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: zhbert.train must set it
    before its first `import torch` (and leave a policy the user chose alone)."""
    probe = textwrap.dedent("""
        import os, sys
        seen = []
        class Spy:  # records the policy at the moment torch is first imported
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and not seen:
                    seen.append(os.environ.get("OMP_WAIT_POLICY"))
                return None
        sys.meta_path.insert(0, Spy())
        import zhbert.train
        print(seen[0])
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_a_sweep_counts_the_trainings_already_running(tmp_path, monkeypatch):
    from zhbert.sweep.command import sweep_threads

    monkeypatch.setenv("ZHBERT_TRAINERS_DIR", str(tmp_path))
    monkeypatch.setattr("zhbert.threads.available_cores", lambda: 4)
    assert sweep_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with ThreadShare(None, directory=tmp_path):
        assert sweep_threads(2) == 1  # 4 cores among 2 workers and the training
        assert sweep_threads(8) == 1


def test_zhbert_train_takes_its_share_and_rebalances_between_steps(synthetic_data, tmp_path,
                                                                   monkeypatch):
    """The CLI path: with another training registered on a 6-core machine, `zhbert train`
    runs on 3 threads (its history's machine line says so) and looks again each step."""
    import json

    import zhbert.trainloop as trainloop
    from zhbert.cli import main as cli_main

    monkeypatch.setenv("ZHBERT_TRAINERS_DIR", str(tmp_path / "registry"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("zhbert.threads.available_cores", lambda: 6)
    calls = []
    monkeypatch.setattr(trainloop, "rebalance", lambda: calls.append(1))
    sets = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
            "model.intermediate_size=64", "data.max_len=32", "data.eval_sequences=16",
            "data.warmup_len=0", "train.batch_size=4", "train.steps=3", "train.warmup_steps=1",
            "train.eval_every=3", "train.checkpoint_every=3", "train.precision=fp32"]
    before = torch.get_num_threads()
    try:
        with ThreadShare(None, run=tmp_path / "other", directory=tmp_path / "registry", cores=6):
            run = tmp_path / "run"
            assert cli_main(["train", "--data", str(synthetic_data), "--out", str(run),
                             "--no-progress", *sum((["--set", s] for s in sets), [])]) == 0
    finally:
        torch.set_num_threads(before)
    header = json.loads((run / "history.jsonl").read_text().splitlines()[0])
    assert "· 3 threads ·" in header["machine"]
    assert len(calls) == 3
    assert live_trainers(tmp_path / "registry") == []


def test_a_train_command_that_fails_on_its_data_says_only_that(tmp_path, monkeypatch, capsys):
    """With another training on the machine, the thread share was printed before the error of
    a command that never trained; now it is said at the first step."""
    from zhbert.cli import main as cli_main

    monkeypatch.setenv("ZHBERT_TRAINERS_DIR", str(tmp_path / "registry"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("zhbert.threads.available_cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        with ThreadShare(None, run=tmp_path / "other", directory=tmp_path / "registry", cores=4):
            capsys.readouterr()
            assert cli_main(["train", "--data", str(tmp_path / "missing"),
                             "--out", str(tmp_path / "run")]) == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert "missing" in err and "cores" not in err
