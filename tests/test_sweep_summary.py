"""What a sweep says at its end and why it pruned: a lost worker and the sweep's own
Ctrl-Cs are no failures, and a pruning reason prints its deciding numbers apart."""

from test_sweep import _args, _dead_pid, _space, _study
from zhbert.sweep import command, worker
from zhbert.sweep.forecast import Forecast
from zhbert.sweep.liveness import reap_stale
from zhbert.sweep.pruner import decide
from zhbert.sweep.worker import claim


def test_the_summary_counts_interrupts_and_lost_attempts_apart_from_failures(tmp_path, synthetic_data):
    """A worker killed once (kill -9) and five Ctrl-Cs said "6 failed attempts"."""
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s",
                                            trials=1, steps=4))
    _, study = _study(sweep_dir)
    trial = claim(study, spec, sweep_dir)
    trial.set_user_attr("trial_dir", "trials/0000")
    for k, v in {"worker_host": "here", "worker_pid": _dead_pid(), "heartbeat": 0.0}.items():
        trial.set_user_attr(k, v)
    assert reap_stale(study, grace_s=60) == [trial.number]  # the kill -9: lost, retried
    for _ in range(5):
        trial = claim(study, spec, sweep_dir)
        worker._tell_failed(study, trial, "interrupted", "Ctrl-C", retry=True)
    line = command.summary(sweep_dir, spec)
    assert "0 failed attempts, 1 lost attempt (retried), 5 interrupted, 1 waiting)" in line
    # the retry fails on its own (as _finish tells a trainer's error): counted, not retried
    worker._tell_failed(study, claim(study, spec, sweep_dir), "trainer", "diverged", retry=False)
    assert "(0 complete, 0 pruned, 1 failed attempt, 1 lost attempt (retried), 5 interrupted, " \
           "0 waiting)" in command.summary(sweep_dir, spec)


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
